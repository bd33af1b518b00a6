"""The live figures of one run, for a caller who wants to show progress while it waits.

The sandbox core updates a `RunProgress` as the run goes; the caller reads it whenever it
likes (the MCP layer every second, to send progress notifications). Nothing here knows MCP.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class RunProgress:
    """Where one run is: waiting for a slot, or running since `started` with its output."""

    arrived: float = field(default_factory=time.monotonic)
    started: float | None = None
    run_id: str | None = None
    output_bytes: int = 0
    timeout_seconds: float | None = None

    def start(self, run_id: str, timeout_seconds: float) -> None:
        """The run got its slot and was handed to its supervisor."""
        self.run_id = run_id
        self.timeout_seconds = timeout_seconds
        self.started = time.monotonic()

    @property
    def elapsed(self) -> float:
        """Seconds since the run started (0 while it waits); its deadline counts from there."""
        return 0.0 if self.started is None else time.monotonic() - self.started

    @property
    def since_arrival(self) -> float:
        """Seconds since the call arrived, waiting included: it only grows."""
        return time.monotonic() - self.arrived

    def describe(self) -> str:
        """One line for a person: waiting, or running for so long with so much output."""
        if self.started is None:
            return f"waiting for a free run slot ({time.monotonic() - self.arrived:.0f} s)"
        return (
            f"run {self.run_id} running {self.elapsed:.1f} s of at most "
            f"{self.timeout_seconds:g} s, {self.output_bytes} bytes of output so far"
        )
