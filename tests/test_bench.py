"""`scripts/bench --smoke`: every section is there, every answer exact, nothing left behind.

No timing is checked: the numbers depend on the machine and on what else runs on it, and are
read from the benchmark itself, never asserted. In the root pass of `scripts/test` only (it
sits at the top of `tests/`), so the server it starts runs in pool mode.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.support import IS_ROOT, uid_base

BENCH = Path(__file__).resolve().parents[1] / "scripts" / "bench"
LANGUAGES = ("python", "javascript")


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
    assert {"meta", "floor", "stack", "ratios", "exact", "cold_start", "leak"} <= set(results)
    mode = "pool" if IS_ROOT else "shared"
    assert results["meta"]["identity"] == mode
    assert f"identity {mode}" in completed.stdout
    for language in LANGUAGES:
        assert set(results["floor"][language]) == {"sequential", "8"}
        stack = results["stack"][language]
        assert {width: batch["exact"] for width, batch in stack.items()} == {
            "sequential": 1.0,
            "8": 1.0,
            "32": 1.0,
        }
        assert [stack[width]["runs"] for width in ("8", "32")] == [8, 32]
        assert set(results["ratios"][language]) == {
            "overhead_p50_ms",
            "throughput_pct_8",
            "throughput_pct_32",
        }
    assert results["exact"]["ratio"] == 1.0
    assert results["cold_start"]["starts"] == 2
    assert "sdk_import_ms" in results["cold_start"]
    leak = results["leak"]
    assert leak["runs"]["runs"] == 50
    assert leak["runs"]["exact"] == 1.0
    assert set(leak["before"]) == set(leak["after"]) == {"server", "launcher"}
    assert leak["zombies"] == 0
    assert leak["stray_processes"] == []
    assert leak["workdirs_left"] == 0
    assert leak["workdirs_left_after_exit"] == 0
    assert results["ok"] is True
