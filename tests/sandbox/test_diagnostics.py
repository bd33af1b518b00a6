"""Checker output turned into diagnostics: the real checkers first, then recorded output."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from sandbox_mcp.sandbox.diagnostics import Diagnostic, parse
from sandbox_mcp.sandbox.languages import get_language

PYTHON_COMPILE = "import sys; compile(open(sys.argv[1], 'rb').read(), sys.argv[1], 'exec')"
# Prints the exact column, which the traceback's caret cannot give (see _parse_python).
# The registry's own checker programs, so that these tests check what the server runs: the
# Python one prints the exact column, which the traceback's caret cannot give (see
# _parse_python); the Clojure one reads every form without evaluating anything.
PYTHON_EXACT = get_language("python").validate[2]
CLOJURE_READ = get_language("clojure").validate[-1]


@dataclass(frozen=True)
class Checker:
    """A language's checker, a snippet with an error on a known spot, and a clean one."""

    name: str
    language: str
    filename: str
    argv: tuple[str, ...]
    bad: str
    line: int
    column: int | None
    fragment: str  # part of the expected message
    good: str
    env: dict[str, str] = field(default_factory=dict)


# The checker invocations the server is meant to run; `{file}` is the snippet's file name
# (relative, in the working directory) and `{out}` a scratch directory for compiler output.
CHECKERS = [
    Checker(
        "python",
        "python",
        "main.py",
        ("/usr/bin/python3", "-c", PYTHON_COMPILE, "{file}"),
        "def f():\n    x = 1\n    y = (x +)\n",
        3,
        None,
        "SyntaxError: invalid syntax",
        "open('ran', 'w')\n",
    ),
    Checker(
        "python-exact",
        "python",
        "main.py",
        ("/usr/bin/python3", "-c", PYTHON_EXACT, "{file}"),
        "def f():\n    x = 1\n    y = (x +)\n",
        3,
        13,
        "SyntaxError: invalid syntax",
        "open('ran', 'w')\n",
    ),
    Checker(
        "javascript",
        "javascript",
        "main.js",
        ("node", "--check", "{file}"),
        "const a = 1;\nconst b = 2;\nlet c = (a + ;\n",
        3,
        14,
        "SyntaxError: Unexpected token ';'",
        "console.log(1);\n",
    ),
    Checker(
        "typescript",
        "typescript",
        "main.ts",
        (
            "tsc",
            "--noEmit",
            "--pretty",
            "false",
            "--target",
            "es2020",
            "--module",
            "commonjs",
            "--lib",
            "es2020,dom",
            "{file}",
        ),
        "const a: number = 1;\nconst b = 2;\nlet c = (a + ;\n",
        3,
        14,
        "TS1109: Expression expected.",
        "const a: number = 1;\nconsole.log(a);\n",
    ),
    Checker(
        "ruby",
        "ruby",
        "main.rb",
        ("ruby", "-wc", "{file}"),
        "a = 1\nb = 2\nc = (a + )\nputs c\n",
        3,
        10,
        "syntax error, unexpected ')'",
        "puts 1 + 2\n",
    ),
    Checker(
        "bash",
        "bash",
        "main.sh",
        ("bash", "-n", "{file}"),
        "echo a\necho b\nfi\n",
        3,
        None,
        "syntax error near unexpected token `fi'",
        "echo ok > ran\n",
    ),
    Checker(
        "zsh",
        "zsh",
        "main.zsh",
        ("zsh", "-n", "{file}"),
        "echo a\necho b\nfi\n",
        3,
        None,
        "parse error near `fi'",
        "echo ok > ran\n",
    ),
    Checker(
        "fish",
        "fish",
        "main.fish",
        ("fish", "--no-execute", "{file}"),
        "echo a\necho b\necho (foo\n",
        3,
        6,
        "Unexpected end of string, expecting ')'",
        "echo ok > ran\n",
    ),
    Checker(
        "java",
        "java",
        "Main.java",
        ("javac", "-d", "{out}", "-Xlint:all", "{file}"),
        "public class Main {\n    public static void main(String[] args) {\n"
        "        int x = (1 + );\n    }\n}\n",
        3,
        22,
        "illegal start of expression",
        "public class Main {\n    public static void main(String[] args) {\n"
        '        System.out.println("hi");\n    }\n}\n',
    ),
    Checker(
        "kotlin",
        "kotlin",
        "main.kt",
        ("kotlinc", "{file}", "-d", "{out}"),
        "fun main() {\n    val a = 1\n    val b = (a + )\n    println(b)\n}\n",
        3,
        17,
        "expecting an element",
        'fun main() {\n    println("hi")\n}\n',
    ),
    Checker(
        # kotlinc compiles a .kts script to a class without running it (-script would run).
        "kotlin-script",
        "kotlin",
        "main.kts",
        ("kotlinc", "{file}", "-d", "{out}"),
        "val a = 1\nval s: String = a\nprintln(s)\n",
        2,
        17,
        "type mismatch: inferred type is Int but String was expected",
        'java.io.File("ran").writeText("x")\n',
    ),
    Checker(
        "groovy",
        "groovy",
        "main.groovy",
        ("groovyc", "-d", "{out}", "{file}"),
        "def a = 1\ndef b = 2\ndef c = (a + )\nprintln c\n",
        3,
        12,
        "expecting ')', found '+'",
        'println "hi"\n',
    ),
    Checker(
        "scala",
        "scala",
        "main.scala",
        ("scalac", "-nobootcp", "-Ystop-after:typer", "-d", "{out}", "{file}"),
        "object Main {\n  def main(args: Array[String]): Unit = {\n    val = 3\n  }\n}\n",
        3,
        9,
        "illegal start of simple pattern",
        'object Main extends App {\n  println("hi")\n}\n',
    ),
    Checker(
        "clojure",
        "clojure",
        "main.clj",
        ("clojure", "-e", CLOJURE_READ),
        "(ns main)\n(def a 1)\n(defn f [x] (+ x 1)))\n",
        3,
        21,
        "Unmatched delimiter: )",
        '(ns main (:require [clojure.string :as str]))\n(spit "ran" ::str/x)\n',
    ),
    Checker(
        "c",
        "c",
        "main.c",
        ("gcc", "-fsyntax-only", "-Wall", "{file}"),
        "int main(void) {\n    int x = 1;\n    int y = x +;\n    return y;\n}\n",
        3,
        16,
        "expected expression before",
        '#include <stdio.h>\nint main(void) {\n    puts("hi");\n    return 0;\n}\n',
    ),
    Checker(
        "cpp",
        "cpp",
        "main.cpp",
        ("g++", "-fsyntax-only", "-Wall", "{file}"),
        "int main() {\n    int x = 1;\n    int y = x +;\n    return y;\n}\n",
        3,
        16,
        "expected primary-expression before",
        '#include <iostream>\nint main() {\n    std::cout << "hi";\n}\n',
    ),
    Checker(
        "go",
        "go",
        "main.go",
        ("go", "build", "-o", "{out}/main", "{file}"),
        "package main\n\nvar x = (1 + )\n\nfunc main() {}\n",
        3,
        14,
        "syntax error: unexpected ), expecting expression",
        'package main\n\nimport "fmt"\n\nfunc main() {\n\tfmt.Println("hi")\n}\n',
        # The build cache is mandatory and $HOME may not be writable; GOPATH mode keeps
        # a go.mod in some parent directory from changing what a single file means.
        {"GOCACHE": "{out}/gocache", "GOPATH": "{out}/gopath", "GO111MODULE": "off"},
    ),
    Checker(
        "rust",
        "rust",
        "main.rs",
        (
            "/usr/bin/rustc",
            "--error-format=short",
            "--emit=metadata",
            "--crate-type=bin",
            "-o",
            "{out}/main.rmeta",
            "{file}",
        ),
        "fn main() {\n    let a = 1;\n    let b = (a + );\n}\n",
        3,
        18,
        "expected expression, found `)`",
        'fn main() {\n    println!("hi");\n}\n',
    ),
]


def run_checker(checker: Checker, source: str, workdir: Path) -> tuple[int, str]:
    """Write `source` and run the checker on it; the exit code and combined output."""
    if shutil.which(checker.argv[0]) is None:
        pytest.skip(
            f"RUNTIME MISSING: {checker.argv[0]!r} is not installed, so the {checker.name} "
            "checker output format is NOT being tested"
        )
    out = workdir.parent / f"{workdir.name}-out"
    out.mkdir()
    (workdir / checker.filename).write_text(source)

    def fill(text: str) -> str:
        return text.replace("{file}", checker.filename).replace("{out}", str(out))

    env = {**os.environ, **{key: fill(value) for key, value in checker.env.items()}}
    done = subprocess.run(
        [fill(arg) for arg in checker.argv],
        cwd=workdir,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=120,
        check=False,
    )
    return done.returncode, done.stdout


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path


@pytest.mark.parametrize("checker", CHECKERS, ids=[checker.name for checker in CHECKERS])
def test_a_syntax_error_is_located(checker: Checker, workdir: Path) -> None:
    status, output = run_checker(checker, checker.bad, workdir)

    diagnostics = parse(checker.language, output, checker.filename)

    assert status != 0, output
    errors = [diagnostic for diagnostic in diagnostics if diagnostic.severity == "error"]
    assert errors, output
    first = errors[0]
    assert (first.line, first.column) == (checker.line, checker.column), output
    assert checker.fragment in first.message, output
    assert "\n" not in first.message and first.message == first.message.strip()


@pytest.mark.parametrize("checker", CHECKERS, ids=[checker.name for checker in CHECKERS])
def test_valid_code_passes_without_being_run(checker: Checker, workdir: Path) -> None:
    status, output = run_checker(checker, checker.good, workdir)

    assert status == 0, output
    assert parse(checker.language, output, checker.filename) == [], output
    assert not (workdir / "ran").exists(), "the checker executed the snippet"


# --- recorded output ---------------------------------------------------------------------


def test_diagnostics_about_other_files_are_dropped() -> None:
    output = (
        "main.c: In function 'main':\n"
        "main.c:3:12: warning: passing argument 1 of 'printf' makes pointer from integer"
        " without a cast [-Wint-conversion]\n"
        "    3 |     printf(1);\n"
        "      |            ^\n"
        "In file included from main.c:1:\n"
        "/usr/include/stdio.h:356:43: note: expected 'const char * restrict' but argument"
        " is of type 'int'\n"
    )

    assert parse("c", output, "main.c") == [
        Diagnostic(
            3,
            12,
            "warning",
            "passing argument 1 of 'printf' makes pointer from integer without a cast"
            " [-Wint-conversion]",
        )
    ]


@pytest.mark.parametrize(
    ("printed", "kept"),
    [
        ("main.go", True),
        ("./main.go", True),
        ("/tmp/run-1/main.go", True),
        ("other.go", False),
        ("/tmp/run-1/notmain.go", False),
    ],
)
def test_the_main_file_is_recognised_however_it_is_spelled(printed: str, kept: bool) -> None:
    output = f"# command-line-arguments\n{printed}:3:14: undefined: y\n"

    diagnostics = parse("go", output, "main.go")

    assert diagnostics == ([Diagnostic(3, 14, "error", "undefined: y")] if kept else [])


def test_a_crash_is_reported_whole_rather_than_lost() -> None:
    output = (
        "OpenJDK 64-Bit Server VM warning: Options -Xverify:none and -noverify were"
        " deprecated in JDK 13 and will likely be removed in a future release.\n"
        'Exception in thread "main" java.lang.OutOfMemoryError: Java heap space\n'
        "\tat java.base/java.util.Arrays.copyOf(Arrays.java:3537)\n"
        "\t... 24 more\n"
    )

    assert parse("groovy", output, "main.groovy") == [
        Diagnostic(
            None,
            None,
            "error",
            'Exception in thread "main" java.lang.OutOfMemoryError: Java heap space',
        )
    ]


def test_the_fallback_message_is_one_bounded_line() -> None:
    output = "\n".join(f"line {number} of something unexpected" for number in range(100))

    (diagnostic,) = parse("bash", output, "main.sh")

    assert diagnostic.line is None and diagnostic.severity == "error"
    assert diagnostic.message.startswith("line 0 of something unexpected line 1 of")
    assert len(diagnostic.message) <= 300 and "\n" not in diagnostic.message


@pytest.mark.parametrize(
    ("language", "output"),
    [
        ("ruby", ""),
        ("ruby", "Syntax OK\n"),
        (
            "kotlin",
            "OpenJDK 64-Bit Server VM warning: Options -Xverify:none and -noverify were"
            " deprecated in JDK 13 and will likely be removed in a future release.\n",
        ),
        ("java", "Note: Main.java uses unchecked or unsafe operations.\n"),
        ("rust", "warning: 2 warnings emitted\n"),
    ],
)
def test_output_that_only_says_all_is_well_gives_nothing(language: str, output: str) -> None:
    assert parse(language, output, "main") == []


def test_multi_line_messages_keep_their_details_and_the_caret_column() -> None:
    output = (
        "main.scala:3: error: type mismatch;\n"
        " found   : Int(1)\n"
        " required: String\n"
        "\t\tval a: String = 1\n"
        "                                ^\n"
        "one error found\n"
    )

    # scalac expands the tabs in the caret line, so the caret's offset is not the column.
    assert parse("scala", output, "main.scala") == [
        Diagnostic(3, 19, "error", "type mismatch;\nfound   : Int(1)\nrequired: String")
    ]


def test_error_codes_stay_in_the_message() -> None:
    rust = (
        "main.rs:4:20: error[E0425]: cannot find value `y` in this scope\n"
        "main.rs:3:21: error[E0308]: mismatched types\n"
        "error: aborting due to 2 previous errors\n"
    )
    tsc = "main.ts(3,7): error TS2322: Type 'number' is not assignable to type 'string'.\n"

    assert parse("rust", rust, "main.rs") == [
        Diagnostic(4, 20, "error", "E0425: cannot find value `y` in this scope"),
        Diagnostic(3, 21, "error", "E0308: mismatched types"),
    ]
    assert parse("typescript", tsc, "main.ts") == [
        Diagnostic(3, 7, "error", "TS2322: Type 'number' is not assignable to type 'string'.")
    ]


def test_groovy_positions_on_their_own_line_and_repeats_are_merged() -> None:
    one = (
        "main.groovy: 3: unable to resolve class Foo \n"
        " @ line 3, column 5.\n"
        "   Foo x = new Foo()\n"
        "       ^\n"
        "\n"
    )
    output = "org.codehaus.groovy.control.MultipleCompilationErrorsException: startup failed:\n"
    output += one + one + "2 errors\n"

    assert parse("groovy", output, "main.groovy") == [
        Diagnostic(3, 5, "error", "unable to resolve class Foo")
    ]


def test_failures_that_name_no_file_are_kept_but_tool_chatter_is_not() -> None:
    node = (
        "node:internal/modules/cjs/loader:1228\n  throw err;\n  ^\n\n"
        "Error: Cannot find module '/tmp/run/main.js'\n    at Module._resolveFilename\n"
    )
    javac = "warning: [options] system modules path not set\nerror: file not found: Main.java\n"
    python = (
        "Traceback (most recent call last):\n"
        '  File "<string>", line 1, in <module>\n'
        "ValueError: source code string cannot contain null bytes\n"
    )

    assert parse("javascript", node, "main.js") == [
        Diagnostic(None, None, "error", "Error: Cannot find module '/tmp/run/main.js'")
    ]
    assert parse("java", javac, "Main.java") == [
        Diagnostic(None, None, "error", "file not found: Main.java")
    ]
    assert parse("python", python, "main.py") == [
        Diagnostic(None, None, "error", "ValueError: source code string cannot contain null bytes")
    ]


def test_python_warnings_and_a_traceback_without_its_header() -> None:
    # What `python3 main.py` prints: a SyntaxError comes without "Traceback ...".
    output = (
        'main.py:3: SyntaxWarning: "is" with a literal. Did you mean "=="?\n'
        "  if x is 1:\n"
        '  File "/tmp/run/main.py", line 6\n'
        "    z = (\n"
        "        ^\n"
        "SyntaxError: '(' was never closed\n"
    )

    assert parse("python", output, "main.py") == [
        Diagnostic(3, None, "warning", 'SyntaxWarning: "is" with a literal. Did you mean "=="?'),
        Diagnostic(6, None, "error", "SyntaxError: '(' was never closed"),
    ]


def test_quoted_source_lines_are_not_taken_for_findings() -> None:
    bash = (
        "main.sh: line 3: syntax error near unexpected token `)'\n"
        "main.sh: line 3: `echo $(( 1 + )) ; )'\n"
    )
    # Ruby shortens a long line on both sides, so its caret no longer maps onto the file.
    ruby = (
        "main.rb:2: syntax error, unexpected ')'\n"
        "... 1 + 1 + 1 + 1 +  )\n"
        "...                 ^\n"
        "main.rb:1: warning: assigned but unused variable - x\n"
    )

    node = (
        "/tmp/run/main.js:3\n"
        "Outer: for (;;) { break Inner; }\n"
        "                        ^^^^^\n"
        "\n"
        "SyntaxError: Undefined label 'Inner'\n"
        "    at wrapSafe (node:internal/modules/cjs/loader:1464:18)\n"
    )

    assert parse("javascript", node, "main.js") == [
        Diagnostic(3, 25, "error", "SyntaxError: Undefined label 'Inner'")
    ]
    assert parse("bash", bash, "main.sh") == [
        Diagnostic(3, None, "error", "syntax error near unexpected token `)'")
    ]
    assert parse("ruby", ruby, "main.rb") == [
        Diagnostic(2, None, "error", "syntax error, unexpected ')'"),
        Diagnostic(1, None, "warning", "assigned but unused variable - x"),
    ]


def test_an_unknown_language_is_refused() -> None:
    with pytest.raises(ValueError, match="cobol"):
        parse("cobol", "", "main.cob")
