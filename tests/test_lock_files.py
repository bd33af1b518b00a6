"""The locked requirements: every package the image and the tests install, pinned and hashed.

scripts/lock writes requirements/runtime.txt (the image's) and requirements/dev.txt (the same
pins and the tools of the tests and CI). These tests check that the locks say what
pyproject.toml asks for, and that the Dockerfile and scripts/setup install from them alone.
"""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).parent.parent
RUNTIME = ROOT / "requirements" / "runtime.txt"
DEV = ROOT / "requirements" / "dev.txt"
SNIPPETS = ROOT / "requirements" / "snippets.txt"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(lock: Path) -> dict[str, tuple[str, set[str]]]:
    """Each requirement of a lock file: its name, its pinned version and its hashes."""
    found: dict[str, tuple[str, set[str]]] = {}
    # A requirement is one logical line, continued with backslashes over its hashes.
    for line in lock.read_text().replace("\\\n", " ").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        pinned = re.match(r"([A-Za-z0-9._-]+)==([^\s;]+)", line)
        assert pinned, f"{lock.name}: not pinned to one version: {line[:80]}"
        found[canonical(pinned[1])] = (pinned[2], set(re.findall(r"--hash=sha256:(\w{64})", line)))
    return found


def test_every_locked_requirement_is_pinned_with_its_hashes() -> None:
    for lock in (RUNTIME, DEV):
        locked = pins(lock)

        assert len(locked) > 20, lock.name
        assert [name for name, (_, hashes) in locked.items() if not hashes] == [], lock.name
        assert "scripts/lock" in lock.read_text().splitlines()[1], "regenerate with scripts/lock"


def test_the_dev_lock_holds_the_runtime_pins_unchanged() -> None:
    runtime, dev = pins(RUNTIME), pins(DEV)

    assert {name: dev.get(name) for name in runtime} == runtime


def test_the_locks_satisfy_what_pyproject_asks_for() -> None:
    runtime, dev = pins(RUNTIME), pins(DEV)
    asked = [
        # The build backend is locked so that the project installs with --no-build-isolation.
        *((runtime, text) for text in PYPROJECT["build-system"]["requires"]),
        *((runtime, text) for text in PYPROJECT["project"]["dependencies"]),
        *((dev, text) for text in PYPROJECT["project"]["optional-dependencies"]["dev"]),
    ]

    for locked, text in asked:
        requirement = Requirement(text)
        version, _ = locked[canonical(requirement.name)]
        assert requirement.specifier.contains(version, prereleases=True), (text, version)


def test_the_image_installs_the_runtime_lock_alone_with_hashes() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    installs = [line for line in dockerfile.splitlines() if "pip install" in line]

    assert any("--require-hashes -r /src/requirements/runtime.txt" in line for line in installs)
    assert any("--no-deps --no-build-isolation /src" in line for line in installs)
    for line in installs:
        assert "--require-hashes" in line or "--no-deps" in line, line
    assert "!requirements/runtime.txt" in (ROOT / ".dockerignore").read_text().split()


def test_setup_installs_the_locks_alone_and_rebuilds_when_they_change() -> None:
    setup = (ROOT / "scripts" / "setup").read_text()

    assert "--require-hashes -r requirements/runtime.txt -r requirements/dev.txt" in setup
    assert "--no-deps --no-build-isolation -e ." in setup
    stamp = next(line for line in setup.splitlines() if line.startswith("wanted="))
    assert "requirements/runtime.txt" in stamp and "requirements/dev.txt" in stamp


def test_this_environment_holds_exactly_the_locked_versions() -> None:
    # scripts/setup makes the environment anew from the locks; anything else in it, or another
    # version, was not audited.
    locked = pins(DEV)
    installed = {
        canonical(dist.metadata["Name"]): dist.version
        for dist in metadata.distributions()
        if canonical(dist.metadata["Name"]) != "sandbox-mcp"
    }

    assert {name: version for name, version in installed.items() if name not in locked} == {}
    assert {
        name: (version, locked[name][0])
        for name, version in installed.items()
        if locked[name][0] != version
    } == {}


def test_the_snippets_packages_are_locked_and_installed_from_the_lock_alone() -> None:
    locked = pins(SNIPPETS)
    asked = [
        canonical(line.split("#", 1)[0].strip())
        for line in (ROOT / "requirements" / "snippets.in").read_text().splitlines()
        if line.split("#", 1)[0].strip()
    ]
    installer = (ROOT / "scripts" / "install-runtimes").read_text().replace("\\\n", " ")
    dockerfile = (ROOT / "Dockerfile").read_text()

    assert {"numpy", "pandas", "matplotlib"} <= set(asked) <= set(locked)
    assert [name for name, (_, hashes) in locked.items() if not hashes] == []
    assert "scripts/lock" in SNIPPETS.read_text().splitlines()[1]
    assert '--require-hashes -r "$snippet_lock"' in installer
    assert "COPY requirements/snippets.txt" in dockerfile
    assert "!requirements/snippets.txt" in (ROOT / ".dockerignore").read_text().split()
