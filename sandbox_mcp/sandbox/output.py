"""Capturing a run's output without ever holding more than a bounded amount of it.

A stream keeps its first and last bytes up to a budget and only counts the rest, so a
snippet that prints gigabytes costs the server a few kilobytes. The text handed to the model
is the head and the tail with a marker between them saying how much was left out.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CapturedText:
    """What the model sees of one stream."""

    text: str
    total_bytes: int
    truncated: bool


class StreamCapture:
    """Head and tail of a byte stream, `keep_bytes` in all, plus the total count; and, when
    `full_bytes` is given, the stream's first `full_bytes` whole (see `full`)."""

    def __init__(self, keep_bytes: int, full_bytes: int = 0) -> None:
        self._head_limit = keep_bytes // 2
        self._tail_limit = keep_bytes - self._head_limit
        self._head = bytearray()
        self._tail = bytearray()
        self._full_limit = full_bytes
        self._full = bytearray()
        self.total_bytes = 0

    def full(self) -> bytes:
        """The stream's first `full_bytes` bytes (all of it when it was no longer)."""
        return bytes(self._full)

    def feed(self, data: bytes) -> None:
        self.total_bytes += len(data)
        room = self._full_limit - len(self._full)
        if room > 0:
            self._full += data[:room]
        room = self._head_limit - len(self._head)
        if room > 0:
            self._head += data[:room]
            data = data[room:]
        if not data:
            return
        if len(data) >= self._tail_limit:
            self._tail = bytearray(data[-self._tail_limit :])
        else:
            self._tail += data
            excess = len(self._tail) - self._tail_limit
            if excess > 0:
                del self._tail[:excess]

    def result(self) -> CapturedText:
        """The stream as text: invalid UTF-8 replaced, the middle cut out if it was too long."""
        kept = len(self._head) + len(self._tail)
        if kept == self.total_bytes:
            return CapturedText(_decode(bytes(self._head + self._tail)), self.total_bytes, False)

        head = _decode(_trim_end(bytes(self._head)))
        tail = _decode(_trim_start(bytes(self._tail)))
        omitted = self.total_bytes - kept
        marker = f"\n[... {omitted} bytes omitted of {self.total_bytes} ...]\n"
        return CapturedText(head + marker + tail, self.total_bytes, True)


def _decode(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def _trim_end(data: bytes) -> bytes:
    # Drop a multi-byte character cut in half at the end of the head.
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 != 0x80:  # the lead byte of the last character
            width = (
                1
                if byte < 0x80
                else 2
                if byte >= 0xC0 and byte < 0xE0
                else (3 if byte < 0xF0 else 4)
            )
            return data if width <= back else data[:-back]
    return data


def _trim_start(data: bytes) -> bytes:
    # Drop continuation bytes left from a character cut in half at the start of the tail.
    start = 0
    while start < min(3, len(data)) and data[start] & 0xC0 == 0x80:
        start += 1
    return data[start:]
