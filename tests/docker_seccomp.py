"""Load Docker's default seccomp profile, then exec a command under it.

    /usr/bin/python3 tests/docker_seccomp.py PROFILE [--caps SETUID,SETGID] -- COMMAND...

Docker compiles its profile (a JSON file) into a filter for each container, keeping only the
rules that apply to the container's architecture, capabilities and kernel, and installs it
just before the entrypoint starts. This does the same for the container-contract tests, so
that a design which needs a call Docker forbids (a namespace, a mount, `clone3`) fails here
and not in users' hands. `scripts/install-runtimes` puts the profile in place, taken from the
distribution's copy of Docker's source.

It runs on the system interpreter, which has libseccomp's binding (python3-seccomp); the
project's virtual environment does not. The caller must already have set no-new-privileges,
as `docker run --security-opt no-new-privileges` does: without it (or CAP_SYS_ADMIN) the
kernel refuses an unprivileged filter.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import platform
import sys

import seccomp

# Docker's names for this machine, and libseccomp's for the architectures in the archMap.
_DOCKER_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}
_ARCHES = {
    "SCMP_ARCH_X86": seccomp.Arch.X86,
    "SCMP_ARCH_X32": seccomp.Arch.X32,
    "SCMP_ARCH_ARM": seccomp.Arch.ARM,
}
_NATIVE = {"x86_64": "SCMP_ARCH_X86_64", "aarch64": "SCMP_ARCH_AARCH64"}
_OPS = {
    "SCMP_CMP_EQ": seccomp.EQ,
    "SCMP_CMP_NE": seccomp.NE,
    "SCMP_CMP_LT": seccomp.LT,
    "SCMP_CMP_LE": seccomp.LE,
    "SCMP_CMP_GT": seccomp.GT,
    "SCMP_CMP_GE": seccomp.GE,
    "SCMP_CMP_MASKED_EQ": seccomp.MASKED_EQ,
}


def main() -> None:
    if "--" not in sys.argv:
        sys.exit(__doc__.split("\n\n")[1])
    split = sys.argv.index("--")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile")
    parser.add_argument("--caps", default="", help="the container's capabilities, e.g. SETUID")
    options = parser.parse_args(sys.argv[1:split])
    command = sys.argv[split + 1 :]
    if not command:
        parser.error("no command to run")

    with open(options.profile, encoding="utf-8") as source:
        profile = json.load(source)
    caps = {f"CAP_{name.strip().upper()}" for name in options.caps.split(",") if name.strip()}

    build(profile, caps).load()
    os.execvp(command[0], command)


def build(profile: dict, caps: set[str]) -> seccomp.SyscallFilter:
    machine = platform.machine()
    default = action(profile["defaultAction"], profile.get("defaultErrnoRet"))
    rules = seccomp.SyscallFilter(defaction=default)
    for entry in profile.get("archMap") or []:
        if entry["architecture"] == _NATIVE.get(machine):
            for sub in entry.get("subArchitectures", []):
                if sub in _ARCHES:
                    rules.add_arch(_ARCHES[sub])

    for entry in profile["syscalls"]:
        if not applies(entry, _DOCKER_ARCH.get(machine, machine), caps):
            continue
        verdict = action(entry["action"], entry.get("errnoRet"))
        # libseccomp refuses a rule that repeats the default; Docker leaves such rules out too.
        if entry["action"] == profile["defaultAction"] and entry.get("errnoRet") == profile.get(
            "defaultErrnoRet"
        ):
            continue
        for name in entry["names"]:
            for comparisons in argument_sets(entry.get("args") or []):
                # A call this libseccomp or architecture does not know: Docker skips it too.
                with contextlib.suppress(RuntimeError, ValueError):
                    rules.add_rule(verdict, name, *comparisons)
    return rules


def applies(entry: dict, arch: str, caps: set[str]) -> bool:
    """Docker's rule for conditional entries: every included condition holds, no excluded one."""
    includes = entry.get("includes") or {}
    excludes = entry.get("excludes") or {}
    if includes.get("arches") and arch not in includes["arches"]:
        return False
    if arch in (excludes.get("arches") or []):
        return False
    if any(cap not in caps for cap in includes.get("caps") or []):
        return False
    if any(cap in caps for cap in excludes.get("caps") or []):
        return False
    minimum = includes.get("minKernel")
    return not minimum or kernel() >= version(minimum)


def argument_sets(args: list[dict]) -> list[list[seccomp.Arg]]:
    """Comparisons ANDed in one rule; several on one argument become separate rules (OR)."""
    comparisons = [
        seccomp.Arg(arg["index"], _OPS[arg["op"]], arg["value"], arg.get("valueTwo", 0))
        for arg in args
    ]
    indexes = [arg["index"] for arg in args]
    if len(set(indexes)) == len(indexes):
        return [comparisons]
    return [[comparison] for comparison in comparisons]


def action(name: str, errno_ret: int | None) -> int:
    if name == "SCMP_ACT_ALLOW":
        return seccomp.ALLOW
    if name == "SCMP_ACT_ERRNO":
        return seccomp.ERRNO(errno.EPERM if errno_ret is None else errno_ret)
    if name in ("SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD"):
        return seccomp.KILL
    if name == "SCMP_ACT_KILL_PROCESS":
        return seccomp.KILL_PROCESS
    if name == "SCMP_ACT_LOG":
        return seccomp.LOG
    sys.exit(f"docker_seccomp: the profile uses {name}, which this loader does not know")


def kernel() -> tuple[int, ...]:
    return version(platform.release())


def version(text: str) -> tuple[int, ...]:
    parts = []
    for part in text.split(".")[:2]:
        digits = "".join(ch for ch in part if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


if __name__ == "__main__":
    main()
