"""The language registry."""

from __future__ import annotations

import pytest

from sandbox_mcp.errors import InvalidFilename, UnknownLanguage
from sandbox_mcp.sandbox.languages import LANGUAGES, check_filename, get_language, probe_runtime


@pytest.mark.parametrize(
    ("name", "language"),
    [
        ("python", "python"),
        ("PY", "python"),
        ("js", "javascript"),
        ("node", "javascript"),
        ("sh", "bash"),
    ],
)
def test_ids_and_aliases_resolve(name: str, language: str) -> None:
    assert get_language(name).id == language


def test_unknown_language_lists_the_known_ones() -> None:
    with pytest.raises(UnknownLanguage) as raised:
        get_language("cobol")

    assert str(raised.value) == "unknown language 'cobol'; known: python, javascript, bash"


def test_aliases_are_unique() -> None:
    names = [name for language in LANGUAGES for name in (language.id, *language.aliases)]

    assert len(names) == len(set(names))


def test_node_heap_follows_the_memory_limit() -> None:
    argv = get_language("javascript").command("main.js", ("a",), memory_mb=500)

    assert "--max-old-space-size=300" in argv
    assert argv[-2:] == ["main.js", "a"]
    assert argv[0].startswith("/")


@pytest.mark.parametrize("name", ["main.py", "App.java", "a-b_c.test.js", "x+y.sh"])
def test_plain_file_names_are_accepted(name: str) -> None:
    assert check_filename(name) == name


@pytest.mark.parametrize(
    "name", ["../x", "/etc/passwd", "a/b", ".hidden", "-rf", "a\0b", "é.py", "x" * 200, "a.sh\n"]
)
def test_names_that_could_escape_or_confuse_are_refused(name: str) -> None:
    with pytest.raises(InvalidFilename):
        check_filename(name)


def test_every_runtime_reports_a_real_version() -> None:
    for language in LANGUAGES:
        info = probe_runtime(language)
        assert info.available, info.reason
        assert info.version and info.version[0].isdigit(), (language.id, info.version)


def test_a_missing_runtime_is_reported_not_raised() -> None:
    from dataclasses import replace

    ghost = replace(LANGUAGES[0], id="ghost", executable="no-such-runtime-here")
    info = probe_runtime(ghost)

    assert not info.available
    assert "not found" in info.reason
