"""The store behind whole outputs as resources: kept for a while, for their caller only,
within a bound."""

from __future__ import annotations

import time

from sandbox_mcp.server.resources import KEEP_SECONDS, OutputStore


def test_a_whole_output_is_kept_for_a_while_then_dropped() -> None:
    assert KEEP_SECONDS >= 60
    store = OutputStore(keep_seconds=0.5)
    store.put("run1", "stdout", b"whole", "alice")

    assert store.get("run1", "stdout", "alice") == b"whole"
    time.sleep(1.0)
    assert store.get("run1", "stdout", "alice") is None


def test_only_its_own_caller_reads_an_output() -> None:
    store = OutputStore()
    store.put("run1", "stdout", b"mine", "alice")

    assert store.get("run1", "stdout", "bob") is None
    assert store.get("run1", "stderr", "alice") is None
    assert store.get("run1", "stdout", "alice") == b"mine"


def test_the_oldest_outputs_make_room_and_one_too_large_is_not_kept() -> None:
    store = OutputStore(max_bytes=10)
    assert store.put("old", "stdout", b"12345", "a")
    assert store.put("mid", "stdout", b"1234", "a")
    assert store.put("new", "stdout", b"123456", "a")

    assert store.get("old", "stdout", "a") is None
    assert store.get("mid", "stdout", "a") == b"1234"
    assert store.get("new", "stdout", "a") == b"123456"
    assert not store.put("huge", "stdout", b"x" * 11, "a")
    assert store.get("huge", "stdout", "a") is None
