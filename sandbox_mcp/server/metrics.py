"""Counting runs for `/metrics`, and writing them in Prometheus' text exposition format.

The tool layer records each `execute_code` call after it ends; the HTTP transport renders the
counts together with the sandbox's activity at the moment of the scrape. Everything happens on
the server's event loop, so the counts need no lock. Labels come from fixed sets (language
ids, outcomes, limit kinds), never from what a caller typed, so a caller cannot grow the
number of series.
"""

from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass, field

from sandbox_mcp.errors import InvalidRequest, SandboxError
from sandbox_mcp.sandbox.languages import get_language
from sandbox_mcp.sandbox.runner import Activity, RunResult

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Seconds. From a warm Python run (tens of milliseconds) to a JVM build near the deadline.
DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)

# What became of an execute_code call:
#   ok            the program ran and exited 0
#   failed        it exited non-zero or was ended by a signal, no limit involved
#   limit         a limit ended it (which one: sandbox_mcp_limits_total)
#   build_failed  a compiled language's build failed, so the program never ran
#   rejected      the request was refused before anything ran (bad language, size, name ...)
#   sandbox_error the sandbox itself failed to run it (a missing runtime, a broken launcher)
OUTCOMES = ("ok", "failed", "limit", "build_failed", "rejected", "sandbox_error")


@dataclass
class _Histogram:
    """Cumulative counts per bucket bound, their sum and count, for one label set."""

    buckets: list[int] = field(default_factory=lambda: [0] * len(DURATION_BUCKETS))
    total: float = 0.0
    count: int = 0

    def observe(self, value: float) -> None:
        # Each bucket counts the observations at or below its bound: bucket i and all above.
        first = bisect.bisect_left(DURATION_BUCKETS, value)
        for index in range(first, len(DURATION_BUCKETS)):
            self.buckets[index] += 1
        self.total += value
        self.count += 1


class RunMetrics:
    """Counters and a histogram of execute_code calls since the server started."""

    def __init__(self) -> None:
        self._runs: Counter[tuple[str, str]] = Counter()
        self._limits: Counter[str] = Counter()
        self._durations: dict[str, _Histogram] = {}

    def record_result(self, result: RunResult) -> None:
        """Count a call that reached the sandbox and came back with a result."""
        build = result.compile
        if result.limit is not None:
            outcome = "limit"
            self._limits[result.limit] += 1
        elif build is not None and not build.succeeded:
            outcome = "build_failed"
        elif result.exit_code == 0:
            outcome = "ok"
        else:
            outcome = "failed"
        self._runs[(result.language, outcome)] += 1

        seconds = (result.duration_ms + (build.duration_ms if build is not None else 0.0)) / 1000
        self._durations.setdefault(result.language, _Histogram()).observe(seconds)

    def record_error(self, language: str, error: SandboxError) -> None:
        """Count a call the sandbox refused or could not run; `language` as the caller gave it."""
        outcome = "rejected" if isinstance(error, InvalidRequest) else "sandbox_error"
        self._runs[(_language_label(language), outcome)] += 1

    def render(self, activity: Activity) -> str:
        """Every metric in the Prometheus text exposition format (version 0.0.4)."""
        lines: list[str] = []
        _family(lines, "sandbox_mcp_runs_total", "counter", "execute_code calls by outcome.")
        for (language, outcome), count in sorted(self._runs.items()):
            lines.append(
                _sample("sandbox_mcp_runs_total", count, language=language, outcome=outcome)
            )

        _family(lines, "sandbox_mcp_limits_total", "counter", "Runs ended by a limit, by kind.")
        for limit, count in sorted(self._limits.items()):
            lines.append(_sample("sandbox_mcp_limits_total", count, limit=limit))

        name = "sandbox_mcp_run_duration_seconds"
        _family(lines, name, "histogram", "Time a run took, its build included.")
        for language, histogram in sorted(self._durations.items()):
            for bound, count in zip(DURATION_BUCKETS, histogram.buckets, strict=True):
                lines.append(_sample(f"{name}_bucket", count, language=language, le=_number(bound)))
            lines.append(_sample(f"{name}_bucket", histogram.count, language=language, le="+Inf"))
            lines.append(_sample(f"{name}_sum", histogram.total, language=language))
            lines.append(_sample(f"{name}_count", histogram.count, language=language))

        for name, help_text, value in (
            ("sandbox_mcp_runs_in_flight", "Runs executing now.", activity.in_flight),
            (
                "sandbox_mcp_runs_in_flight_high_water",
                "Most runs executing at once since the server started.",
                activity.in_flight_high_water,
            ),
            ("sandbox_mcp_runs_queued", "Calls waiting for a run slot.", activity.queued),
            (
                "sandbox_mcp_max_concurrent_runs",
                "Runs allowed to execute at once.",
                activity.max_concurrent,
            ),
        ):
            _family(lines, name, "gauge", help_text)
            lines.append(_sample(name, value))
        return "\n".join(lines) + "\n"


def _language_label(name: str) -> str:
    # A caller's misspelling must not become a label value of its own.
    try:
        return get_language(name).id
    except SandboxError:
        return "unknown"


def _family(lines: list[str], name: str, kind: str, help_text: str) -> None:
    lines.append(f"# HELP {name} {help_text}")
    lines.append(f"# TYPE {name} {kind}")


def _sample(name: str, value: float, **labels: str) -> str:
    if not labels:
        return f"{name} {_number(value)}"
    pairs = ",".join(f'{key}="{_escape(text)}"' for key, text in labels.items())
    return f"{name}{{{pairs}}} {_number(value)}"


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return repr(float(value))
