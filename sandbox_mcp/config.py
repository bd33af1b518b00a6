"""Settings: one frozen value built once from the environment and the command line.

Every setting is an environment variable `SANDBOX_*` and a CLI flag; the flag wins. Nothing
below this module reads the environment: the server and the sandbox core receive a `Settings`.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sandbox_mcp.errors import ConfigurationError
from sandbox_mcp.sandbox import capacity

MIB = 1024 * 1024
# In a /tmp that other users share, one of them could make this directory first: the server
# refuses a run root that is not its own (sandbox/runner.py).
DEFAULT_RUN_ROOT = Path("/tmp/sandbox-mcp")  # nosec B108
DEFAULT_UID_BASE = 61000


@dataclass(frozen=True)
class Option:
    """One setting: its field in `Settings`, its environment variable, flag and default."""

    field: str
    env: str
    default: Any
    parse: Callable[[str], Any]
    help: str
    aliases: tuple[str, ...] = ()

    @property
    def flag(self) -> str:
        return "--" + self.field.replace("_", "-")


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise ValueError(f"must be a positive integer, got {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(f"must be 0 or a positive integer, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise ValueError(f"must be a positive number, got {text!r}")
    return value


def _auto_or_positive_int(text: str) -> int:
    # 0 stands for "auto": the value is measured when the settings are built.
    return 0 if text == "auto" else _positive_int(text)


def _features(text: str) -> tuple[str, ...]:
    names = tuple(sorted({part.strip() for part in text.split(",") if part.strip()}))
    unknown = [name for name in names if name not in ("landlock", "seccomp")]
    if unknown:
        raise ValueError(
            f"unknown feature {unknown[0]!r}; these can be turned off: landlock, seccomp"
        )
    return names


def _port(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 65535:
        raise ValueError(f"must be a TCP port from 1 to 65535, got {text!r}")
    return value


def _bind_host(text: str) -> str:
    if not text.strip() or any(char.isspace() for char in text):
        raise ValueError(f"must be one address or host name to listen on, got {text!r}")
    return text


def _names(text: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    spaced = [name for name in names if any(char.isspace() for char in name)]
    if spaced:
        raise ValueError(f"a comma-separated list without spaces in a name, got {spaced[0]!r}")
    return names


def _origins(text: str) -> tuple[str, ...]:
    origins = _names(text)
    bad = [origin for origin in origins if not origin.startswith(("http://", "https://"))]
    if bad:
        raise ValueError(
            f"each origin is scheme://host[:port], e.g. https://app.example, got {bad[0]!r}"
        )
    return origins


# The languages whose runs can be warm: Python forks an interpreter started in advance
# (sandbox/warm.py), JavaScript starts node before the call (sandbox/warm_node.py).
WARM_LANGUAGES = ("python", "javascript")


def _warm_languages(text: str) -> str:
    if text.strip() == "off":
        return "off"
    names = _names(text)
    unknown = [name for name in names if name not in WARM_LANGUAGES]
    if unknown or not names:
        raise ValueError(
            f"must be off or a comma-separated list of {', '.join(WARM_LANGUAGES)}, got {text!r}"
        )
    return ",".join(name for name in WARM_LANGUAGES if name in names)


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}, got {text!r}")
        return text

    return parse


OPTIONS: tuple[Option, ...] = (
    Option(
        "transport",
        "SANDBOX_TRANSPORT",
        "stdio",
        _choice("stdio", "http"),
        "stdio: one client on standard input and output; http: MCP Streamable HTTP at /mcp",
    ),
    Option(
        "host", "SANDBOX_HOST", "127.0.0.1", _bind_host, "address the HTTP transport listens on"
    ),
    Option("port", "SANDBOX_PORT", 8080, _port, "TCP port of the HTTP transport"),
    Option(
        "auth_token_file",
        "SANDBOX_AUTH_TOKEN_FILE",
        None,
        Path,
        "file holding the bearer token HTTP clients must send (or set SANDBOX_AUTH_TOKEN)",
    ),
    Option(
        "allowed_hosts",
        "SANDBOX_ALLOWED_HOSTS",
        (),
        _names,
        "Host header values the HTTP transport accepts, comma-separated (default on "
        "loopback: 127.0.0.1:PORT, localhost:PORT, [::1]:PORT)",
    ),
    Option(
        "allowed_origins",
        "SANDBOX_ALLOWED_ORIGINS",
        (),
        _origins,
        "browser Origin values the HTTP transport accepts, comma-separated (default on "
        "loopback: http:// and the loopback hosts; elsewhere none)",
    ),
    Option(
        "timeout",
        "SANDBOX_TIMEOUT",
        30.0,
        _positive_float,
        "default wall-clock deadline of a run, in seconds",
        aliases=("EXECUTION_TIMEOUT",),
    ),
    Option(
        "max_timeout",
        "SANDBOX_MAX_TIMEOUT",
        30.0,
        _positive_float,
        "largest timeout_seconds a caller may ask for; larger requests are clamped",
    ),
    Option(
        "max_code_bytes",
        "SANDBOX_MAX_CODE_BYTES",
        4 * MIB,
        _positive_int,
        "largest snippet accepted, in bytes of UTF-8",
    ),
    Option(
        "max_files_bytes",
        "SANDBOX_MAX_FILES_BYTES",
        8 * MIB,
        _positive_int,
        "largest total size of the files sent with one run (execute_code's files), in bytes",
    ),
    Option(
        "memory_mb",
        "SANDBOX_MEMORY_MB",
        512,
        _positive_int,
        "memory a run may use: data limit per process and resident total of the run",
    ),
    Option(
        "cpu_seconds",
        "SANDBOX_CPU_SECONDS",
        30,
        _positive_int,
        "CPU time limit of each process of a run",
    ),
    Option(
        "max_processes",
        "SANDBOX_MAX_PROCESSES",
        128,
        _positive_int,
        "processes and threads one run may have at once",
    ),
    Option(
        "max_open_files",
        "SANDBOX_MAX_OPEN_FILES",
        512,
        _positive_int,
        "open file descriptors per process",
    ),
    Option(
        "max_file_bytes",
        "SANDBOX_MAX_FILE_BYTES",
        64 * MIB,
        _positive_int,
        "largest file a run may write",
    ),
    Option(
        "max_disk_bytes",
        "SANDBOX_MAX_DISK_BYTES",
        256 * MIB,
        _positive_int,
        "total size of the files in a run's workdir",
    ),
    Option(
        "output_bytes",
        "SANDBOX_OUTPUT_BYTES",
        16 * 1024,
        _positive_int,
        "bytes of each of stdout and stderr shown to the model (head and tail)",
    ),
    Option(
        "max_output_bytes",
        "SANDBOX_MAX_OUTPUT_BYTES",
        16 * MIB,
        _positive_int,
        "total output after which a run is killed as flooding",
    ),
    Option(
        "run_root",
        "SANDBOX_RUN_ROOT",
        DEFAULT_RUN_ROOT,
        Path,
        "directory under which each run gets its private workdir",
    ),
    Option(
        "identity",
        "SANDBOX_IDENTITY",
        "auto",
        _choice("auto", "pool", "shared"),
        "auto: a uid per run when the server may switch users, else the server's own uid",
    ),
    Option(
        "uid_base",
        "SANDBOX_UID_BASE",
        61000,
        _positive_int,
        "first uid (and gid) of the per-run pool",
    ),
    Option(
        "uid_count",
        "SANDBOX_UID_COUNT",
        64,
        _positive_int,
        "number of uids in the per-run pool",
    ),
    Option(
        "max_concurrent_runs",
        "SANDBOX_MAX_CONCURRENT_RUNS",
        "auto",
        _auto_or_positive_int,
        "runs executing at once, further calls wait; auto: 2 per CPU this process may use "
        "(affinity and cgroup quota), at least 2",
    ),
    Option(
        "memory_budget_mb",
        "SANDBOX_MEMORY_BUDGET_MB",
        "auto",
        _auto_or_positive_int,
        "memory the runs in flight may reserve together, each its language's expected need; "
        "auto: the cgroup memory limit, else MemAvailable, less 160 MB for the server",
    ),
    Option(
        "max_queued",
        "SANDBOX_MAX_QUEUED",
        "auto",
        _auto_or_positive_int,
        "calls that may wait for a slot; more are refused as busy; auto: 4 per slot",
    ),
    Option(
        "queue_timeout",
        "SANDBOX_QUEUE_TIMEOUT",
        30.0,
        _positive_float,
        "seconds a call may wait for a slot before it is refused as busy",
    ),
    Option(
        "shutdown_grace",
        "SANDBOX_SHUTDOWN_GRACE",
        10.0,
        _positive_float,
        "on SIGTERM, seconds the runs in flight get to finish before they are killed",
    ),
    Option(
        "max_sessions",
        "SANDBOX_MAX_SESSIONS",
        16,
        _positive_int,
        "sessions open at once (each holds a uid in pool mode); the oldest idle one makes room",
    ),
    Option(
        "session_idle_seconds",
        "SANDBOX_SESSION_IDLE_SECONDS",
        3600.0,
        _positive_float,
        "a session unused for this long is ended, its processes and files removed",
    ),
    Option(
        "network",
        "SANDBOX_NETWORK",
        "off",
        _choice("off", "on"),
        "off: snippets may open only Unix sockets",
    ),
    Option(
        "warm",
        "SANDBOX_WARM",
        "python,javascript",
        _warm_languages,
        "languages whose runs are started before their calls (python, javascript; comma-"
        "separated), or off: every run execs its runtime at the call",
    ),
    Option(
        "warm_java",
        "SANDBOX_WARM_JAVA",
        1,
        _non_negative_int,
        "Java runs kept on standby in a warm JVM (0: none); off when SANDBOX_WARM is off",
    ),
    Option(
        "disable",
        "SANDBOX_DISABLE",
        (),
        _features,
        "kernel layers to leave off (landlock, seccomp): for tests and broken kernels only",
    ),
    Option(
        "log_level",
        "SANDBOX_LOG_LEVEL",
        "info",
        _choice("debug", "info", "warning", "error"),
        "log level of the one-line-per-event log on stderr",
    ),
    Option(
        "log_format",
        "SANDBOX_LOG_FORMAT",
        "plain",
        _choice("plain", "json"),
        "plain: one readable line per event; json: one JSON object per line",
    ),
)


# Calls that may wait per run slot when SANDBOX_MAX_QUEUED is auto: enough for an agent
# framework that fires 32 calls at once at a two-CPU server (4 slots) to be served, not
# refused; each waiting call holds only its request.
QUEUED_PER_SLOT = 16


@dataclass(frozen=True)
class Settings:
    """Every setting of the server, validated. Build it with `Settings.load`."""

    timeout: float = 30.0
    max_timeout: float = 30.0
    max_code_bytes: int = 4 * MIB
    max_files_bytes: int = 8 * MIB
    memory_mb: int = 512
    cpu_seconds: int = 30
    max_processes: int = 128
    max_open_files: int = 512
    max_file_bytes: int = 64 * MIB
    max_disk_bytes: int = 256 * MIB
    output_bytes: int = 16 * 1024
    max_output_bytes: int = 16 * MIB
    run_root: Path = DEFAULT_RUN_ROOT
    identity: str = "auto"
    uid_base: int = DEFAULT_UID_BASE
    uid_count: int = 64
    # 0 is "auto" for these three: __post_init__ measures the machine (capacity.py) once; a
    # copy made with dataclasses.replace keeps the measured values (and 16 x the old slots).
    max_concurrent_runs: int = 0
    memory_budget_mb: int = 0
    max_queued: int = 0
    queue_timeout: float = 30.0
    shutdown_grace: float = 10.0
    max_sessions: int = 16
    session_idle_seconds: float = 3600.0
    network: str = "off"
    # "off", or the languages whose runs are warm, comma-separated (see `warm_languages`).
    warm: str = "python,javascript"
    warm_java: int = 1
    disable: tuple[str, ...] = ()
    log_level: str = "info"
    log_format: str = "plain"
    transport: str = "stdio"
    host: str = "127.0.0.1"
    port: int = 8080
    auth_token_file: Path | None = None
    # Read from SANDBOX_AUTH_TOKEN or the token file; kept out of repr() and describe().
    auth_token: str | None = dataclasses.field(default=None, repr=False)
    allowed_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.max_concurrent_runs == 0:
            object.__setattr__(self, "max_concurrent_runs", capacity.default_max_concurrent())
        if self.memory_budget_mb == 0:
            object.__setattr__(self, "memory_budget_mb", capacity.default_memory_budget_mb())
        if self.max_queued == 0:
            object.__setattr__(self, "max_queued", QUEUED_PER_SLOT * self.max_concurrent_runs)
        if self.timeout > self.max_timeout:
            # The default must itself be allowed; clamp it rather than refuse to start, and
            # say so (see `adjustments`).
            object.__setattr__(self, "_asked_timeout", self.timeout)
            object.__setattr__(self, "timeout", self.max_timeout)
        if not self.run_root.is_absolute():
            raise ConfigurationError(f"SANDBOX_RUN_ROOT must be absolute, got {self.run_root}")
        if self.uid_base < 1000:
            raise ConfigurationError(
                "SANDBOX_UID_BASE must be 1000 or more: below are system users"
            )
        if self.output_bytes > self.max_output_bytes:
            raise ConfigurationError("SANDBOX_OUTPUT_BYTES cannot exceed SANDBOX_MAX_OUTPUT_BYTES")
        if self.auth_token is not None:
            _check_token(self.auth_token)
        if self.transport == "http" and not self.binds_loopback:
            self._check_exposed()
        if self.transport == "http" and self.network == "on" and self.auth_token is None:
            # A snippet with the network could call the server itself and start runs that
            # escape its own deadline and limits.
            raise ConfigurationError(
                "SANDBOX_NETWORK=on over HTTP needs a bearer token (SANDBOX_AUTH_TOKEN or "
                "--auth-token-file): without one, snippets could call this server themselves"
            )

    @property
    def warm_languages(self) -> tuple[str, ...]:
        """The languages SANDBOX_WARM makes warm (none when it is off)."""
        return tuple(name for name in self.warm.split(",") if name in WARM_LANGUAGES)

    @property
    def binds_loopback(self) -> bool:
        """Whether the HTTP transport listens only on this machine's loopback interface."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host.strip("[]")).is_loopback
        except ValueError:
            return False

    def _check_exposed(self) -> None:
        # Beyond loopback anyone who can reach the port can run code: a token, and the
        # names clients will reach it by, must be set on purpose.
        missing = []
        if self.auth_token is None:
            missing.append("a bearer token (SANDBOX_AUTH_TOKEN, or --auth-token-file PATH)")
        if not self.allowed_hosts:
            missing.append(
                "the Host names clients use (--allowed-hosts or SANDBOX_ALLOWED_HOSTS, "
                "e.g. sandbox.example:8080)"
            )
        if missing:
            raise ConfigurationError(
                f"refusing to serve HTTP on {self.host}, beyond loopback, without "
                + " and ".join(missing)
                + "; browser origins, if any, go in --allowed-origins or SANDBOX_ALLOWED_ORIGINS"
            )

    def adjustments(self) -> list[str]:
        """Settings that were changed to be consistent, in words for the log."""
        asked = getattr(self, "_asked_timeout", None)
        if asked is None:
            return []
        return [
            f"SANDBOX_TIMEOUT {asked:g} is above SANDBOX_MAX_TIMEOUT {self.max_timeout:g}: "
            f"runs default to {self.max_timeout:g} s; raise SANDBOX_MAX_TIMEOUT to allow more"
        ]

    @property
    def memory_bytes(self) -> int:
        return self.memory_mb * MIB

    def clamp_timeout(self, requested: float | None) -> float:
        """The deadline a run gets: the request, or the default, never above the maximum."""
        if requested is None:
            return self.timeout
        return min(float(requested), self.max_timeout)

    @classmethod
    def load(
        cls, argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
    ) -> tuple[Settings, argparse.Namespace]:
        """Read settings from `environ` (default: the process environment) and `argv`.

        Returns the settings and the parsed command line (for options that are not settings,
        such as --version). Raises `ConfigurationError` naming the bad variable or flag.
        """
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}

        for option in OPTIONS:
            for name in (option.env, *option.aliases):
                if name in environ and environ[name] != "":
                    values[option.field] = _parse(option, environ[name], name)
                    break

        parser = build_parser()
        args = parser.parse_args(argv)
        for option in OPTIONS:
            raw = getattr(args, option.field)
            if raw is not None:
                values[option.field] = _parse(option, raw, option.flag)

        values["auth_token"] = _auth_token(environ.get("SANDBOX_AUTH_TOKEN"), values)
        return cls(**values), args

    def describe(self) -> dict[str, Any]:
        """The settings as plain values, for logs and the model's instructions; no token."""
        return {
            key: str(value) if isinstance(value, Path) else value
            for key, value in dataclasses.asdict(self).items()
            if key != "auth_token"
        }


def _parse(option: Option, raw: str, source: str) -> Any:
    try:
        return option.parse(raw)
    except ValueError as exc:
        raise ConfigurationError(f"{source}: {exc}") from None


def _auth_token(from_environment: str | None, values: Mapping[str, Any]) -> str | None:
    # The token is never a flag: a command line is visible to every process in /proc.
    path = values.get("auth_token_file")
    if path is None:
        return from_environment or None
    if from_environment:
        raise ConfigurationError(
            "both SANDBOX_AUTH_TOKEN and an auth token file are set; keep one of them"
        )
    try:
        text = Path(path).read_text(encoding="utf-8")
        names = Path(path).stat().st_nlink
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"cannot read the auth token file {path}: {exc}") from None
    if names > 1:
        # Runs are kept from the file's path, but another name of it (a hard link beside it)
        # is another path to the same secret, and Landlock would grant it as a sibling.
        raise ConfigurationError(
            f"the auth token file {path} has {names} names (hard links); runs could read it "
            "through another one: give the server a file of its own"
        )
    token = text.removesuffix("\n").removesuffix("\r")
    if not token:
        raise ConfigurationError(f"the auth token file {path} is empty; put the token in it")
    return token


def _check_token(token: str) -> None:
    if not token.isascii() or not token.isprintable() or " " in token:
        raise ConfigurationError(
            "the auth token must be printable ASCII without spaces (it travels in an HTTP "
            "header); make one with: openssl rand -hex 32"
        )
    if len(token) < 16:
        raise ConfigurationError(
            f"the auth token is {len(token)} characters long; use at least 16, e.g. "
            "from: openssl rand -hex 32"
        )


def build_parser() -> argparse.ArgumentParser:
    """The command line: every setting as a flag."""
    parser = argparse.ArgumentParser(
        prog="sandbox-mcp",
        description="MCP server that runs code snippets in hardened, single-use sandboxes.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    for option in OPTIONS:
        env = " or ".join((option.env, *option.aliases))
        # An empty or missing default is described in the help itself, or means "none".
        default = f", default {option.default}" if option.default not in (None, "", ()) else ""
        parser.add_argument(
            option.flag,
            dest=option.field,
            default=None,
            metavar=option.field.upper(),
            help=f"{option.help} (env {env}{default})",
        )
    return parser
