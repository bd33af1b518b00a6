"""The language registry: for each language, read as data, how its snippets are run.

Adding a language is a new `Language` entry (and its tests); the runner does not change.
Commands are argv templates: `{file}` is the main file's name inside the workdir and
`{heap_mb}` the heap a runtime may grow to under the run's memory limit.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from sandbox_mcp.errors import InvalidFilename, UnknownLanguage

# What snippets see as PATH. System directories only: nothing under /root or a version
# manager, which a non-root run could not reach anyway.
SNIPPET_PATH = "/usr/local/bin:/usr/bin:/bin"

_FILENAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,127}$")


@dataclass(frozen=True)
class Language:
    """How to run one language. Every field is plain data."""

    id: str
    name: str
    extension: str
    executable: str
    run: tuple[str, ...]
    version: tuple[str, ...]
    version_pattern: str
    aliases: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    # Lines on stderr that mean the runtime itself ran out of memory under the limit.
    oom_patterns: tuple[str, ...] = ()
    # Share of the memory limit the runtime's own heap may take; the rest is for its
    # code, stacks and native allocations.
    heap_share: float = 0.75

    @property
    def default_filename(self) -> str:
        return "main" + self.extension

    def command(self, filename: str, args: tuple[str, ...], memory_mb: int) -> list[str]:
        """The argv that runs `filename` with `args` under a memory limit of `memory_mb`."""
        heap_mb = max(16, int(memory_mb * self.heap_share))
        argv = [part.format(file=filename, heap_mb=heap_mb) for part in self.run]
        argv[0] = self.resolved_executable() or argv[0]
        return [*argv, *args]

    def resolved_executable(self) -> str | None:
        """The runtime's absolute path on the snippets' PATH, or None when it is missing."""
        found = shutil.which(self.executable, path=SNIPPET_PATH)
        return os.path.realpath(found) if found else None

    def is_out_of_memory(self, stderr_text: str) -> bool:
        return any(re.search(pattern, stderr_text) for pattern in self.oom_patterns)


LANGUAGES: tuple[Language, ...] = (
    Language(
        id="python",
        name="Python",
        extension=".py",
        executable="python3",
        # -u: what was printed before a kill is in the answer. -B: no .pyc in the workdir.
        run=("python3", "-u", "-B", "{file}"),
        version=("python3", "--version"),
        version_pattern=r"Python (\S+)",
        aliases=("py", "python3"),
        env={"PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONIOENCODING": "utf-8"},
        oom_patterns=(r"\bMemoryError\b",),
    ),
    Language(
        id="javascript",
        name="JavaScript (Node.js)",
        extension=".js",
        executable="node",
        # V8 sizes its heap from the machine, not from rlimits: without this it grows past
        # the limit and dies in malloc instead of raising a clean heap-limit error.
        run=("node", "--max-old-space-size={heap_mb}", "{file}"),
        version=("node", "--version"),
        version_pattern=r"v(\S+)",
        aliases=("js", "node", "nodejs"),
        env={"NODE_DISABLE_COLORS": "1", "NO_COLOR": "1"},
        oom_patterns=(
            r"JavaScript heap out of memory",
            r"Reached heap limit",
            r"FATAL ERROR: .*[Aa]llocation failed",
            r"RangeError: Array buffer allocation failed",
        ),
        heap_share=0.6,
    ),
    Language(
        id="bash",
        name="Bash",
        extension=".sh",
        executable="bash",
        run=("bash", "{file}"),
        version=("bash", "--version"),
        version_pattern=r"version (\S+)",
        aliases=("sh", "shell"),
        oom_patterns=(r"Cannot allocate memory", r"x(m|re)alloc: .*cannot allocate"),
    ),
)

_BY_NAME: dict[str, Language] = {}
for _language in LANGUAGES:
    for _name in (_language.id, *_language.aliases):
        _BY_NAME[_name] = _language


def get_language(name: str) -> Language:
    """The language called `name` (an id or an alias, any case), or `UnknownLanguage`."""
    language = _BY_NAME.get(name.strip().lower())
    if language is None:
        known = ", ".join(language.id for language in LANGUAGES)
        raise UnknownLanguage(f"unknown language {name!r}; known: {known}")
    return language


def check_filename(filename: str) -> str:
    """A main-file name that stays inside the workdir: one plain path component."""
    if not _FILENAME.fullmatch(filename) or filename in (".", ".."):
        raise InvalidFilename(
            f"invalid filename {filename!r}: use one plain file name of letters, digits, "
            "'.', '_', '+' or '-' (at most 128 characters, no '/' and no leading '.' or '-')"
        )
    return filename


@dataclass(frozen=True)
class RuntimeInfo:
    """What this machine has for one language."""

    language: Language
    available: bool
    version: str | None
    path: str | None
    reason: str | None


def probe_runtime(language: Language, timeout: float = 10.0) -> RuntimeInfo:
    """Find the runtime and read its real version. A missing runtime is a result, not an error."""
    path = language.resolved_executable()
    if path is None:
        return RuntimeInfo(language, False, None, None, f"{language.executable} not found on PATH")
    if not os.access(path, os.X_OK) or not _world_executable(Path(path)):
        return RuntimeInfo(language, False, None, path, f"{path} is not executable by others")

    try:
        completed = subprocess.run(
            [path, *language.version[1:]],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={"PATH": SNIPPET_PATH, "LANG": "C.UTF-8"},
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return RuntimeInfo(language, False, None, path, f"version check failed: {exc}")

    match = re.search(language.version_pattern, completed.stdout + completed.stderr)
    version = match.group(1) if match else None
    return RuntimeInfo(language, True, version, path, None)


def _world_executable(path: Path) -> bool:
    # A non-root run must be able to execute the runtime; a binary reachable only by root
    # (say, under /root) is as good as missing.
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return bool(mode & 0o001)
