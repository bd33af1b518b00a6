"""Counting execute_code calls and writing them in Prometheus' text exposition format.

The results are built by hand here: what is tested is the arithmetic and the format, which a
real run would only make slower to reach. tests/server/test_http.py counts real runs.
"""

from __future__ import annotations

import re

import pytest

from sandbox_mcp.errors import CodeTooLarge, LauncherError, UnknownLanguage
from sandbox_mcp.sandbox.runner import Activity, RunResult
from sandbox_mcp.sandbox.spec import BuildOutcome
from sandbox_mcp.server.metrics import DURATION_BUCKETS, RunMetrics

IDLE = Activity(in_flight=0, in_flight_high_water=0, queued=0, max_concurrent=8)


def result(
    language: str = "python",
    exit_code: int | None = 0,
    limit: str | None = None,
    duration_ms: float = 20.0,
    build: BuildOutcome | None = None,
) -> RunResult:
    return RunResult(
        run_id="0123456789ab",
        language=language,
        filename="main",
        stdout="",
        stderr="",
        exit_code=exit_code,
        signal=None if exit_code is not None else "SIGKILL",
        limit=limit,
        duration_ms=duration_ms,
        cpu_ms=1.0,
        peak_memory_bytes=0,
        stdout_bytes=0,
        stderr_bytes=0,
        stdout_truncated=False,
        stderr_truncated=False,
        timeout_seconds=30.0,
        compile=build,
    )


def build(exit_code: int, duration_ms: float) -> BuildOutcome:
    return BuildOutcome(exit_code, None, "", "", 0, 0, duration_ms)


def samples(text: str) -> dict[str, float]:
    return {
        name: float(value)
        for name, value in re.findall(r"^(sandbox_mcp_\S+) (\S+)$", text, re.MULTILINE)
    }


def test_each_outcome_is_counted_under_its_language() -> None:
    metrics = RunMetrics()
    metrics.record_result(result())
    metrics.record_result(result())
    metrics.record_result(result(exit_code=3))
    metrics.record_result(result(language="bash", exit_code=None, limit="timeout"))
    metrics.record_result(result(language="c", exit_code=None, build=build(1, 80)))
    metrics.record_error("pyhton", UnknownLanguage("unknown language 'pyhton'"))
    metrics.record_error("PY", CodeTooLarge("too large"))
    metrics.record_error("go", LauncherError("launcher died"))

    found = samples(metrics.render(IDLE))

    assert found['sandbox_mcp_runs_total{language="python",outcome="ok"}'] == 2
    assert found['sandbox_mcp_runs_total{language="python",outcome="failed"}'] == 1
    assert found['sandbox_mcp_runs_total{language="bash",outcome="limit"}'] == 1
    assert found['sandbox_mcp_runs_total{language="c",outcome="build_failed"}'] == 1
    # A misspelling never becomes a label of its own; an alias is its language's.
    assert found['sandbox_mcp_runs_total{language="unknown",outcome="rejected"}'] == 1
    assert found['sandbox_mcp_runs_total{language="python",outcome="rejected"}'] == 1
    assert found['sandbox_mcp_runs_total{language="go",outcome="sandbox_error"}'] == 1
    assert found['sandbox_mcp_limits_total{limit="timeout"}'] == 1
    assert not any("pyhton" in name for name in found)


def test_durations_fill_cumulative_buckets_and_include_the_build() -> None:
    metrics = RunMetrics()
    metrics.record_result(result(duration_ms=5))
    metrics.record_result(result(duration_ms=300))
    metrics.record_result(result(duration_ms=400_000))
    metrics.record_result(result(language="rust", duration_ms=100, build=build(0, 1900)))

    found = samples(metrics.render(IDLE))

    def bucket(language: str, bound: str) -> float:
        name = f'sandbox_mcp_run_duration_seconds_bucket{{language="{language}",le="{bound}"}}'
        return found[name]

    assert bucket("python", "0.01") == 1
    assert bucket("python", "0.25") == 1
    assert bucket("python", "0.5") == 2
    assert bucket("python", "300") == 2
    assert bucket("python", "+Inf") == 3
    assert found['sandbox_mcp_run_duration_seconds_count{language="python"}'] == 3
    total = found['sandbox_mcp_run_duration_seconds_sum{language="python"}']
    assert total == pytest.approx(400.305)
    assert bucket("rust", "1") == 0
    assert bucket("rust", "2.5") == 1
    bounds = [
        float(bound)
        for bound in re.findall(r'language="python",le="([0-9.]+)"', metrics.render(IDLE))
    ]
    assert bounds == list(DURATION_BUCKETS)


def test_activity_is_shown_as_gauges() -> None:
    busy = Activity(in_flight=3, in_flight_high_water=5, queued=2, max_concurrent=4)

    found = samples(RunMetrics().render(busy))

    assert found["sandbox_mcp_runs_in_flight"] == 3
    assert found["sandbox_mcp_runs_in_flight_high_water"] == 5
    assert found["sandbox_mcp_runs_queued"] == 2
    assert found["sandbox_mcp_max_concurrent_runs"] == 4


def test_every_family_has_help_and_type_before_its_samples() -> None:
    metrics = RunMetrics()
    metrics.record_result(result(limit="memory", exit_code=None))
    text = metrics.render(IDLE)

    assert text.endswith("\n")
    declared: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            declared.add(line.split()[2])
        elif not line.startswith("# HELP "):
            name = re.split(r"[{ ]", line, maxsplit=1)[0]
            family = re.sub(r"_(bucket|sum|count)$", "", name)
            assert family in declared or name in declared, line
