"""Every language, end to end through the official MCP client: the same checks for each."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from sandbox_mcp.sandbox.languages import LANGUAGES
from tests.support import server_params, uid_base

pytestmark = pytest.mark.anyio


@dataclass(frozen=True)
class Case:
    """One language's snippets. `echo` prints 'héllo ✓', its args, then a line of stdin."""

    echo: str
    exit_code: str  # exits with status 3
    error: str  # fails at run time with a message containing "boom"
    syntax_error: str  # a syntax error on line 3
    memory_bomb: str


CASES: dict[str, Case] = {
    "python": Case(
        echo="import sys\nprint('héllo ✓', *sys.argv[1:], input())",
        exit_code="import sys\nsys.exit(3)",
        error="def f():\n    raise ValueError('boom')\nf()",
        syntax_error="x = 1\ny = 2\nif x ==:\n    pass",
        memory_bomb="blocks = []\nwhile True:\n    blocks.append(bytearray(10**7))",
    ),
    "javascript": Case(
        echo="const line = require('fs').readFileSync(0, 'utf8').split('\\n')[0];\n"
        "console.log('héllo ✓', ...process.argv.slice(2), line);",
        exit_code="process.exit(3);",
        error="function f() { throw new Error('boom'); }\nf();",
        syntax_error="let x = 1;\nlet y = 2;\nlet z = (x +;\n",
        memory_bomb="const a = [];\nwhile (true) a.push(new Array(1e6).fill(1.5));",
    ),
    "typescript": Case(
        echo="const line: string = require('fs').readFileSync(0, 'utf8').split('\\n')[0];\n"
        "const args: string[] = process.argv.slice(2);\n"
        "console.log('héllo ✓', ...args, line);",
        exit_code="const code: number = 3;\nprocess.exit(code);",
        error="function f(): never { throw new Error('boom'); }\nf();",
        syntax_error="const x: number = 1;\nconst y: number = 2;\nconst z = (x +;\n",
        memory_bomb="const a: number[][] = [];\nwhile (true) a.push(new Array(1e6).fill(1.5));",
    ),
    "ruby": Case(
        echo="puts ['héllo ✓', *ARGV, STDIN.gets.chomp].join(' ')",
        exit_code="exit 3",
        error="def f\n  raise ArgumentError, 'boom'\nend\nf",
        syntax_error="x = 1\ny = 2\nif x ==\n",
        memory_bomb="a = []\nloop { a << ('x' * 10_000_000) }",
    ),
    "bash": Case(
        echo='read -r line\necho "héllo ✓" "$@" "$line"',
        exit_code="exit 3",
        error="echo boom >&2\nfalse\nexit 1",
        syntax_error="x=1\ny=2\nif [ $x = 1 ]; then\n",
        memory_bomb="s=x\nwhile true; do s=$s$s; done",
    ),
    "zsh": Case(
        echo='read -r line\necho "héllo ✓" "$@" "$line"',
        exit_code="exit 3",
        error="echo boom >&2\nexit 1",
        syntax_error="x=1\ny=2\nif [[ $x = 1 ]] then\n",
        memory_bomb="s=x\nwhile true; do s=$s$s; done",
    ),
    "fish": Case(
        echo="read line\necho héllo ✓ $argv $line",
        exit_code="exit 3",
        error="echo boom >&2\nexit 1",
        syntax_error="set x 1\nset y 2\nif test $x = 1\n",
        memory_bomb="set s x\nwhile true\n    set s $s$s\nend",
    ),
    "java": Case(
        echo="import java.util.*;\n\npublic class Greeter {\n"
        "    public static void main(String[] args) {\n"
        "        String line = new Scanner(System.in).nextLine();\n"
        '        System.out.println("héllo ✓ " + String.join(" ", args) + " " + line);\n'
        "    }\n}\n",
        exit_code="class Main {\n    public static void main(String[] a) { System.exit(3); }\n}",
        error="class Main {\n    public static void main(String[] a) {\n"
        '        throw new IllegalStateException("boom");\n    }\n}',
        syntax_error="class Main {\n    public static void main(String[] a) {\n"
        "        int x = 1 +;\n    }\n}",
        memory_bomb="import java.util.*;\nclass Main {\n    public static void main(String[] a) {\n"
        "        List<byte[]> l = new ArrayList<>();\n"
        "        while (true) l.add(new byte[10_000_000]);\n    }\n}",
    ),
    "kotlin": Case(
        echo='println((listOf("héllo ✓") + args + listOf(readLine())).joinToString(" "))',
        exit_code="kotlin.system.exitProcess(3)",
        error='fun f(): Nothing = throw IllegalStateException("boom")\nf()',
        syntax_error="fun main() {\n    val x = 1\n    val y = (x + \n}\n",
        memory_bomb="val l = mutableListOf<ByteArray>()\nwhile (true) l.add(ByteArray(10_000_000))",
    ),
    "groovy": Case(
        echo="def line = System.in.newReader().readLine()\n"
        'println((["héllo ✓"] + (args as List) + [line]).join(" "))',
        exit_code="System.exit(3)",
        error='def f() { throw new IllegalStateException("boom") }\nf()',
        syntax_error="def x = 1\ndef y = 2\ndef z = (x + \n",
        memory_bomb="def l = []\nwhile (true) { l << new byte[10000000] }",
    ),
    "scala": Case(
        echo="val line = scala.io.StdIn.readLine()\n"
        'println(("héllo ✓" :: args.toList ::: List(line)).mkString(" "))',
        exit_code="sys.exit(3)",
        error='def f(): Int = throw new IllegalStateException("boom")\nf()',
        syntax_error="object Main {\n  def main(args: Array[String]): Unit = {\n"
        "    val x = (1 + \n  }\n}",
        memory_bomb="val l = scala.collection.mutable.ListBuffer[Array[Byte]]()\n"
        "while (true) l += new Array[Byte](10000000)",
    ),
    "clojure": Case(
        echo='(def words (concat ["héllo ✓"] *command-line-args* [(read-line)]))\n'
        '(println (clojure.string/join " " words))',
        exit_code="(System/exit 3)",
        error='(defn f [] (throw (IllegalStateException. "boom")))\n(f)',
        syntax_error='(def x 1)\n(def y 2)\n(println "unclosed" (+ x y)\n',
        memory_bomb="(loop [l []] (recur (conj l (byte-array 10000000))))",
    ),
    "c": Case(
        echo="#include <stdio.h>\n#include <string.h>\nint main(int argc, char **argv) {\n"
        "    char line[100];\n    fgets(line, sizeof line, stdin);\n"
        '    line[strcspn(line, "\\n")] = 0;\n'
        '    printf("héllo ✓");\n    for (int i = 1; i < argc; i++) printf(" %s", argv[i]);\n'
        '    printf(" %s\\n", line);\n    return 0;\n}\n',
        exit_code="int main(void) { return 3; }",
        error="#include <stdio.h>\n#include <stdlib.h>\nint main(void) {\n"
        '    fprintf(stderr, "boom\\n");\n    abort();\n}',
        syntax_error="int main(void) {\n    int x = 1;\n    int y = x +;\n    return 0;\n}\n",
        memory_bomb="#include <stdlib.h>\n#include <string.h>\nint main(void) {\n"
        "    for (;;) { char *p = malloc(10 << 20); memset(p, 1, 10 << 20); }\n}",
    ),
    "cpp": Case(
        echo="#include <iostream>\n#include <string>\nint main(int argc, char **argv) {\n"
        "    std::string line;\n    std::getline(std::cin, line);\n"
        '    std::cout << "héllo ✓";\n'
        '    for (int i = 1; i < argc; i++) std::cout << " " << argv[i];\n'
        '    std::cout << " " << line << std::endl;\n}\n',
        exit_code="int main() { return 3; }",
        error='#include <stdexcept>\nint main() {\n    throw std::runtime_error("boom");\n}',
        syntax_error="int main() {\n    int x = 1;\n    int y = x +;\n}\n",
        memory_bomb="#include <vector>\nint main() {\n    std::vector<std::vector<char>> v;\n"
        "    for (;;) v.emplace_back(10 << 20, 1);\n}",
    ),
    "go": Case(
        echo='package main\n\nimport (\n\t"bufio"\n\t"fmt"\n\t"os"\n\t"strings"\n)\n\n'
        "func main() {\n\tline, _ := bufio.NewReader(os.Stdin).ReadString('\\n')\n"
        '\tparts := append([]string{"héllo ✓"}, os.Args[1:]...)\n'
        '\tfmt.Println(strings.Join(append(parts, strings.TrimSpace(line)), " "))\n}\n',
        exit_code='package main\n\nimport "os"\n\nfunc main() { os.Exit(3) }\n',
        error='package main\n\nfunc main() { panic("boom") }\n',
        syntax_error="package main\n\nfunc main() { var x int = 1 + ) }\n",
        memory_bomb="package main\n\nfunc main() {\n\tvar l [][]byte\n\tfor {\n"
        "\t\tb := make([]byte, 10<<20)\n\t\tfor i := range b {\n\t\t\tb[i] = 1\n\t\t}\n"
        "\t\tl = append(l, b)\n\t}\n}\n",
    ),
    "rust": Case(
        echo="use std::io::BufRead;\nfn main() {\n"
        "    let line = std::io::stdin().lock().lines().next().unwrap().unwrap();\n"
        '    let mut parts = vec!["héllo ✓".to_string()];\n'
        "    parts.extend(std::env::args().skip(1));\n    parts.push(line);\n"
        '    println!("{}", parts.join(" "));\n}\n',
        exit_code="fn main() { std::process::exit(3); }",
        error='fn main() {\n    let v: Vec<i32> = Vec::new();\n    panic!("boom {}", v.len());\n}',
        syntax_error="fn main() {\n    let x = 1;\n    let y = x +;\n}\n",
        memory_bomb="fn main() {\n    let mut v = Vec::new();\n"
        "    loop { v.push(vec![1u8; 10 << 20]); }\n}",
    ),
}

ALL = [language.id for language in LANGUAGES]


def test_every_language_of_the_registry_has_a_case() -> None:
    assert sorted(CASES) == sorted(ALL)


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def client(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Client]:
    import secrets
    import shutil

    run_root = Path("/tmp") / f"sandbox-mcp-langs-{secrets.token_hex(4)}"
    try:
        async with Client(server_params(run_root, SANDBOX_UID_BASE=str(uid_base(2)))) as connected:
            yield connected
    finally:
        leftovers = list(run_root.iterdir()) if run_root.exists() else []
        shutil.rmtree(run_root, ignore_errors=True)
        run_root.with_name(run_root.name + ".lock").unlink(missing_ok=True)
        assert not leftovers, leftovers


async def execute(client: Client, language: str, code: str, **extra: Any) -> dict[str, Any]:
    result = await client.call_tool("execute_code", {"language": language, "code": code, **extra})
    assert not result.is_error, result.content[0].text
    return result.structured_content


async def validate(client: Client, language: str, code: str) -> dict[str, Any]:
    result = await client.call_tool("validate_code", {"language": language, "code": code})
    assert not result.is_error, result.content[0].text
    return result.structured_content


@pytest.mark.parametrize("language", ALL)
async def test_hello_with_args_stdin_and_non_ascii(client: Client, language: str) -> None:
    content = await execute(
        client, language, CASES[language].echo, args=["one", "two"], stdin="stdin-line\nmore\n"
    )

    assert content["stdout"] == "héllo ✓ one two stdin-line\n", content
    assert content["exit_code"] == 0


@pytest.mark.parametrize("language", ALL)
async def test_exit_code_is_the_programs_own(client: Client, language: str) -> None:
    content = await execute(client, language, CASES[language].exit_code)

    assert content["exit_code"] == 3, content
    assert content["limit"] is None


@pytest.mark.parametrize("language", ALL)
async def test_runtime_error_reports_its_message(client: Client, language: str) -> None:
    content = await execute(client, language, CASES[language].error)

    assert content["exit_code"] != 0 or content["signal"] is not None, content
    assert "boom" in content["stderr"], content


@pytest.mark.parametrize("language", ALL)
async def test_validate_finds_the_syntax_error_line(client: Client, language: str) -> None:
    report = await validate(client, language, CASES[language].syntax_error)

    assert report["valid"] is False, report
    lines = {found["line"] for found in report["diagnostics"] if found["severity"] == "error"}
    assert lines & {3, 4}, report  # line 3, or 4 where the parser notices at the next line


@pytest.mark.parametrize("language", ALL)
async def test_validate_accepts_valid_code(client: Client, language: str) -> None:
    report = await validate(client, language, CASES[language].echo)

    assert report["valid"] is True, report
    assert not [found for found in report["diagnostics"] if found["severity"] == "error"]


@pytest.mark.parametrize("language", ALL)
async def test_memory_bomb_is_reported_as_memory(client: Client, language: str) -> None:
    content = await execute(client, language, CASES[language].memory_bomb, timeout_seconds=25)

    assert content["limit"] == "memory", content


@pytest.mark.parametrize("language", ["c", "cpp", "go", "rust", "java", "kotlin"])
async def test_compile_failure_is_separate_from_the_run(client: Client, language: str) -> None:
    code = CASES[language].syntax_error
    if language == "kotlin":  # a script would be compiled and run in one step
        code = "fun main() {\n    val x = 1\n    val y: String = x\n}\n"
    content = await execute(client, language, code)

    assert content["compile"] is not None, content
    assert content["compile"]["exit_code"] != 0
    assert content["compile"]["stderr"]
    assert content["exit_code"] is None
    assert content["stdout"] == ""


async def test_go_reports_the_binarys_own_exit_code(client: Client) -> None:
    content = await execute(client, "go", CASES["go"].exit_code)

    assert content["compile"]["exit_code"] == 0
    assert content["exit_code"] == 3


async def test_java_public_class_names_the_file_over_the_filename(client: Client) -> None:
    content = await execute(client, "java", CASES["java"].echo, filename="Main.java", stdin="x\n")

    assert content["filename"] == "Greeter.java"
    assert content["stdout"].startswith("héllo ✓")
    assert any("Greeter.java" in note for note in content["notes"])


async def test_java_main_in_a_class_not_named_main(client: Client) -> None:
    code = (
        "class Helper {}\n\nclass Program {\n    public static void main(String[] a) {\n"
        '        System.out.println("from Program");\n    }\n}\n'
    )
    content = await execute(client, "java", code)

    assert content["stdout"] == "from Program\n"


async def test_kotlin_with_main_is_compiled_and_run(client: Client) -> None:
    code = (
        'fun greet(n: String) = "hi $n"\n\n'
        "fun main(args: Array<String>) {\n    println(greet(args[0]))\n}\n"
    )
    content = await execute(client, "kotlin", code, args=["kt"])

    assert content["stdout"] == "hi kt\n"
    assert content["compile"]["exit_code"] == 0


async def test_scala_object_with_main_runs(client: Client) -> None:
    code = (
        "object Hello {\n"
        '  def main(args: Array[String]): Unit = println("scala main " + args.length)\n}\n'
    )
    content = await execute(client, "scala", code, args=["a"])

    assert content["stdout"] == "scala main 1\n"


async def test_javascript_es_module_with_top_level_await(client: Client) -> None:
    code = (
        "import { setTimeout as sleep } from 'node:timers/promises';\n"
        "await sleep(10);\nexport const x = 1;\nconsole.log('esm', x);\n"
    )
    content = await execute(client, "javascript", code)

    assert content["stdout"] == "esm 1\n", content
    assert content["filename"] == "main.mjs"


async def test_typescript_type_errors_do_not_stop_a_run_but_validate_reports_them(
    client: Client,
) -> None:
    code = "const n: number = 'not a number';\nconsole.log('ran', n);\n"
    content = await execute(client, "typescript", code)
    report = await validate(client, "typescript", code)

    assert content["stdout"] == "ran not a number\n"
    assert report["valid"] is False
    assert report["diagnostics"][0]["line"] == 1


async def test_list_languages_reports_every_runtime_with_a_real_version(client: Client) -> None:
    result = await client.call_tool("list_languages", {})
    languages = {entry["id"]: entry for entry in result.structured_content["languages"]}

    assert sorted(languages) == sorted(ALL)
    for language, entry in languages.items():
        assert entry["available"], (language, entry["reason"])
        assert entry["version"] and entry["version"][0].isdigit(), (language, entry["version"])
    assert languages["kotlin"]["version"].startswith("1.3")
    assert languages["c"]["compiled"] is True
    assert languages["python"]["compiled"] is False


async def test_kotlin_arguments_reach_the_program_not_the_compiler(client: Client) -> None:
    script = await execute(client, "kotlin", "println(args.toList())", args=["-v", "-J-Xmx2g"])
    program = await execute(
        client,
        "kotlin",
        "fun main(args: Array<String>) {\n    println(args.toList())\n}\n",
        args=["-v", "-J-Xmx2g"],
    )

    assert script["stdout"] == "[-v, -J-Xmx2g]\n", script
    assert program["stdout"] == "[-v, -J-Xmx2g]\n", program


async def test_java_main_class_found_past_comments_nested_classes_and_packages(
    client: Client,
) -> None:
    code = (
        "package demo;\n\n// The class Helper { is not here\npublic class Main {\n"
        "    static class Helper {}\n"
        '    public static void main(String[] a) { System.out.println("packaged"); }\n}\n'
    )
    content = await execute(client, "java", code)

    assert content["stdout"] == "packaged\n", content


async def test_typescript_validate_agrees_with_what_runs(client: Client) -> None:
    code = (
        "import * as fs from 'fs';\n"
        "const n = await Promise.resolve(fs.existsSync('.'));\nconsole.log(n);\n"
    )
    content = await execute(client, "typescript", code)
    report = await validate(client, "typescript", code)

    assert content["stdout"] == "true\n", content
    assert report["valid"] is True, report


async def test_scala_script_mentioning_main_in_a_comment_validates(client: Client) -> None:
    report = await validate(client, "scala", "// no def main(args) here\nprintln(1 + 1)\n")

    assert report["valid"] is True, report
