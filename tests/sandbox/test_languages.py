"""The language registry."""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

import pytest

from sandbox_mcp.config import Settings
from sandbox_mcp.errors import InvalidFilename, UnknownLanguage
from sandbox_mcp.sandbox.languages import (
    LANGUAGES,
    PROBE_PREFIX,
    check_filename,
    get_language,
    probe_runtime,
)
from sandbox_mcp.sandbox.runner import Sandbox
from tests.support import uid_base


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

    assert str(raised.value).startswith("unknown language 'cobol'; known: python, javascript, ")
    assert str(raised.value).endswith(", go, rust")


def test_aliases_are_unique() -> None:
    names = [name for language in LANGUAGES for name in (language.id, *language.aliases)]

    assert len(names) == len(set(names))


def test_node_heap_follows_the_memory_limit() -> None:
    language = get_language("javascript")
    main = language.main_file("console.log(1)", None)
    argv = language.command(language.run, language.values(main, "/w", memory_mb=500))

    assert "--max-old-space-size=300" in argv
    assert argv[-1] == "main.js"
    assert argv[0].startswith("/")


@pytest.mark.parametrize(
    ("code", "requested", "name", "entry"),
    [
        (
            "public class Greeter { public static void main(String[] a) {} }",
            None,
            "Greeter.java",
            "Greeter",
        ),
        (
            "public class Greeter { public static void main(String[] a) {} }",
            "Main.java",
            "Greeter.java",
            "Greeter",
        ),
        (
            "class A {}\nclass Prog { static public void main(String[] a) {} }",
            None,
            "Prog.java",
            "Prog",
        ),
        (
            "public class Lib {}\nclass Runner { public static void main(String[] a) {} }",
            None,
            "Lib.java",
            "Runner",
        ),
        ("class Main { public static void main(String[] a) {} }", "App.java", "App.java", "Main"),
    ],
)
def test_java_file_and_entry_class(code: str, requested: str | None, name: str, entry: str) -> None:
    main = get_language("java").main_file(code, requested)

    assert (main.name, main.entry) == (name, entry)
    assert bool(main.notes) == (requested is not None and requested != name)


@pytest.mark.parametrize(
    ("code", "name", "script", "entry"),
    [
        ('println("hi")', "main.kts", True, None),
        ("fun main() {\n    println(1)\n}", "main.kt", False, "MainKt"),
    ],
)
def test_kotlin_script_or_program(code: str, name: str, script: bool, entry: str | None) -> None:
    main = get_language("kotlin").main_file(code, None)

    assert (main.name, main.script, main.entry) == (name, script, entry)


@pytest.mark.parametrize(
    ("code", "name"),
    [
        ("console.log(1)", "main.js"),
        ("import fs from 'fs';\nconsole.log(1)", "main.mjs"),
        ("export const x = 1;", "main.mjs"),
        ("await Promise.resolve(1);", "main.mjs"),
        ("async function f() {\n  await g();\n}", "main.js"),
        ("const fs = require('fs'); // import later", "main.js"),
    ],
)
def test_javascript_module_or_commonjs(code: str, name: str) -> None:
    assert get_language("javascript").main_file(code, None).name == name


def test_templates_fill_only_known_placeholders() -> None:
    language = get_language("typescript")
    main = language.main_file("let x = 1", None)
    argv = language.command(language.run, language.values(main, "/w", memory_mb=512))

    assert argv[-1] == "main.ts"
    assert "{" in argv[-2]  # the inline runner's own braces survive


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


def test_the_version_probe_gets_a_private_home_that_is_removed_after() -> None:
    from dataclasses import replace

    # Groovy, for one, sources ~/.groovy/startup: with a shared HOME such as /tmp, any local
    # user could run shell code as the server, root in pool mode.
    bash = get_language("bash")
    telltale = replace(
        bash, version=("bash", "-c", 'stat -c "%a %u %n" "$HOME"'), version_pattern="(.+)"
    )
    info = probe_runtime(telltale)

    assert info.available, info.reason
    mode, owner, home = info.version.split(" ", 2)
    assert (mode, int(owner)) == ("700", os.geteuid())
    assert os.path.basename(home).startswith("sandbox-mcp-probe-")
    assert not os.path.exists(home)


@pytest.mark.anyio
async def test_a_server_leaves_no_probe_home_behind_even_mid_probe(run_root: Path) -> None:
    # Closed while the JVM probes still run in their threads: a probe that made its own
    # temporary HOME could never remove it, and hundreds piled up in /tmp.
    before = set(Path(tempfile.gettempdir()).glob(f"{PROBE_PREFIX}*"))
    box = Sandbox(Settings(run_root=run_root, uid_base=uid_base(6)))
    await box.start()
    await asyncio.sleep(0.2)
    made = set(Path(tempfile.gettempdir()).glob(f"{PROBE_PREFIX}*")) - before
    await box.close()

    assert made, "the server made no probe home: this test no longer sees what it checks"
    assert not any(home.exists() for home in made)
