"""Structured diagnostics from the output of each language's syntax or type checker.

Every checker prints its findings in a format of its own, wrapped in source excerpts,
carets, continuation lines and summaries. `parse` reduces that to one `Diagnostic` per
problem in the submitted file: where it is, how bad it is, and the first line of what the
tool said. The parsers are kept forgiving: a line they do not understand is skipped, and
when a checker produced output but not one line of it could be understood, the start of
that output is returned as a single diagnostic so that a crash is never reported as "fine".
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Diagnostic", "parse"]


@dataclass(frozen=True)
class Diagnostic:
    """One problem a checker found."""

    line: int | None  # 1-based, None when the tool gives none
    column: int | None  # 1-based, None when unknown
    severity: str  # "error", "warning" or "note"
    message: str  # one line, without the file/line prefix, trimmed


@dataclass(frozen=True)
class _Finding:
    """A diagnostic and the file it is about, as the tool spelled it (None: names no file)."""

    path: str | None
    diagnostic: Diagnostic


_Parser = Callable[[list[str]], list[_Finding]]

_FALLBACK_LIMIT = 300

# Tools colour their output when forced to (GCC_COLORS, FORCE_COLOR, CLICOLOR_FORCE...);
# the escapes would otherwise end up inside paths and messages.
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

# Lines that carry no finding. They must not trigger the fallback on their own, or a
# successful check would be reported as a failure.
_BENIGN = re.compile(
    r"Syntax OK"  # ruby -c
    r"|OpenJDK 64-Bit Server VM warning: .*"  # kotlinc's launcher passes flags JDK 17 deprecates
    r"|Picked up _?JAVA_(?:TOOL_)?OPTIONS: .*"
    r"|Note: .*"  # javac's advice to recompile with -Xlint
    r"|# command-line-arguments"  # go's header above a file's errors
    r"|\(node:\d+\) \w*Warning: .*"
    r"|\d+ (?:errors?|warnings?)"  # javac's and groovyc's totals
    r"|(?:one|two|three|four|\d+) (?:errors?|warnings?) found"  # scalac's totals
    r"|warning: Error while reading file .*"  # fish, after the real message
    r"|.*MultipleCompilationErrorsException: startup failed:"  # groovyc's preamble
)
# A JVM stack trace says where the tool broke, not what is wrong with the code.
_STACK_FRAME = re.compile(r"\s+at \S|\s*\.\.\. \d+ more$")

# A line that only marks a column: "^", "^^^^", "^~~~", fish's "^~^".
_CARET_LINE = re.compile(r"^[ \t]*\^[\^~]*[ \t]*$")

_SEVERITIES = {
    "fatal error": "error",
    "error": "error",
    "exception": "error",
    "warning": "warning",
    "note": "note",
    "info": "note",
    "message": "note",
    "help": "note",
}


def _number(text: str | None) -> int | None:
    """A 1-based position, or None: tools print 0 for "the whole file" or "unknown"."""
    if text is None or not text.isdigit():
        return None
    value = int(text)
    return value if value > 0 else None


def _finding(
    path: str | None, line: int | None, column: int | None, severity: str, message: str
) -> _Finding:
    return _Finding(path, Diagnostic(line, column, severity, message.strip()))


def _caret_column(source: str, caret: str) -> int | None:
    """The 1-based column in `source` that the `^` in the `caret` line below it points at.

    javac, node and ruby copy the source's tabs into the caret line while scalac expands
    them to 8 columns; comparing display widths handles both.
    """
    width = len(caret[: caret.index("^")].expandtabs())
    for index in range(len(source)):
        if len(source[: index + 1].expandtabs()) > width:
            return index + 1
    # Just past the end is where tools point at "unexpected end of line/input".
    return len(source) + 1 if len(source.expandtabs()) == width else None


def _caret_after(lines: list[str], index: int, header: re.Pattern[str]) -> int | None:
    """The column marked by the first source+caret pair after the header at `index`.

    Messages can run over several lines before the excerpt (scalac's "found/required"),
    so look a few lines ahead, but never into the next diagnostic.
    """
    for position in range(index + 2, min(index + 12, len(lines))):
        if header.match(lines[position]):
            return None
        if _CARET_LINE.match(lines[position]):
            return _caret_column(lines[position - 1], lines[position])
    return None


def _details_before_excerpt(lines: list[str], index: int) -> list[str]:
    """The lines between a header and its quoted source line, when a caret follows.

    scalac puts the substance of a message there ("type mismatch;" then "found: Int(1)",
    "required: String"); without them the message says only that something is wrong.
    """
    for position in range(index + 2, min(index + 12, len(lines))):
        if _CARET_LINE.match(lines[position]):
            return [line.strip() for line in lines[index + 1 : position - 1] if line.strip()]
    return []


def _message_or_next(message: str, lines: list[str], index: int) -> str:
    """The message itself, or the next non-blank line when the tool broke the line early."""
    if message.strip():
        return message
    for following in lines[index + 1 : index + 4]:
        if following.strip() and not _CARET_LINE.match(following):
            return following
    return message


# --- gcc style ---------------------------------------------------------------------------

_GCC = re.compile(
    r"^(?P<path>[^\s:][^:]*?):(?P<line>\d+):(?:(?P<column>\d+):)?\s+"
    r"(?P<severity>fatal error|error|warning|note|info|help)(?:\[(?P<code>[^\]]+)\])?:"
    r"\s*(?P<message>.*)$"
)
# Problems with no file: "error: file not found: X.java", "gcc: fatal error: no input
# files", kotlinc's "exception: java.lang.IllegalStateException: ...".
_GCC_NO_FILE = re.compile(
    r"^(?:[\w.+-]+: )?(?P<severity>fatal error|error|warning|note|info|exception)"
    r"(?:\[(?P<code>[^\]]+)\])?:\s*(?P<message>.*)$"
)
# Totals and follow-ups that look like findings but only count or repeat the real ones.
_SUMMARY = re.compile(
    r"aborting due to|could not compile|\d+ warnings? emitted|Compilation failed|"
    r"compilation terminated"
)


def _with_code(code: str | None, message: str) -> str:
    return f"{code}: {message}" if code else message


def _parse_gcc(lines: list[str]) -> list[_Finding]:
    """`file:line[:column]: severity[code]: message`, the format most compilers share.

    Example: `main.c:3:16: error: expected expression before ';' token`. Also rustc's
    short format (`main.rs:4:20: error[E0425]: cannot find value ...`, the code is kept
    as `E0425: ...`), kotlinc, javac and scalac (no column; it is read from the caret
    under the quoted source line), and the clojure reader check, which prints this format.
    """
    findings: list[_Finding] = []
    for index, line in enumerate(lines):
        if match := _GCC.match(line):
            column = _number(match["column"])
            message = _message_or_next(match["message"], lines, index)
            if column is None:
                column = _caret_after(lines, index, _GCC)
                if column is not None:
                    message = "\n".join([message, *_details_before_excerpt(lines, index)])
            findings.append(
                _finding(
                    match["path"],
                    _number(match["line"]),
                    column,
                    _SEVERITIES[match["severity"]],
                    _with_code(match["code"], message),
                )
            )
        elif (match := _GCC_NO_FILE.match(line)) and not _SUMMARY.match(match["message"]):
            findings.append(
                _finding(
                    None,
                    None,
                    None,
                    _SEVERITIES[match["severity"]],
                    _with_code(match["code"], match["message"]),
                )
            )
    return findings


# --- python ------------------------------------------------------------------------------

# The frame naming the faulty file has no ", in <function>" part.
_PY_WHERE = re.compile(r'^\s*File "(?P<path>[^"]+)", line (?P<line>\d+)\s*$')
_PY_EXCEPTION = re.compile(r"^[A-Za-z_][\w.]*(?:: .*)?$")
_PY_WARNING = re.compile(r"^(?P<path>.+?):(?P<line>\d+): (?P<message>\w*Warning: .*)$")


def _parse_python(lines: list[str]) -> list[_Finding]:
    """A SyntaxError traceback from `compile()`, plus any SyntaxWarnings printed before it.

    Example: `  File "main.py", line 3` followed, after the quoted line and its caret,
    by `SyntaxError: invalid syntax`. The exception name stays in the message (an
    IndentationError says something a SyntaxError does not). The caret is not used:
    Python strips the line's indentation before drawing it and counts bytes rather than
    characters, so its position is not a column in the file. A checker that prints
    `main.py:3:13: error: SyntaxError: ...` itself is parsed in the gcc style instead,
    with an exact column. Warnings look like `main.py:3: SyntaxWarning: "is" with a literal`.
    """
    findings: list[_Finding] = []
    in_traceback = False
    where: re.Match[str] | None = None
    exception: str | None = None
    for line in lines:
        if line.startswith("Traceback (most recent call last):"):
            in_traceback, where, exception = True, None, None
        elif match := _PY_WARNING.match(line):
            findings.append(
                _finding(match["path"], _number(match["line"]), None, "warning", match["message"])
            )
        elif match := _PY_WHERE.match(line):
            # `python3 main.py` prints a SyntaxError without the "Traceback" header.
            in_traceback, where = True, match
        elif in_traceback and _PY_EXCEPTION.match(line):
            exception = line
    if exception is not None:
        if where is not None:
            findings.append(
                _finding(where["path"], _number(where["line"]), None, "error", exception)
            )
        else:
            findings.append(_finding(None, None, None, "error", exception))
    return findings + _parse_gcc(lines)


# --- javascript --------------------------------------------------------------------------

_NODE_WHERE = re.compile(r"^(?P<path>\S.*?):(?P<line>\d+)$")
_NODE_ERROR = re.compile(r"^[A-Z]\w*: .*$")


def _parse_node(lines: list[str]) -> list[_Finding]:
    """`node --check`: the file and line, the quoted line and its caret, then the error.

    Example: `/tmp/run/main.js:3`, then `let c = (a + ;`, `             ^`, a blank line
    and `SyntaxError: Unexpected token ';'`. Node stops at the first error. When node
    itself fails (a missing file) the location is inside `node:internal/...`, which says
    nothing about the snippet, so the error is reported without one.
    """
    where: re.Match[str] | None = None
    where_index = 0
    for index, line in enumerate(lines):
        if match := _NODE_WHERE.match(line):
            where, where_index = match, index
            break
    # The quoted line may itself look like an error (`Outer: for (;;) {`); the real one
    # comes after the blank line that ends the excerpt.
    start = 0
    if where is not None:
        start = next(
            (i for i in range(where_index + 1, len(lines)) if not lines[i].strip()), len(lines)
        )
    for line in lines[start:]:
        if _NODE_ERROR.match(line):
            if where is None or where["path"].startswith("node:"):
                return [_finding(None, None, None, "error", line)]
            column = _caret_after(lines, where_index, _NODE_WHERE)
            return [_finding(where["path"], _number(where["line"]), column, "error", line)]
    return []


# --- typescript --------------------------------------------------------------------------

_TSC = re.compile(
    r"^(?P<path>\S.*?)\((?P<line>\d+),(?P<column>\d+)\): "
    r"(?P<severity>error|warning|message) (?P<code>TS\d+): (?P<message>.*)$"
)
_TSC_NO_FILE = re.compile(r"^(?P<severity>error|warning|message) (?P<code>TS\d+): (?P<message>.*)$")


def _parse_tsc(lines: list[str]) -> list[_Finding]:
    """`tsc --pretty false`: `file(line,column): severity TScode: message`.

    Example: `main.ts(3,14): error TS1109: Expression expected.`, kept as
    `TS1109: Expression expected.`. Indented lines after it elaborate and are dropped;
    `error TS5023: Unknown compiler option ...` names no file.
    """
    findings: list[_Finding] = []
    for line in lines:
        if match := _TSC.match(line):
            path: str | None = match["path"]
            where = (_number(match["line"]), _number(match["column"]))
        elif match := _TSC_NO_FILE.match(line):
            path, where = None, (None, None)
        else:
            continue
        message = f"{match['code']}: {match['message']}"
        findings.append(_finding(path, *where, _SEVERITIES[match["severity"]], message))
    return findings


# --- ruby --------------------------------------------------------------------------------

_RUBY = re.compile(r"^(?P<path>[^\s:][^:]*?):(?P<line>\d+): (?P<message>.*)$")


def _parse_ruby(lines: list[str]) -> list[_Finding]:
    """`ruby -wc`: `file:line: message`, warnings as `file:line: warning: message`.

    Example: `main.rb:3: syntax error, unexpected ')'`, then the quoted line and a caret.
    Ruby shortens long lines to `... text ...`; the caret under them cannot be mapped to
    the file, and is left unused.
    """
    findings: list[_Finding] = []
    for index, line in enumerate(lines):
        if not (match := _RUBY.match(line)):
            continue
        message = match["message"]
        severity = "error"
        if message.startswith("warning: "):
            severity, message = "warning", message.removeprefix("warning: ")
        column = _caret_after(lines, index, _RUBY) if severity == "error" else None
        findings.append(_finding(match["path"], _number(match["line"]), column, severity, message))
    return findings


# --- shells ------------------------------------------------------------------------------

_BASH = re.compile(r"^(?P<path>.+?): line (?P<line>\d+): (?P<message>.*)$")
_ZSH = re.compile(r"^(?P<path>[^\s:][^:]*?):(?P<line>\d+): (?P<message>.*)$")
_FISH = re.compile(r"^(?P<path>.+?) \(line (?P<line>\d+)\): (?P<message>.*)$")


def _parse_bash(lines: list[str]) -> list[_Finding]:
    """`bash -n`: `file: line N: message`.

    Example: `main.sh: line 3: syntax error near unexpected token `fi'`. Bash follows it
    with the offending line in the same form, quoted as `...', which is not a finding.
    """
    findings: list[_Finding] = []
    for line in lines:
        if not (match := _BASH.match(line)):
            continue
        message = match["message"]
        if message.startswith("`") and message.endswith("'"):
            continue
        severity = "error"
        if message.startswith("warning: "):
            severity, message = "warning", message.removeprefix("warning: ")
        findings.append(_finding(match["path"], _number(match["line"]), None, severity, message))
    return findings


def _parse_zsh(lines: list[str]) -> list[_Finding]:
    """`zsh -n`: `file:line: message`, all errors.

    Example: `main.zsh:3: parse error near `fi'`.
    """
    return [
        _finding(match["path"], _number(match["line"]), None, "error", match["message"])
        for line in lines
        if (match := _ZSH.match(line))
    ]


def _parse_fish(lines: list[str]) -> list[_Finding]:
    """`fish --no-execute`: `file (line N): message`, then the quoted line and a caret.

    Example: `main.fish (line 3): Unexpected end of string, expecting ')'`. fish may print
    a path under $HOME as `~/...`.
    """
    findings: list[_Finding] = []
    for index, line in enumerate(lines):
        if match := _FISH.match(line):
            column = _caret_after(lines, index, _FISH)
            findings.append(
                _finding(match["path"], _number(match["line"]), column, "error", match["message"])
            )
    return findings


# --- groovy ------------------------------------------------------------------------------

_GROOVY = re.compile(r"^(?P<path>[^\s:][^:]*?): (?P<line>\d+): (?P<message>.*)$")
_GROOVY_AT = re.compile(r"@ line (?P<line>\d+), column (?P<column>\d+)\.")


def _parse_groovy(lines: list[str]) -> list[_Finding]:
    """groovyc: `file: line: message @ line N, column M.`, the position often on the next line.

    Example: `main.groovy: 3: expecting ')', found '+' @ line 3, column 12.`; for
    `unable to resolve class Foo` the ` @ line 3, column 5.` part follows on its own line.
    """
    findings: list[_Finding] = []
    for index, line in enumerate(lines):
        if not (match := _GROOVY.match(line)):
            continue
        column = None
        for offset, candidate in enumerate(lines[index : index + 3]):
            if offset and _GROOVY.match(candidate):
                break
            if at := _GROOVY_AT.search(candidate):
                column = _number(at["column"])
                break
        message = _GROOVY_AT.split(match["message"])[0]
        findings.append(_finding(match["path"], _number(match["line"]), column, "error", message))
    return findings


# --- go ----------------------------------------------------------------------------------

_GO = re.compile(r"^(?P<path>[^\s:][^:]*\.go):(?P<line>\d+)(?::(?P<column>\d+))?: (?P<message>.*)$")


def _parse_go(lines: list[str]) -> list[_Finding]:
    """`go build`: `file:line:column: message` under a `# package` header, all errors.

    Example: `./main.go:3:14: syntax error: unexpected ), expecting expression`. The
    compiler's closing `too many errors` repeats a position and is dropped.
    """
    findings: list[_Finding] = []
    for line in lines:
        if (match := _GO.match(line)) and match["message"] != "too many errors":
            where = (_number(match["line"]), _number(match["column"]))
            findings.append(_finding(match["path"], *where, "error", match["message"]))
    return findings


_PARSERS: dict[str, _Parser] = {
    "python": _parse_python,
    "javascript": _parse_node,
    "typescript": _parse_tsc,
    "ruby": _parse_ruby,
    "bash": _parse_bash,
    "zsh": _parse_zsh,
    "fish": _parse_fish,
    "java": _parse_gcc,
    "kotlin": _parse_gcc,
    "groovy": _parse_groovy,
    "scala": _parse_gcc,
    "clojure": _parse_gcc,
    "c": _parse_gcc,
    "cpp": _parse_gcc,
    "go": _parse_go,
    "rust": _parse_gcc,
}


def _is_main_file(path: str, filename: str) -> bool:
    """True for `main.go`, `./main.go` and `/any/dir/main.go` alike (and the reverse)."""
    return path == filename or path.endswith("/" + filename) or filename.endswith("/" + path)


def _concerns(finding: _Finding, filename: str) -> bool:
    if finding.path is None:
        return finding.diagnostic.severity == "error"
    return _is_main_file(finding.path, filename)


def _fallback(lines: list[str]) -> list[Diagnostic]:
    """The start of output nobody could read, as one error, or nothing if it is all chatter."""
    parts: list[str] = []
    size = 0
    for line in lines:
        text = line.strip()
        if not text or _BENIGN.fullmatch(text) or _STACK_FRAME.match(line):
            continue
        if (match := _GCC_NO_FILE.match(text)) and _SUMMARY.match(match["message"]):
            continue
        parts.append(text)
        size += len(text) + 1
        if size >= _FALLBACK_LIMIT:
            break
    if not parts:
        return []
    message = " ".join(parts)
    if len(message) > _FALLBACK_LIMIT:
        message = message[: _FALLBACK_LIMIT - 3].rstrip() + "..."
    return [Diagnostic(None, None, "error", message)]


def parse(language: str, output: str, filename: str) -> list[Diagnostic]:
    """Diagnostics about `filename` found in a checker's combined stdout+stderr `output`.

    Findings about other files (headers, libraries) are dropped; findings that name no
    file are kept only when they are errors, since a failed check (a missing file, a bad
    flag) concerns the snippet while tool chatter (warnings about options) does not.
    Duplicates are removed, order is kept. Raises ValueError for an unknown language.
    """
    try:
        parser = _PARSERS[language]
    except KeyError:
        raise ValueError(f"no diagnostics parser for language {language!r}") from None
    lines = _ANSI.sub("", output).splitlines()
    findings = parser(lines)
    if not findings:
        return _fallback(lines)
    kept = [finding.diagnostic for finding in findings if _concerns(finding, filename)]
    return list(dict.fromkeys(kept))
