"""Bounded capture of a stream: head, tail, totals and UTF-8 at the cut."""

from __future__ import annotations

from sandbox_mcp.sandbox.output import StreamCapture


def capture(chunks: list[bytes], keep: int) -> StreamCapture:
    stream = StreamCapture(keep)
    for chunk in chunks:
        stream.feed(chunk)
    return stream


def test_short_output_is_kept_whole() -> None:
    result = capture([b"hello ", b"world\n"], 100).result()

    assert result.text == "hello world\n"
    assert result.total_bytes == 12
    assert not result.truncated


def test_long_output_keeps_head_and_tail_and_counts_everything() -> None:
    chunks = [b"H" * 50, b"m" * 10_000, b"T" * 50]
    result = capture(chunks, 100).result()

    assert result.truncated
    assert result.total_bytes == 10_100
    assert result.text.startswith("H" * 50)
    assert result.text.endswith("T" * 50)
    assert "[... 10000 bytes omitted of 10100 ...]" in result.text


def test_tail_is_right_across_many_small_chunks() -> None:
    chunks = [str(i % 10).encode() for i in range(1000)]
    result = capture(chunks, 20).result()

    assert result.text.endswith("0123456789")
    assert result.total_bytes == 1000


def test_multibyte_characters_cut_at_the_edges_are_dropped_not_mangled() -> None:
    text = ("é" * 100).encode()  # two bytes each
    result = capture([text], 11).result()  # a head of 5 bytes and a tail of 6

    head, tail = result.text.split("\n[...")[0], result.text.rsplit("...]\n", 1)[1]
    assert head == "éé"
    assert tail == "ééé"
    assert "\ufffd" not in result.text


def test_invalid_utf8_is_replaced() -> None:
    result = capture([b"ok \xff\xfe"], 100).result()

    assert result.text == "ok \ufffd\ufffd"
