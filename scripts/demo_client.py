"""The demo: start `sandbox-mcp` over stdio with the official SDK client and run snippets.

Run it through `scripts/demo`, which sets things up first. Exits non-zero if any snippet's
answer is not what it should be, so the demo doubles as a smoke test:

    scripts/demo                                    this checkout's server, every language
    scripts/demo --languages python bash            only these languages' snippets
    scripts/demo -- docker run --rm -i ... IMAGE    the server any command starts over stdio

The limits (a deadline, a memory bomb, ...) are always tried, in Python and Bash; with Python,
a session too: a module sent as a file, a function kept between calls, a CSV and a plot.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import anyio
from mcp import Client, StdioServerParameters
from mcp.shared.exceptions import MCPError

SERVER = Path(sys.executable).parent / "sandbox-mcp"

# language -> (code, what stdout must contain)
HELLO = {
    "python": (
        "import platform\nprimes = [n for n in range(2, 60) if all(n % d for d in range(2, n))]\n"
        "print(f'Python {platform.python_version()}: {len(primes)} primes below 60')",
        "17 primes below 60",
    ),
    "javascript": (
        "const fib = n => n < 2 ? n : fib(n - 1) + fib(n - 2);\n"
        "console.log(`Node ${process.version}: fib(25) = ${fib(25)}`);",
        "fib(25) = 75025",
    ),
    "typescript": (
        "interface Point { x: number; y: number }\n"
        "const norm = (p: Point): number => Math.hypot(p.x, p.y);\n"
        "console.log(`|(3, 4)| = ${norm({ x: 3, y: 4 })}`);",
        "|(3, 4)| = 5",
    ),
    "ruby": ('puts "Ruby #{RUBY_VERSION}: #{(1..10).sum} \u2713"', ": 55 ✓"),
    "bash": (
        'echo "Bash $BASH_VERSION"; for i in 1 2 3; do printf "%s " $((i * i)); done; echo',
        "1 4 9",
    ),
    "zsh": ('print -r -- "Zsh $ZSH_VERSION: ${(U):-shout}"', ": SHOUT"),
    "fish": ("echo Fish $version: (math 6 \\* 7)", ": 42"),
    "java": (
        "public class Hello {\n    public static void main(String[] args) {\n"
        '        System.out.println("Java " + Runtime.version().feature() + ": "'
        " + java.util.stream.IntStream.rangeClosed(1, 5).reduce(1, (a, b) -> a * b));\n    }\n}",
        ": 120",
    ),
    "kotlin": (
        'val squares = (1..4).map { it * it }\nprintln("Kotlin: $squares")',
        "[1, 4, 9, 16]",
    ),
    "groovy": ('println "Groovy: ${[3, 1, 2].sort()}"', "[1, 2, 3]"),
    "scala": ('println("Scala: " + List(1, 2, 3).map(_ * 10).sum)', ": 60"),
    "clojure": ('(println "Clojure:" (reduce + (range 1 11)))', ": 55"),
    "c": (
        "#include <stdio.h>\nint main(void) {\n    long f = 1;\n"
        '    for (int i = 2; i <= 10; i++) f *= i;\n    printf("C: 10! = %ld\\n", f);\n}',
        "10! = 3628800",
    ),
    "cpp": (
        "#include <algorithm>\n#include <iostream>\n#include <vector>\nint main() {\n"
        "    std::vector<int> v{5, 3, 9, 1};\n    std::sort(v.begin(), v.end());\n"
        '    std::cout << "C++: " << v.front() << ".." << v.back() << std::endl;\n}',
        ": 1..9",
    ),
    "go": (
        'package main\n\nimport (\n\t"fmt"\n\t"runtime"\n)\n\n'
        'func main() { fmt.Println("Go", runtime.Version(), len("héllo")) }',
        " 6",
    ),
    "rust": (
        'fn main() {\n    let words = ["sandbox", "mcp"];\n'
        '    println!("Rust: {}", words.join("-").to_uppercase());\n}',
        "SANDBOX-MCP",
    ),
}

# language -> a snippet with a mistake that validate_code must find without running it
MISTAKES = {
    "python": "def area(width, height)\n    return width * height",
    "rust": 'fn main() {\n    let x: i32 = "one";\n}',
}

LIMITS = [
    (
        "a deadline",
        {
            "language": "python",
            "code": "import time\nprint('working...')\ntime.sleep(60)",
            "timeout_seconds": 2,
        },
        "timeout",
    ),
    (
        "a memory bomb",
        {"language": "python", "code": "x = []\nwhile True:\n    x.append(bytearray(10**7))"},
        "memory",
    ),
    ("an output flood", {"language": "bash", "code": "yes 'flood'"}, "output"),
    (
        "a fork bomb",
        {
            "language": "python",
            "code": "import os\nwhile True:\n    os.fork()",
            "timeout_seconds": 5,
        },
        "processes",
    ),
]


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--languages",
        nargs="+",
        metavar="ID",
        help="run only these languages' snippets (default: every available one)",
    )
    parser.add_argument(
        "command",
        nargs="*",
        help=f"after --, the command that starts the server over stdio (default: {SERVER})",
    )
    return parser.parse_args(argv)


async def main(options: argparse.Namespace) -> int:
    failed = 1
    try:
        failed = await demo(options)
    except* MCPError:
        # The server's own stderr, printed above, says why it ended; a traceback would bury it.
        print("demo FAILED: the server closed the connection; its log above says why")
    return failed


async def demo(options: argparse.Namespace) -> int:
    failures = 0
    command = options.command or [str(SERVER)]
    # The client passes a server only a few variables of its own (HOME, PATH, ...): hand on
    # the SANDBOX_* settings of this shell, so that `SANDBOX_TIMEOUT=5 scripts/demo` does what
    # it says. A container gets its own with `docker run -e`.
    settings = {key: value for key, value in os.environ.items() if key.startswith("SANDBOX_")}
    params = StdioServerParameters(
        command=command[0],
        args=command[1:],
        env={"SANDBOX_LOG_LEVEL": "warning", **settings},
    )
    wanted = set(options.languages or HELLO)
    started = time.perf_counter()
    async with Client(params) as client:
        print(f"connected to sandbox-mcp in {(time.perf_counter() - started) * 1000:.0f} ms\n")
        languages = (await client.call_tool("list_languages", {})).structured_content["languages"]
        for language in languages:
            state = (
                f"version {language['version']}"
                if language["available"]
                else f"unavailable: {language['reason']}"
            )
            print(f"  {language['id']:<11} {state}")
        print()

        chosen = [
            language["id"]
            for language in languages
            if language["available"] and language["id"] in wanted
        ]
        if options.languages:
            for missing in sorted(wanted - set(chosen)):
                print(f"!! {missing}: asked for, but not an available language here\n")
                failures += 1
        for language in languages:
            if language["id"] not in chosen or language["id"] not in HELLO:
                continue
            code, expected = HELLO[language["id"]]
            print(f"# {language['name']}")
            result = await client.call_tool(
                "execute_code", {"language": language["id"], "code": code}
            )
            failures += show(result, lambda content, want=expected: want in content["stdout"])

        for language, code in MISTAKES.items():
            if language not in chosen:
                continue
            print(f"# validate_code finds a mistake in {language} without running the code")
            result = await client.call_tool("validate_code", {"language": language, "code": code})
            failures += show(result, lambda content: not content["valid"])

        if "python" in chosen:
            failures += await steps_in_a_session(client)

        for title, arguments, limit in LIMITS:
            if arguments["language"] not in chosen:
                continue
            print(f"# {title}")
            result = await client.call_tool("execute_code", arguments)
            failures += show(result, lambda content, want=limit: content["limit"] == want)

    print("demo passed" if not failures else f"demo FAILED: {failures} unexpected answers")
    return 1 if failures else 0


async def steps_in_a_session(client: Client) -> int:
    """An agent's steps: a module sent as a file, state kept between calls, a CSV, a plot."""
    print("# a Python session: a module sent with the code, then a function kept between calls")
    opened = await client.call_tool(
        "execute_code",
        {
            "language": "python",
            "code": "from stats import mean\ndef report(xs):\n    return f'mean {mean(xs)}'",
            "files": [
                {"path": "stats.py", "content": "def mean(xs):\n    return sum(xs) / len(xs)\n"}
            ],
            "session_id": "new",
        },
    )
    failures = show(opened, lambda content: content["session_id"] is not None)
    if failures:
        return failures
    session_id = opened.structured_content["session_id"]

    print("# the next call uses the function, writes a CSV and plots it")
    plotted = await client.call_tool(
        "execute_code",
        {
            "language": "python",
            "code": (
                "import matplotlib.pyplot as plt\nimport pandas as pd\n"
                "frame = pd.DataFrame({'x': range(5), 'y': [v * v for v in range(5)]})\n"
                "frame.to_csv('squares.csv', index=False)\nprint(report(list(frame.y)))\n"
                "plt.plot(frame.x, frame.y)\nplt.show()"
            ),
            "session_id": session_id,
        },
    )
    failures += show(
        plotted,
        lambda content: (
            content["stdout"] == "mean 6.0\n"
            and {item["path"] for item in content["files"]} == {"squares.csv", "figure_1.png"}
        ),
    )
    images = [block for block in plotted.content if block.type == "image"]
    print(f"   {len(images)} image(s) in the answer: {[block.mime_type for block in images]}\n")
    failures += 0 if len(images) == 1 else 1

    print("# reset_session ends it, files and state")
    reset = await client.call_tool("reset_session", {"session_id": session_id})
    gone = await client.call_tool(
        "execute_code", {"language": "python", "code": "report([1])", "session_id": session_id}
    )
    print(f"   reset: {reset.content[0].text}\n   then: {gone.content[0].text}\n")
    return failures + (0 if not reset.is_error and gone.is_error else 1)


def show(result: Any, check: Any, max_lines: int = 12) -> int:
    # The model gets up to SANDBOX_OUTPUT_BYTES of each stream; a terminal needs less.
    lines = result.content[0].text.splitlines()
    print("\n".join(lines[:max_lines]))
    if len(lines) > max_lines:
        print(f"    ... {len(lines) - max_lines} more lines")
    ok = not result.is_error and check(result.structured_content)
    print("" if ok else "!! unexpected answer\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(anyio.run(main, parse_arguments(sys.argv[1:])))
