"""`scripts/bench --smoke`: every section is there, every answer exact, nothing left behind.

Python and JavaScript are measured through two servers, warm (the default) and cold
(SANDBOX_WARM=off), and both must answer exactly and leave nothing below them but their
launcher and, when warm, the template and its runs on standby; nothing of theirs may outlive
them.

No timing is checked: the numbers depend on the machine and on what else runs on it, and are
read from the benchmark itself, never asserted. In the root pass of `scripts/test` only (it
sits at the top of `tests/`), so the servers it starts run in pool mode.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from sandbox_mcp.sandbox.runner import STANDBY_RUNS
from tests.support import IS_ROOT, uid_base

# Java runs on standby in the benchmark's warm server (it starts it with SANDBOX_WARM_JAVA=1).
JAVA_STANDBY_RUNS = 1

BENCH = Path(__file__).resolve().parents[1] / "scripts" / "bench"
LANGUAGES = ("python", "javascript")
# Each language through the warm (default) server and through the cold one.
ROWS = ("python-warm", "python-cold", "javascript-warm", "javascript-cold")


def test_smoke_bench_answers_exactly_and_leaves_nothing_behind(tmp_path: Path) -> None:
    output = tmp_path / "bench.json"

    completed = subprocess.run(
        [
            str(BENCH),
            "--smoke",
            "--languages",
            ",".join(LANGUAGES),
            "--json",
            str(output),
            # This session's own range, clear of a benchmark someone runs meanwhile.
            "--uid-base",
            str(uid_base(1)),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )

    assert completed.returncode == 0, completed.stdout + completed.stderr
    results = json.loads(output.read_text())
    assert {"meta", "servers", "floor", "stack", "ratios", "targets", "exact"} <= set(results)
    assert {"cold_start", "leak", "leftovers"} <= set(results)
    spent = results["leak"]["cpu_ms_per_run"]
    assert set(spent) == {"client", "server", "template", "supervisors and programs"}
    assert spent["server"] > 0 and spent["supervisors and programs"] > 0
    assert "CPU per warm run, ms: client" in completed.stdout
    mode = "pool" if IS_ROOT else "shared"
    assert results["meta"]["identity"] == mode
    assert f"identity {mode}" in completed.stdout
    # The root pass mounts a tmpfs for the run roots, as the container has one for /tmp.
    expected = "tmpfs" if IS_ROOT else ""
    assert results["meta"]["filesystem"].startswith(expected)
    assert f"run roots and the floor's directory on {results['meta']['filesystem']}" in (
        completed.stdout
    )
    assert results["servers"]["warm"]["warm_languages"] == ["python", "javascript"]
    assert results["servers"]["cold"]["warm_languages"] == []
    assert set(results["floor"]) == set(LANGUAGES)
    for language in LANGUAGES:
        assert set(results["floor"][language]) == {"sequential", "8"}
    for row in ROWS:
        stack = results["stack"][row]
        assert {width: batch["exact"] for width, batch in stack.items()} == {
            "sequential": 1.0,
            "8": 1.0,
            "32": 1.0,
        }
        assert [stack[width]["runs"] for width in ("8", "32")] == [8, 32]
        assert set(results["ratios"][row]) == {
            "overhead_p50_ms",
            "throughput_pct_8",
            "throughput_pct_32",
        }
    assert set(results["stack"]) == set(ROWS)
    assert "python (warm)" in completed.stdout
    assert "python (cold)" in completed.stdout
    assert "javascript (warm)" in completed.stdout
    # Every target is there and marked, whether met or not: timings are never asserted.
    subjects = {target["subject"] for target in results["targets"]}
    assert subjects == {
        "python (warm)",
        "python (cold)",
        "javascript (warm)",
        "javascript (cold)",
        "server",
        "leak check",
    }
    assert all(isinstance(target["met"], bool) for target in results["targets"])
    assert "Targets" in completed.stdout
    assert results["exact"]["ratio"] == 1.0
    assert results["cold_start"]["starts"] == 2
    assert "sdk_import_ms" in results["cold_start"]
    leak = results["leak"]
    assert leak["runs"]["runs"] == 50
    assert leak["runs"]["exact"] == 1.0
    assert set(leak["before"]) == set(leak["after"]) == {"server", "launcher", "template"}
    assert "template RSS MB" in completed.stdout
    for server in ("warm", "cold"):
        left = results["leftovers"][server]
        # How many warm runs wait on standby depends on timing; the cold server keeps none.
        most = 2 * STANDBY_RUNS + JAVA_STANDBY_RUNS if server == "warm" else 0
        assert left.pop("standby_runs") <= most
        assert left == {
            "missing_residents": [],
            "zombies": 0,
            "stray_processes": [],
            "workdirs_left": 0,
            "workdirs_left_after_exit": 0,
            "processes_left_after_exit": [] if IS_ROOT else None,
        }
    assert results["ok"] is True
