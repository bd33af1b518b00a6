"""The exceptions sandbox-mcp raises, one class for each thing that can go wrong."""

from __future__ import annotations


class SandboxError(Exception):
    """Base class: something stopped a snippet from being run at all."""


# --- the request ---------------------------------------------------------------------------


class InvalidRequest(SandboxError):
    """The caller asked for something malformed or not allowed."""


class UnknownLanguage(InvalidRequest):
    """The language id matches no language in the registry."""


class CodeTooLarge(InvalidRequest):
    """The snippet is larger than the configured maximum."""


class InvalidFilename(InvalidRequest):
    """The main file's name would leave the workdir or is not a plain file name."""


class InvalidPath(InvalidRequest):
    """A file sent with the run has a path that would leave the workdir or breaks a rule."""


# --- sessions ------------------------------------------------------------------------------


class UnknownSession(InvalidRequest):
    """No session of the caller's has this id (it never existed, or is another caller's)."""


class SessionEnded(UnknownSession):
    """The caller's session has ended: reset, expired after its idle time, or evicted."""


class TooManySessions(SandboxError):
    """Every session the sandbox may hold is busy in a call: none can make room."""


# --- the machine ---------------------------------------------------------------------------


class RuntimeUnavailable(SandboxError):
    """The language is known but its runtime is not installed on this machine."""


class ConfigurationError(SandboxError):
    """The server's settings are invalid or unsafe; it refuses to start."""


class UidPoolTaken(ConfigurationError):
    """Another sandbox-mcp on this machine holds a uid of the pool's range."""


class LauncherError(SandboxError):
    """The launcher process failed or died; the run could not be started."""


# --- the server's load -----------------------------------------------------------------------


class ServerBusy(SandboxError):
    """Too many calls are waiting for a run slot, or one waited too long: try again later."""
