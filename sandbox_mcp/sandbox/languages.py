"""The language registry: for each language, read as data, how its snippets are built and run.

Adding a language is a new `Language` entry (and its tests); the runner does not change.
Commands and environment values are templates:

- `{file}`      the main file's name inside the workdir
- `{stem}`      the file name without its extension (Java's class, Kotlin's `MainKt`, ...)
- `{build}`     the run's build directory, `.build` inside the workdir
- `{tmp}`       the run's temporary directory (also `$TMPDIR`)
- `{heap_mb}`   the heap a runtime may grow to under the run's memory limit

A language with a `build` command is compiled first, in the same sandbox and under the same
deadline; its program runs only if the build succeeded.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import subprocess  # nosec B404 # each call is judged where it is made
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from sandbox_mcp.errors import InvalidFilename, UnknownLanguage
from sandbox_mcp.sandbox import packages

# What snippets see as PATH. System directories only: nothing under /root or a version
# manager, which a non-root run could not reach anyway.
SNIPPET_PATH = "/usr/local/bin:/usr/bin:/bin"
# The private HOME directories of the version probes, in the system's temporary directory.
PROBE_PREFIX = "sandbox-mcp-probe-"

_FILENAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,127}$")


@dataclass(frozen=True)
class MainFile:
    """The main file a snippet is written to, and anything the caller should be told.

    `entry` is what the runtime starts when that is not the file itself (a JVM class);
    `script` says the language's script form applies (Kotlin's .kts).
    """

    name: str
    notes: tuple[str, ...] = ()
    entry: str | None = None
    script: bool = False

    @property
    def stem(self) -> str:
        return self.name.rsplit(".", 1)[0]


# How a language names its main file: (language, code, requested name or None) -> MainFile.
Namer = Callable[["Language", str, "str | None"], MainFile]


def _plain_name(language: Language, code: str, requested: str | None) -> MainFile:
    if requested is None:
        return MainFile(language.default_filename)
    return MainFile(check_filename(requested))


@dataclass(frozen=True)
class Language:
    """How to build, run, check and version one language. Every field is plain data."""

    id: str
    name: str
    extension: str
    executable: str
    run: tuple[str, ...]
    version: tuple[str, ...]
    version_pattern: str
    validate: tuple[str, ...]
    aliases: tuple[str, ...] = ()
    build: tuple[str, ...] | None = None
    # How a script-form snippet runs, in one step without a build (see MainFile.script).
    script_run: tuple[str, ...] | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    # Checker messages that are not problems in this sandbox (a regex on the message).
    validate_ignore: tuple[str, ...] = ()
    # For a checker that only takes programs: code matching no `program_pattern` is a
    # script, and is checked wrapped in (prefix, suffix), its lines shifted back after.
    validate_wrapper: tuple[str, str] | None = None
    program_pattern: str | None = None
    # Lines on stderr that mean the runtime itself ran out of memory under the limit.
    oom_patterns: tuple[str, ...] = ()
    # Share of the memory limit the runtime's own heap may take; the rest is for its
    # code, stacks and native allocations.
    heap_share: float = 0.6
    # Share of the run's memory limit a run is expected to use, reserved out of the server's
    # memory budget while it runs (admission.py). A shell or a small script stays far below
    # the limit; compilers use much of it, and a JVM (and its compilers) takes it all.
    expected_memory_share: float = 0.125
    default_stem: str = "main"
    namer: Namer = _plain_name
    # Why a runtime is old, or anything else a user of this language should know.
    remark: str | None = None

    @property
    def default_filename(self) -> str:
        return self.default_stem + self.extension

    @property
    def runs_from_workdir(self) -> bool:
        """Whether the program is a file built in the workdir, which must then allow exec."""
        return self.run[0].startswith("{build}")

    def main_file(self, code: str, requested: str | None) -> MainFile:
        """The file the snippet is written to, given the caller's `filename` (or None)."""
        return self.namer(self, code, requested)

    def validation_source(self, code: str) -> tuple[str, int]:
        """The code the checker sees, and by how many lines it was shifted down."""
        if self.validate_wrapper is None or (
            self.program_pattern and re.search(self.program_pattern, _without_comments(code))
        ):
            return code, 0
        prefix, suffix = self.validate_wrapper
        return prefix + code + suffix, prefix.count("\n")

    def values(self, main: MainFile, workdir: str, memory_mb: int) -> dict[str, str]:
        """The template values for one run."""
        return {
            "file": main.name,
            "stem": main.stem,
            "entry": main.entry or main.stem,
            "build": ".build",
            "tmp": f"{workdir}/.tmp",
            "heap_mb": str(max(32, int(memory_mb * self.heap_share))),
        }

    def commands(self, main: MainFile) -> tuple[tuple[str, ...] | None, tuple[str, ...]]:
        """The (build, run) templates for this main file; build is None when there is none."""
        if main.script and self.script_run is not None:
            return None, self.script_run
        return self.build, self.run

    def command(self, template: tuple[str, ...], values: Mapping[str, str]) -> list[str]:
        """An argv from a template; a bare program name is resolved on the snippets' PATH."""
        argv = [_fill(part, values) for part in template]
        if "/" not in argv[0]:
            argv[0] = _resolve(argv[0]) or argv[0]
        return argv

    def environment(self, values: Mapping[str, str]) -> dict[str, str]:
        return {key: _fill(value, values) for key, value in self.env.items()}

    def resolved_executable(self) -> str | None:
        """The runtime's absolute path on the snippets' PATH, or None when it is missing."""
        return _resolve(self.executable)

    def is_out_of_memory(self, stderr_text: str) -> bool:
        return any(re.search(pattern, stderr_text) for pattern in self.oom_patterns)


@functools.lru_cache(maxsize=64)
def _resolve(program: str) -> str | None:
    # Found once per process: a PATH search and a realpath cost about 0.2 ms, paid on every
    # run before. A runtime installed or removed while the server runs is seen only by the
    # next server (a missing one then fails at exec, with the error in the answer).
    found = shutil.which(program, path=SNIPPET_PATH)
    return os.path.realpath(found) if found else None


_PLACEHOLDER = re.compile(r"\{(file|stem|entry|build|tmp|heap_mb)\}")


def _fill(template: str, values: Mapping[str, str]) -> str:
    # Only the known placeholders: inline programs (the TypeScript runner) have braces too.
    return _PLACEHOLDER.sub(lambda match: values[match.group(1)], template)


# --- how some languages name their main file -------------------------------------------------

_C_COMMENTS_AND_STRINGS = re.compile(
    r"//[^\n]*|/\*.*?\*/|\"(?:\\.|[^\"\\\n])*\"|'(?:\\.|[^'\\\n])*'|`(?:\\.|[^`\\])*`",
    re.DOTALL,
)


def _without_comments(code: str) -> str:
    """The code with comments and string literals blanked (kept as spaces, so that line
    structure and positions survive): what declarations and keywords are really there."""
    return _C_COMMENTS_AND_STRINGS.sub(lambda match: re.sub(r"[^\n]", " ", match.group()), code)


_JAVA_PUBLIC_TYPE = re.compile(
    r"^\s*public\s+(?:(?:final|abstract|strictfp|sealed)\s+)*(?:class|interface|enum|record)\s+(\w+)",
    re.MULTILINE,
)
_JAVA_TOKEN = re.compile(
    r"\b(?:class|interface|enum|record)\s+(\w+)|\bstatic\b[^;{}()]*\bvoid\s+main\s*\(|[{}]"
)
_JAVA_PACKAGE = re.compile(r"^\s*package\s+([\w.]+)\s*;", re.MULTILINE)


def _java_main_class(code: str) -> str | None:
    """The (binary) name of the class declaring `static void main(`, found by following
    the nesting of braces, so that a class declared earlier or inside is not mistaken."""
    stack: list[tuple[str, int]] = []  # (class name, brace depth of its body)
    pending: str | None = None
    depth = 0
    for token in _JAVA_TOKEN.finditer(code):
        text = token.group()
        if token.group(1):
            pending = token.group(1)
        elif text == "{":
            depth += 1
            if pending is not None:
                stack.append((pending, depth))
                pending = None
        elif text == "}":
            if stack and stack[-1][1] == depth:
                stack.pop()
            depth -= 1
        elif stack:
            return "$".join(name for name, _ in stack)
    return None


def _java_name(language: Language, code: str, requested: str | None) -> MainFile:
    # javac insists that a public top-level class lives in a file of its name, so it names
    # the file whatever the caller asked for. The class to start is the one declaring
    # main(), which need not be that one, nor be called Main, and may sit in a package.
    plain = _without_comments(code)
    public = _JAVA_PUBLIC_TYPE.search(plain)
    entry = _java_main_class(plain)
    package = _JAVA_PACKAGE.search(plain)

    if public is not None:
        stem = public.group(1)
    elif requested is not None:
        stem = check_filename(requested).rsplit(".", 1)[0]
    else:
        stem = (entry or language.default_stem).split("$")[0]
    name = stem + ".java"
    entry = entry or stem
    if package is not None:
        entry = f"{package.group(1)}.{entry}"

    if requested is not None and check_filename(requested) != name:
        note = f"filename {requested!r} replaced by {name}: javac wants public class {stem} there"
        return MainFile(name, (note,), entry=entry)
    return MainFile(name, entry=entry)


# Module syntax at the top level: an import, an export, or an await on a line that is not
# indented (a rough but useful sign of being outside any function).
_ES_MODULE = re.compile(r"^(?:import\s*[\w{*'\"]|export\s|(?:[^\s].*)?\bawait\b)", re.MULTILINE)


def _javascript_name(language: Language, code: str, requested: str | None) -> MainFile:
    # Node treats .js as CommonJS; code using import/export or top-level await must be a
    # module, which the .mjs extension says without a package.json.
    if requested is not None:
        return MainFile(check_filename(requested))
    if _ES_MODULE.search(_without_comments(code)):
        return MainFile("main.mjs")
    return MainFile(language.default_filename)


_KOTLIN_TOP_MAIN = re.compile(r"^(?:suspend\s+)?fun\s+main\s*\(", re.MULTILINE)
_KOTLIN_OBJECT_MAIN = re.compile(
    r"^(?:object\s+(\w+)|(?:data\s+)?class\s+(\w+)).*?@JvmStatic\s+(?:suspend\s+)?fun\s+main\s*\(",
    re.MULTILINE | re.DOTALL,
)


def _kotlin_name(language: Language, code: str, requested: str | None) -> MainFile:
    # A file with a top-level main() is a program (main.kt, whose class Kotlin names MainKt),
    # and so is one whose object or companion declares a @JvmStatic main (that class is
    # started); anything else runs as a script (main.kts).
    plain = _without_comments(code)
    stem = "main" if requested is None else check_filename(requested).rsplit(".", 1)[0]
    if _KOTLIN_TOP_MAIN.search(plain):
        identifier = re.sub(r"\W", "_", stem)
        return MainFile(stem + ".kt", entry=identifier[:1].upper() + identifier[1:] + "Kt")
    holder = _KOTLIN_OBJECT_MAIN.search(plain)
    if holder is not None:
        return MainFile(stem + ".kt", entry=holder.group(1) or holder.group(2))
    return MainFile(stem + ".kts", script=True)


# --- the registry ----------------------------------------------------------------------------

# Flags every JVM gets: one GC thread pool, quick start, no perf data in /tmp, and a heap
# that fits the run's memory limit (the default would size it from the machine's RAM).
_JVM = (
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-XX:-UsePerfData",
    "-Xshare:auto",
    "-Xss4m",
    "-XX:ReservedCodeCacheSize=64m",
    "-XX:MaxMetaspaceSize=192m",
    "-Xmx{heap_mb}m",
    "-Djava.io.tmpdir={tmp}",
)
_JVM_OPTS = " ".join(_JVM)
_JVM_OOM = (
    r"OutOfMemoryError",
    r"Could not reserve enough space",
    r"insufficient memory",
)

# Runs a TypeScript file without a separate compile step the user must know about:
# TypeScript's own transpiler turns it into JavaScript in memory, which Node then runs as
# the module it is. Type errors do not stop a run (validate_code reports them), as with
# tsx, Deno and Bun; syntax errors do, with TypeScript's message and position.
_TS_RUNNER = r"""
const ts = require('/usr/share/nodejs/typescript');
const fs = require('fs'), path = require('path'), Module = require('module'), url = require('url');
const file = path.resolve(process.argv[1]);
const source = fs.readFileSync(file, 'utf8');
const esm = /^(import\s*[\w{*'"]|export\s|await\s)/m.test(source);
const out = ts.transpileModule(source, {
  fileName: file, reportDiagnostics: true,
  compilerOptions: {
    module: esm ? ts.ModuleKind.ES2022 : ts.ModuleKind.CommonJS,
    target: ts.ScriptTarget.ES2022, esModuleInterop: true, inlineSourceMap: true,
  },
});
const errors = out.diagnostics.filter(d => d.category === ts.DiagnosticCategory.Error);
if (errors.length) {
  for (const d of errors) {
    const at = d.file ? d.file.getLineAndCharacterOfPosition(d.start) : {line: 0, character: 0};
    const text = ts.flattenDiagnosticMessageText(d.messageText, '\n');
    const where = `${path.basename(file)}(${at.line + 1},${at.character + 1})`;
    process.stderr.write(`${where}: error TS${d.code}: ${text}\n`);
  }
  process.exit(1);
}
process.argv = [process.argv[0], file, ...process.argv.slice(2)];
if (esm) {
  const stem = path.basename(file).replace(/\.[^.]*$/, '');
  const target = path.join(path.dirname(file), '.build', stem + '.mjs');
  fs.mkdirSync(path.dirname(target), {recursive: true});
  fs.writeFileSync(target, out.outputText);
  import(url.pathToFileURL(target).href).catch(e => { console.error(e); process.exit(1); });
} else {
  const m = new Module(file, null);
  m.filename = file;
  m.paths = Module._nodeModulePaths(path.dirname(file));
  require.main = m;
  m._compile(out.outputText, file);
}
"""

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
        # compile() without running; printed as file:line:column, which the traceback's
        # caret cannot give (it strips indentation and counts bytes).
        validate=(
            "python3",
            "-c",
            "import sys\n"
            "try:\n"
            "    compile(open(sys.argv[1], encoding='utf-8-sig').read(), sys.argv[1], 'exec')\n"
            "except SyntaxError as e:\n"
            "    sys.exit(f'{e.filename}:{e.lineno}:{e.offset or 0}: error: "
            "{type(e).__name__}: {e.msg}')",
            "{file}",
        ),
        aliases=("py", "python3"),
        env={
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONIOENCODING": "utf-8",
            # The curated packages and matplotlib's headless backend (packages.py).
            **packages.environment(),
        },
        oom_patterns=(r"\bMemoryError\b",),
        heap_share=1.0,
    ),
    Language(
        id="javascript",
        expected_memory_share=0.25,
        name="JavaScript (Node.js)",
        extension=".js",
        executable="node",
        # V8 sizes its heap from the machine, not from rlimits: without this it grows past
        # the limit and dies in malloc instead of raising a clean heap-limit error.
        run=("node", "--max-old-space-size={heap_mb}", "--stack-size=4000", "{file}"),
        version=("node", "--version"),
        version_pattern=r"v(\S+)",
        validate=("node", "--check", "{file}"),
        aliases=("js", "node", "nodejs", "mjs"),
        env={"NODE_DISABLE_COLORS": "1", "NO_COLOR": "1"},
        oom_patterns=(
            r"JavaScript heap out of memory",
            r"Reached heap limit",
            r"FATAL ERROR: .*[Aa]llocation failed",
            r"RangeError: Array buffer allocation failed",
        ),
        namer=_javascript_name,
    ),
    Language(
        id="typescript",
        expected_memory_share=0.5,
        name="TypeScript (Node.js)",
        extension=".ts",
        executable="tsc",
        run=(
            "node",
            "--max-old-space-size={heap_mb}",
            "--enable-source-maps",
            "-e",
            _TS_RUNNER,
            "{file}",
        ),
        version=("tsc", "--version"),
        version_pattern=r"Version (\S+)",
        validate=(
            "tsc",
            "--noEmit",
            "--pretty",
            "false",
            "--strict",
            "--target",
            "es2022",
            # ES modules, so that top-level await and imports check as they run.
            "--module",
            "es2022",
            "--moduleResolution",
            "node",
            "--lib",
            "es2022,dom",
            "{file}",
        ),
        aliases=("ts",),
        env={"NODE_DISABLE_COLORS": "1", "NO_COLOR": "1"},
        # Debian has no Node type definitions: to the checker `require` and `process` are
        # unknown names, though they exist when the code runs.
        validate_ignore=(
            r"\bTS25(80|91|92)\b",
            r"Cannot find name '(require|process|module|__dirname|__filename|Buffer)'",
            r"TS2307: Cannot find module '(node:)?(assert|buffer|child_process|crypto|events|fs"
            r"|fs/promises|http|https|net|os|path|process|readline|stream|timers|timers/promises"
            r"|url|util|worker_threads|zlib)'",
        ),
        oom_patterns=(r"JavaScript heap out of memory", r"Reached heap limit"),
        remark="Debian 12 ships TypeScript 4.8; a run transpiles without checking types, "
        "validate_code checks them",
    ),
    Language(
        id="ruby",
        name="Ruby",
        extension=".rb",
        executable="ruby",
        run=("ruby", "{file}"),
        version=("ruby", "--version"),
        version_pattern=r"ruby (\S+)",
        validate=("ruby", "-wc", "{file}"),
        aliases=("rb",),
        env={"RUBYOPT": "-W0"},
        oom_patterns=(r"failed to allocate memory", r"NoMemoryError"),
        heap_share=1.0,
    ),
    Language(
        id="bash",
        name="Bash",
        extension=".sh",
        executable="bash",
        run=("bash", "{file}"),
        version=("bash", "--version"),
        version_pattern=r"version (\S+)",
        validate=("bash", "-n", "{file}"),
        aliases=("sh", "shell"),
        oom_patterns=(r"Cannot allocate memory", r"x(m|re)alloc: .*cannot allocate"),
        heap_share=1.0,
    ),
    Language(
        id="zsh",
        name="Zsh",
        extension=".zsh",
        executable="zsh",
        run=("zsh", "{file}"),
        version=("zsh", "--version"),
        version_pattern=r"zsh (\S+)",
        validate=("zsh", "-n", "{file}"),
        oom_patterns=(r"fatal error: out of (heap )?memory", r"Cannot allocate memory"),
        heap_share=1.0,
    ),
    Language(
        id="fish",
        name="Fish",
        extension=".fish",
        executable="fish",
        run=("fish", "--no-config", "{file}"),
        version=("fish", "--version"),
        version_pattern=r"version (\S+)",
        validate=("fish", "--no-config", "--no-execute", "{file}"),
        oom_patterns=(r"Cannot allocate memory", r"std::bad_alloc"),
        heap_share=1.0,
    ),
    Language(
        id="java",
        expected_memory_share=1.0,
        name="Java",
        extension=".java",
        executable="javac",
        build=(
            "javac",
            *(f"-J{flag}" for flag in _JVM),
            "-encoding",
            "UTF-8",
            "-d",
            "{build}",
            "{file}",
        ),
        run=("java", *_JVM, "-Dfile.encoding=UTF-8", "-cp", "{build}", "{entry}"),
        version=("javac", "-version"),
        version_pattern=r"javac (\S+)",
        validate=(
            "javac",
            *(f"-J{flag}" for flag in _JVM),
            "-encoding",
            "UTF-8",
            "-Xlint:all",
            "-d",
            "{tmp}",
            "{file}",
        ),
        default_stem="Main",
        oom_patterns=_JVM_OOM,
        namer=_java_name,
    ),
    Language(
        id="kotlin",
        expected_memory_share=1.0,
        name="Kotlin",
        extension=".kt",
        executable="kotlinc",
        # A file with main() is compiled to classes first, with every other .kt file in the
        # workdir (the caller's `files`); a script (.kts) is compiled and run in one step
        # (see _kotlin_name).
        build=("kotlinc", ".", "-d", "{build}"),
        # The JVM directly, not the `kotlin` and `kotlinc` wrappers, which take any `-J...`
        # argument for themselves, the program's own too. After `--` the compiler passes
        # every argument on to the script.
        run=("java", *_JVM, "-cp", "{build}:/usr/share/java/kotlin-stdlib.jar", "{entry}"),
        script_run=(
            "java",
            *_JVM,
            "-cp",
            "/usr/share/kotlin/kotlinc/lib/kotlin-preloader.jar",
            "org.jetbrains.kotlin.preloading.Preloader",
            "-cp",
            "/usr/share/kotlin/kotlinc/lib/kotlin-compiler.jar",
            "org.jetbrains.kotlin.cli.jvm.K2JVMCompiler",
            "-script",
            "{file}",
            "--",
        ),
        # kotlinc -version says "1.3-SNAPSHOT" in Debian's build; the package knows better.
        version=("dpkg-query", "-W", "-f=${Version}", "kotlin"),
        version_pattern=r"^(\d+\.\d+\.\d+)",
        validate=("kotlinc", "{file}", "-d", "{tmp}/validate"),
        aliases=("kt", "kts"),
        # kotlinc passes the JVM -noverify, which JDK 17 warns about on every run.
        env={"JAVA_OPTS": _JVM_OPTS + " -XX:-PrintWarnings"},
        oom_patterns=_JVM_OOM,
        namer=_kotlin_name,
        remark="Debian 12 ships Kotlin 1.3.31 (2019): newer syntax and library calls are missing",
    ),
    Language(
        id="groovy",
        expected_memory_share=1.0,
        name="Groovy",
        extension=".groovy",
        executable="groovy",
        run=("groovy", "{file}"),
        version=("groovy", "--version"),
        version_pattern=r"Groovy Version: (\S+)",
        validate=("groovyc", "-d", "{tmp}/validate", "{file}"),
        env={"JAVA_OPTS": _JVM_OPTS},
        oom_patterns=_JVM_OOM,
        remark="Debian 12 ships Groovy 2.4 (2015-era; Groovy 3/4 syntax is missing)",
    ),
    Language(
        id="scala",
        expected_memory_share=1.0,
        name="Scala",
        extension=".scala",
        executable="scala",
        # -nobootcp: Scala 2.11 cannot put itself on JDK 17's boot class path. -nc: no
        # compile daemon, which would outlive the run.
        run=("scala", "-nobootcp", "-nc", "{file}"),
        version=("scala", "-nobootcp", "-version"),
        version_pattern=r"version (\S+)",
        validate=("scalac", "-nobootcp", "-Ystop-after:typer", "-d", "{tmp}", "{file}"),
        # scalac takes no scripts: check one the way the runner runs it, inside a main().
        validate_wrapper=(
            "object Main { def main(args: Array[String]): Unit = {\n",
            "\n} }\n",
        ),
        program_pattern=r"\bdef\s+main\s*\(|\bextends\s+App\b",
        env={"JAVA_OPTS": _JVM_OPTS},
        oom_patterns=_JVM_OOM,
        remark="Debian 12 ships Scala 2.11.12 (2017): Scala 2.13 and 3 syntax are missing",
    ),
    Language(
        id="clojure",
        expected_memory_share=1.0,
        name="Clojure",
        extension=".clj",
        executable="clojure",
        run=("java", *_JVM, "-cp", "/usr/share/java/clojure.jar", "clojure.main", "{file}"),
        version=("clojure", "-e", "(println (clojure-version))"),
        version_pattern=r"(\d+\.\d+\.\d+)",
        # Reads every form without evaluating anything (the file's name is in the expression:
        # given as an argument, clojure.main would run it). The resolver lets `::alias/key`
        # be read before the `ns` form has run; the reader's column is one past the culprit.
        validate=(
            "java",
            *_JVM,
            "-cp",
            "/usr/share/java/clojure.jar",
            "clojure.main",
            "-e",
            '(let [r (clojure.lang.LineNumberingPushbackReader. (clojure.java.io/reader "{file}"))]'
            " (try (binding [*read-eval* false"
            " *reader-resolver* (reify clojure.lang.LispReader$Resolver (currentNS [_] 'user)"
            " (resolveClass [_ s] s) (resolveAlias [_ s] s) (resolveVar [_ s] s))]"
            " (loop [] (when-not (identical? r (read {:eof r} r)) (recur))))"
            " (catch clojure.lang.LispReader$ReaderException e"
            " (binding [*out* *err*]"
            ' (println (str "{file}:" (.-line e) ":" (max 1 (dec (.-column e)))'
            ' ": error: " (.getMessage (or (.getCause e) e)))))'
            " (System/exit 1))))",
        ),
        aliases=("clj",),
        oom_patterns=_JVM_OOM,
    ),
    Language(
        id="c",
        expected_memory_share=0.5,
        name="C (GCC)",
        extension=".c",
        executable="gcc",
        # -x c: the language is the caller's choice, whatever the file name's extension says.
        build=(
            "gcc",
            "-x",
            "c",
            "-O2",
            "-std=gnu17",
            "-Wall",
            "-o",
            "{build}/{stem}",
            "{file}",
            "-lm",
        ),
        run=("{build}/{stem}",),
        version=("gcc", "--version"),
        version_pattern=r"\) (\d+\.\d+\.\d+)",
        validate=("gcc", "-x", "c", "-fsyntax-only", "-std=gnu17", "-Wall", "{file}"),
        oom_patterns=(r"Cannot allocate memory",),
        heap_share=1.0,
    ),
    Language(
        id="cpp",
        expected_memory_share=0.5,
        name="C++ (GCC)",
        extension=".cpp",
        executable="g++",
        build=(
            "g++",
            "-x",
            "c++",
            "-O2",
            "-std=gnu++17",
            "-Wall",
            "-o",
            "{build}/{stem}",
            "{file}",
        ),
        run=("{build}/{stem}",),
        version=("g++", "--version"),
        version_pattern=r"\) (\d+\.\d+\.\d+)",
        validate=("g++", "-x", "c++", "-fsyntax-only", "-std=gnu++17", "-Wall", "{file}"),
        aliases=("c++", "cxx", "cc"),
        oom_patterns=(r"std::bad_alloc", r"Cannot allocate memory"),
        heap_share=1.0,
    ),
    Language(
        id="go",
        expected_memory_share=0.5,
        name="Go",
        extension=".go",
        executable="go",
        build=("go", "build", "-o", "{build}/{stem}", "{file}"),
        run=("{build}/{stem}",),
        version=("go", "version"),
        version_pattern=r"go(\d\S*)",
        validate=("go", "build", "-o", "{tmp}/validate.out", "{file}"),
        aliases=("golang",),
        env={
            "GOCACHE": "{tmp}/go-cache",
            "GOPATH": "{tmp}/go",
            "GO111MODULE": "off",
            "GOFLAGS": "-buildvcs=false",
            "CGO_ENABLED": "0",
            "GOMEMLIMIT": "{heap_mb}MiB",
        },
        oom_patterns=(r"runtime: out of memory", r"fatal error: runtime: cannot allocate memory"),
        remark="Debian 12 ships Go 1.19 (2022): no range-over-int, no min/max builtins",
    ),
    Language(
        id="rust",
        expected_memory_share=0.5,
        name="Rust",
        extension=".rs",
        executable="rustc",
        build=("rustc", "--edition", "2021", "-C", "opt-level=1", "-o", "{build}/{stem}", "{file}"),
        run=("{build}/{stem}",),
        version=("rustc", "--version"),
        version_pattern=r"rustc (\S+)",
        validate=(
            "rustc",
            "--edition",
            "2021",
            "--error-format=short",
            "--emit=metadata",
            "--crate-type=bin",
            "-o",
            "{tmp}/validate.rmeta",
            "{file}",
        ),
        aliases=("rs",),
        oom_patterns=(r"memory allocation of \d+ bytes failed",),
        heap_share=1.0,
        remark="Debian 12 ships Rust 1.63 (2022); only the standard library, no crates",
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


def probe_runtime(
    language: Language, home: str | None = None, timeout: float = 30.0
) -> RuntimeInfo:
    """Find the runtime and read its real version. A missing runtime is a result, not an error.

    `home` is an empty private directory for the probe's HOME, which the caller removes; without
    one, the probe makes its own and removes it.
    """
    path = language.resolved_executable()
    if path is None:
        return RuntimeInfo(language, False, None, None, f"{language.executable} not found on PATH")
    if not _world_executable(Path(path)):
        return RuntimeInfo(language, False, None, path, f"{path} is not executable by others")

    # The probe runs as the server, root in pool mode, and some runtimes read startup files
    # from $HOME (Groovy sources ~/.groovy/startup as shell code): its HOME is a fresh
    # directory of its own, never a shared one such as /tmp where another user could plant one.
    try:
        with contextlib.ExitStack() as stack:
            if home is None:
                home = stack.enter_context(
                    tempfile.TemporaryDirectory(prefix=PROBE_PREFIX, ignore_cleanup_errors=True)
                )
            completed = subprocess.run(  # nosec B603 # the registry's own argv, no request data
                language.command(language.version, {}),
                capture_output=True,
                text=True,
                timeout=timeout,
                env={"PATH": SNIPPET_PATH, "LANG": "C.UTF-8", "HOME": home},
                cwd="/",
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
    return bool(mode & 0o001) and os.access(path, os.X_OK)
