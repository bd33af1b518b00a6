"""The demo: start `sandbox-mcp` over stdio with the official SDK client and run snippets.

Run it through `scripts/demo`, which sets things up first. Exits non-zero if any snippet's
answer is not what it should be, so the demo doubles as a smoke test.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import anyio
from mcp import Client, StdioServerParameters

SERVER = Path(sys.executable).parent / "sandbox-mcp"

# language -> (code, stdin, what stdout must contain)
HELLO = {
    "python": (
        "import sys, platform\n"
        "primes = [n for n in range(2, 60) if all(n % d for d in range(2, n))]\n"
        "print(f'Python {platform.python_version()}: {len(primes)} primes below 60')\n"
        "print('stdin says', sys.stdin.read().strip())\n",
        "hello",
        "17 primes below 60",
    ),
    "javascript": (
        "const fib = n => n < 2 ? n : fib(n - 1) + fib(n - 2);\n"
        "console.log(`Node ${process.version}: fib(25) = ${fib(25)}`);\n",
        "",
        "fib(25) = 75025",
    ),
    "bash": (
        'echo "Bash $BASH_VERSION in $(pwd)"\n'
        'for i in 1 2 3; do printf "%s " "$((i * i))"; done; echo\n',
        "",
        "1 4 9",
    ),
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


async def main() -> int:
    failures = 0
    params = StdioServerParameters(command=str(SERVER), env={"SANDBOX_LOG_LEVEL": "warning"})
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

        for language in languages:
            if not language["available"] or language["id"] not in HELLO:
                continue
            code, stdin, expected = HELLO[language["id"]]
            result = await client.call_tool(
                "execute_code", {"language": language["id"], "code": code, "stdin": stdin}
            )
            failures += show(result, lambda content, want=expected: want in content["stdout"])

        for title, arguments, limit in LIMITS:
            print(f"# {title}")
            result = await client.call_tool("execute_code", arguments)
            failures += show(result, lambda content, want=limit: content["limit"] == want)

    print("demo passed" if not failures else f"demo FAILED: {failures} unexpected answers")
    return 1 if failures else 0


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
    sys.exit(anyio.run(main))
