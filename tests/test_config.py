"""Settings from the environment and the command line."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sandbox_mcp.config import OPTIONS, QUEUED_PER_SLOT, Settings
from sandbox_mcp.errors import ConfigurationError
from sandbox_mcp.sandbox import capacity


def test_defaults_match_the_documented_ones() -> None:
    settings, _ = Settings.load([], {})

    assert settings.timeout == 30
    assert settings.max_timeout == 30
    assert settings.memory_mb == 512
    assert settings.run_root == Path("/tmp/sandbox-mcp")
    assert settings.network == "off"


def test_environment_is_read_and_the_flag_wins() -> None:
    settings, _ = Settings.load(["--memory-mb", "256"], {"SANDBOX_MEMORY_MB": "128"})

    assert settings.memory_mb == 256


def test_execution_timeout_is_read_like_the_ruby_server_did() -> None:
    settings, _ = Settings.load([], {"EXECUTION_TIMEOUT": "12"})

    assert settings.timeout == 12


def test_sandbox_timeout_wins_over_execution_timeout() -> None:
    settings, _ = Settings.load([], {"EXECUTION_TIMEOUT": "12", "SANDBOX_TIMEOUT": "7"})

    assert settings.timeout == 7


def test_timeouts_are_clamped_to_the_maximum() -> None:
    settings, _ = Settings.load([], {"SANDBOX_TIMEOUT": "90", "SANDBOX_MAX_TIMEOUT": "60"})

    assert settings.timeout == 60
    assert settings.clamp_timeout(None) == 60
    assert settings.clamp_timeout(5) == 5
    assert settings.clamp_timeout(600) == 60


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"SANDBOX_TIMEOUT": "soon"}, "SANDBOX_TIMEOUT"),
        ({"SANDBOX_MEMORY_MB": "-5"}, "SANDBOX_MEMORY_MB: must be a positive integer"),
        ({"SANDBOX_NETWORK": "maybe"}, "must be one of off, on"),
        ({"SANDBOX_RUN_ROOT": "relative/dir"}, "must be absolute"),
        ({"SANDBOX_UID_BASE": "100"}, "1000 or more"),
        ({"SANDBOX_WARM": "python,ruby"}, "SANDBOX_WARM: must be off or a comma-separated list"),
    ],
)
def test_bad_settings_name_the_variable(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Settings.load([], environ)


@pytest.mark.parametrize(
    ("value", "languages"),
    [
        (None, ("python", "javascript")),
        ("off", ()),
        ("python", ("python",)),
        ("javascript", ("javascript",)),
        ("javascript, python", ("python", "javascript")),
    ],
)
def test_warm_names_the_languages_started_before_their_calls(
    value: str | None, languages: tuple[str, ...]
) -> None:
    settings, _ = Settings.load([], {} if value is None else {"SANDBOX_WARM": value})

    assert settings.warm_languages == languages


def test_readme_documents_every_setting() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()

    for option in OPTIONS:
        assert f"`{option.env}`" in readme, option.env
        assert f"`{option.flag}`" in readme, option.flag


def test_a_clamped_default_timeout_is_reported() -> None:
    settings, _ = Settings.load([], {"SANDBOX_TIMEOUT": "90"})

    assert settings.timeout == 30
    assert "SANDBOX_TIMEOUT 90 is above SANDBOX_MAX_TIMEOUT 30" in settings.adjustments()[0]
    assert Settings.load([], {})[0].adjustments() == []


def test_http_settings_default_to_stdio_and_loopback() -> None:
    settings, _ = Settings.load([], {})

    assert settings.transport == "stdio"
    assert (settings.host, settings.port) == ("127.0.0.1", 8080)
    assert settings.auth_token is None
    assert settings.binds_loopback


def test_http_settings_come_from_the_environment_and_flags() -> None:
    settings, _ = Settings.load(
        ["--port", "9001", "--allowed-origins", "https://app.example, http://localhost:3000"],
        {
            "SANDBOX_TRANSPORT": "http",
            "SANDBOX_HOST": "::1",
            "SANDBOX_PORT": "9000",
            "SANDBOX_AUTH_TOKEN": "a" * 32,
            "SANDBOX_ALLOWED_HOSTS": "sandbox.example:9001",
        },
    )

    assert settings.transport == "http"
    assert settings.port == 9001
    assert settings.binds_loopback
    assert settings.auth_token == "a" * 32
    assert settings.allowed_hosts == ("sandbox.example:9001",)
    assert settings.allowed_origins == ("https://app.example", "http://localhost:3000")


def test_the_token_stays_out_of_repr_and_describe() -> None:
    settings, _ = Settings.load([], {"SANDBOX_AUTH_TOKEN": "secret-token-0123456789"})

    assert "secret-token" not in repr(settings)
    assert "secret-token" not in str(settings.describe())


def test_a_token_file_loses_one_trailing_newline(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("0123456789abcdef0123\r\n")

    settings, _ = Settings.load(["--auth-token-file", str(token_file)], {})
    from_env, _ = Settings.load([], {"SANDBOX_AUTH_TOKEN_FILE": str(token_file)})

    assert settings.auth_token == from_env.auth_token == "0123456789abcdef0123"


def test_a_token_file_with_another_name_is_refused(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("0123456789abcdef0123\n")
    os.link(token_file, tmp_path / "token.bak")

    with pytest.raises(ConfigurationError, match="has 2 names"):
        Settings.load(["--auth-token-file", str(token_file)], {})


@pytest.mark.parametrize(
    ("content", "environ", "message"),
    [
        ("", {}, "is empty; put the token in it"),
        ("\n", {}, "is empty"),
        ("0123456789abcdef0123", {"SANDBOX_AUTH_TOKEN": "x" * 20}, "keep one of them"),
        ("short", {}, "use at least 16"),
        ("0123456789 abcdef0123", {}, "printable ASCII without spaces"),
        (None, {}, "cannot read the auth token file"),
    ],
)
def test_a_bad_token_file_is_refused_with_the_reason(
    tmp_path: Path, content: str | None, environ: dict[str, str], message: str
) -> None:
    token_file = tmp_path / "token"
    if content is not None:
        token_file.write_text(content)

    with pytest.raises(ConfigurationError, match=message):
        Settings.load(["--auth-token-file", str(token_file)], environ)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"SANDBOX_TRANSPORT": "sse"}, "must be one of stdio, http"),
        ({"SANDBOX_PORT": "0"}, "TCP port from 1 to 65535"),
        ({"SANDBOX_PORT": "70000"}, "TCP port from 1 to 65535"),
        ({"SANDBOX_ALLOWED_ORIGINS": "app.example"}, "scheme://host"),
    ],
)
def test_bad_http_settings_name_the_variable(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Settings.load([], environ)


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.10", "sandbox.example", "::"])  # noqa: S104
def test_http_beyond_loopback_needs_a_token_and_allowed_hosts(host: str) -> None:
    base = {"SANDBOX_TRANSPORT": "http", "SANDBOX_HOST": host}
    token = {"SANDBOX_AUTH_TOKEN": "t" * 32}
    hosts = {"SANDBOX_ALLOWED_HOSTS": "sandbox.example:8080"}

    for environ in (base, {**base, **token}, {**base, **hosts}):
        with pytest.raises(ConfigurationError, match="beyond loopback"):
            Settings.load([], environ)
    settings, _ = Settings.load([], {**base, **token, **hosts})
    assert not settings.binds_loopback
    # Over stdio the same host is never bound, so nothing is refused.
    Settings.load([], {"SANDBOX_HOST": host})


def test_admission_defaults_are_measured_and_auto_may_be_asked_for() -> None:
    measured, _ = Settings.load([], {})
    asked, _ = Settings.load(["--max-concurrent-runs", "auto"], {"SANDBOX_MAX_QUEUED": "auto"})
    chosen, _ = Settings.load(
        ["--max-concurrent-runs", "3", "--log-format", "json"],
        {"SANDBOX_MEMORY_BUDGET_MB": "700", "SANDBOX_QUEUE_TIMEOUT": "5"},
    )

    assert measured.max_concurrent_runs == capacity.default_max_concurrent() >= 2
    assert measured.memory_budget_mb == capacity.default_memory_budget_mb()
    assert measured.max_queued == QUEUED_PER_SLOT * measured.max_concurrent_runs
    assert (measured.queue_timeout, measured.shutdown_grace, measured.log_format) == (
        30.0,
        10.0,
        "plain",
    )
    assert asked.max_concurrent_runs == measured.max_concurrent_runs
    assert (chosen.max_concurrent_runs, chosen.max_queued, chosen.memory_budget_mb) == (
        3,
        3 * QUEUED_PER_SLOT,
        700,
    )
    assert (chosen.queue_timeout, chosen.log_format) == (5.0, "json")


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"SANDBOX_MAX_CONCURRENT_RUNS": "0"}, "SANDBOX_MAX_CONCURRENT_RUNS: must be a positive"),
        ({"SANDBOX_MAX_QUEUED": "-1"}, "SANDBOX_MAX_QUEUED: must be a positive"),
        ({"SANDBOX_QUEUE_TIMEOUT": "0"}, "SANDBOX_QUEUE_TIMEOUT: must be a positive"),
        ({"SANDBOX_LOG_FORMAT": "xml"}, "SANDBOX_LOG_FORMAT: must be one of plain, json"),
    ],
)
def test_bad_admission_settings_name_the_variable(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Settings.load([], environ)


def test_http_with_the_network_on_needs_a_token() -> None:
    base = {"SANDBOX_TRANSPORT": "http", "SANDBOX_NETWORK": "on"}

    with pytest.raises(ConfigurationError, match="snippets could call this server"):
        Settings.load([], base)
    settings, _ = Settings.load([], {**base, "SANDBOX_AUTH_TOKEN": "t" * 32})
    assert settings.network == "on"
    Settings.load([], {"SANDBOX_NETWORK": "on"})  # stdio: no port for a snippet to call
