"""Settings from the environment and the command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox_mcp.config import OPTIONS, Settings
from sandbox_mcp.errors import ConfigurationError


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
    ],
)
def test_bad_settings_name_the_variable(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Settings.load([], environ)


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
