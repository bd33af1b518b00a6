"""Files in and out of a run's workdir, plots and the snippets' packages, with real runs."""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from sandbox_mcp.config import Settings
from sandbox_mcp.errors import InvalidPath, InvalidRequest
from sandbox_mcp.sandbox import packages, workspace
from sandbox_mcp.sandbox.runner import RunRequest, RunResult, Sandbox
from sandbox_mcp.sandbox.workspace import InputFile
from tests.support import uid_base

pytestmark = pytest.mark.anyio

BASE = Settings(timeout=20, max_timeout=20, cpu_seconds=20, uid_base=uid_base(5))


@pytest.fixture
async def sandbox(run_root: Path) -> AsyncIterator[Sandbox]:
    box = Sandbox(replace(BASE, run_root=run_root))
    await box.start()
    yield box
    await box.close()


async def run(box: Sandbox, language: str, code: str, **kwargs: object) -> RunResult:
    return await box.run(RunRequest(language=language, code=code, **kwargs))  # type: ignore[arg-type]


def text(path: str, content: str) -> InputFile:
    return InputFile(path, content.encode())


def listed(result: RunResult) -> dict[str, workspace.OutputFile]:
    return {found.path: found for found in result.files}


# --- files in ----------------------------------------------------------------------------


async def test_a_python_module_and_its_importer_run(sandbox: Sandbox) -> None:
    result = await run(
        sandbox,
        "python",
        "from lib.greet import hello\nprint(hello('files'))",
        files=(
            text("lib/__init__.py", ""),
            text("lib/greet.py", "def hello(name):\n    return f'hello {name}'\n"),
        ),
    )

    assert result.stdout == "hello files\n", result.stderr
    assert result.files == ()  # the inputs, unchanged, are not listed


async def test_a_java_class_and_its_user_build_and_run(sandbox: Sandbox) -> None:
    code = "public class Main { public static void main(String[] a) { Helper.say(); } }\n"
    helper = 'public class Helper { static void say() { System.out.println("from helper"); } }\n'

    result = await run(sandbox, "java", code, files=(text("Helper.java", helper),))

    assert result.stdout == "from helper\n", (result.compile, result.stderr)
    assert not any(found.path.endswith(".class") for found in result.files)


async def test_a_kotlin_file_and_its_user_build_and_run(sandbox: Sandbox) -> None:
    result = await run(
        sandbox,
        "kotlin",
        "fun main() { println(helper()) }\n",
        files=(text("Helper.kt", 'fun helper() = "from helper"\n'),),
        timeout_seconds=20,
    )

    assert result.stdout == "from helper\n", (result.compile, result.stderr)


@pytest.mark.parametrize(
    ("language", "code", "path", "content"),
    [
        (
            "rust",
            "mod helper;\nfn main() { helper::say(); }\n",
            "helper.rs",
            'pub fn say() { println!("from helper"); }\n',
        ),
        (
            "c",
            '#include <stdio.h>\n#include "helper.h"\nint main(void) { puts(WORD); }\n',
            "helper.h",
            '#define WORD "from helper"\n',
        ),
    ],
)
async def test_rust_modules_and_c_headers_are_found(
    sandbox: Sandbox, language: str, code: str, path: str, content: str
) -> None:
    result = await run(sandbox, language, code, files=(text(path, content),))

    assert result.stdout == "from helper\n", (result.compile, result.stderr)


async def test_a_javascript_module_is_required(sandbox: Sandbox) -> None:
    result = await run(
        sandbox,
        "javascript",
        "console.log(require('./util.js').twice(21))",
        files=(text("util.js", "exports.twice = (n) => n * 2;\n"),),
    )

    assert result.stdout == "42\n", result.stderr


async def test_binary_input_arrives_byte_for_byte(sandbox: Sandbox) -> None:
    data = bytes(range(256))
    encoded = base64.b64encode(data).decode()

    result = await run(
        sandbox,
        "python",
        "print(open('blob.bin', 'rb').read() == bytes(range(256)))",
        files=(workspace.decode_input("blob.bin", encoded, "base64"),),
    )

    assert result.stdout == "True\n", result.stderr


@pytest.mark.parametrize(
    ("path", "rule"),
    [
        ("/etc/passwd", "absolute"),
        ("../escape.txt", "'..'"),
        ("a/../../x", "'..'"),
        ("a//b", "empty"),
        ("./a", "'.'"),
        ("a\0b", "NUL"),
        ("x" * 256, "255 bytes"),
        ("a/" * 600 + "b", "1024"),
        ("", "empty path"),
        (".tmp/x", "sandbox's own"),
        ("main.py", "main file"),
    ],
)
async def test_bad_paths_are_refused_before_anything_runs(
    sandbox: Sandbox, run_root: Path, path: str, rule: str
) -> None:
    marker = "open('/tmp/should-not-exist-files-test', 'w')"

    with pytest.raises(InvalidPath, match=rule):
        await run(sandbox, "python", marker, files=(text(path, "x"),))

    assert not os.path.exists("/tmp/should-not-exist-files-test")


async def test_too_many_too_big_and_duplicate_files_are_refused(sandbox: Sandbox) -> None:
    many = tuple(text(f"f{number}.txt", "") for number in range(workspace.MAX_INPUT_FILES + 1))
    with pytest.raises(InvalidRequest, match="at most"):
        await run(sandbox, "python", "pass", files=many)

    big = (InputFile("big.bin", b"\0" * (BASE.max_files_bytes + 1)),)
    with pytest.raises(InvalidRequest, match="SANDBOX_MAX_FILES_BYTES"):
        await run(sandbox, "python", "pass", files=big)

    with pytest.raises(InvalidPath, match="twice"):
        await run(sandbox, "python", "pass", files=(text("a.txt", "1"), text("a.txt", "2")))

    with pytest.raises(InvalidPath, match="as a directory"):
        await run(sandbox, "python", "pass", files=(text("a", "1"), text("a/b", "2")))

    with pytest.raises(InvalidRequest, match="base64"):
        workspace.decode_input("x.bin", "not base64!", "base64")


# --- files out ---------------------------------------------------------------------------


async def test_a_csv_the_run_writes_is_listed_with_its_size_and_content(sandbox: Sandbox) -> None:
    code = "open('out/data.csv', 'w').write('a,b\\n1,2\\n')"

    result = await run(sandbox, "python", "import os\nos.mkdir('out')\n" + code)

    found = listed(result)["out/data.csv"]
    assert (found.size, found.mime_type, found.status) == (8, "text/csv", "created")
    assert found.text == "a,b\n1,2\n"


async def test_only_inputs_the_run_changed_are_listed(sandbox: Sandbox) -> None:
    result = await run(
        sandbox,
        "python",
        "open('changed.txt', 'a').write('more')",
        files=(text("kept.txt", "same"), text("changed.txt", "start ")),
    )

    assert list(listed(result)) == ["changed.txt"]
    assert result.files[0].status == "modified"
    assert result.files[0].text == "start more"


async def test_a_symlink_the_run_makes_is_never_followed(sandbox: Sandbox) -> None:
    result = await run(
        sandbox,
        "python",
        "import os\nos.symlink('/etc/passwd', 'passwd')\nos.symlink('/etc', 'etc')\n"
        "open('real.txt', 'w').write('ok')",
    )

    assert list(listed(result)) == ["real.txt"], result.stderr
    assert all(b"root:" not in (found.content or b"") for found in result.files)


async def test_a_fifo_the_run_makes_does_not_hang_the_listing(sandbox: Sandbox) -> None:
    result = await run(
        sandbox,
        "python",
        "import os\nos.mkfifo('pipe')\nos.mkfifo('pipe.txt')\nopen('done.txt', 'w').write('ok')",
        timeout_seconds=10,
    )

    assert result.limit is None, result.stderr
    assert list(listed(result)) == ["done.txt"]


async def test_a_name_that_is_not_utf8_is_listed_readably(sandbox: Sandbox) -> None:
    result = await run(sandbox, "python", "open(b'bad\\xff.txt', 'w').write('ok')")

    assert [found.path for found in result.files] == ["bad\ufffd.txt"], result.stderr
    assert result.files[0].text == "ok"


async def test_big_and_binary_files_are_listed_without_content(sandbox: Sandbox) -> None:
    result = await run(
        sandbox,
        "python",
        "open('big.txt', 'w').write('x' * 100_000)\n"
        "open('blob.bin', 'wb').write(bytes(range(256)))",
    )

    files = listed(result)
    assert files["big.txt"].size == 100_000 and files["big.txt"].content is None
    assert files["blob.bin"].mime_type == "application/octet-stream"
    assert files["blob.bin"].content is None


async def test_the_listing_is_capped(sandbox: Sandbox) -> None:
    count = workspace.MAX_LISTED + 7
    result = await run(
        sandbox, "python", f"for i in range({count}):\n    open(f'f{{i:03}}.txt', 'w').write('x')"
    )

    assert len(result.files) == workspace.MAX_LISTED
    assert result.files_unlisted == 7


# --- plots and packages ------------------------------------------------------------------


PLOT = "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [1, 4, 9])\n"


async def test_plt_show_comes_back_as_a_png(sandbox: Sandbox) -> None:
    result = await run(sandbox, "python", PLOT + "plt.show()\n")

    found = listed(result)["figure_1.png"]
    assert found.is_image and found.mime_type == "image/png", result.stderr
    assert found.content is not None and found.content.startswith(b"\x89PNG")
    assert "font cache" not in result.stderr
    assert result.stderr == ""


async def test_savefig_comes_back_as_a_png_and_svg_as_text(sandbox: Sandbox) -> None:
    result = await run(sandbox, "python", PLOT + "plt.savefig('x.png')\nplt.savefig('x.svg')\n")

    files = listed(result)
    assert files["x.png"].is_image, result.stderr
    assert files["x.svg"].mime_type == "image/svg+xml"
    assert files["x.svg"].text is not None and "<svg" in files["x.svg"].text


async def test_matplotlib_reads_the_prebuilt_font_list(sandbox: Sandbox) -> None:
    code = (
        "import os, time\nstart = time.monotonic()\nimport matplotlib.font_manager\n"
        "print(os.environ['MPLCONFIGDIR'], sorted(os.listdir(os.environ['MPLCONFIGDIR'])))\n"
        "print(round(time.monotonic() - start, 2))\n"
    )

    result = await run(sandbox, "python", code)

    configdir, names = result.stdout.splitlines()[0].split(" ", 1)
    assert configdir.endswith("/.tmp/matplotlib"), result.stderr
    assert names == str([link[0].rsplit("/", 1)[1] for link in packages.workdir_links()])
    assert "building the font cache" not in result.stderr
    assert float(result.stdout.splitlines()[1]) < 5


async def test_numpy_and_pandas_import(sandbox: Sandbox) -> None:
    code = (
        "import numpy as np, pandas as pd\n"
        "print(int(np.arange(10).sum()), pd.DataFrame({'a': [1, 2]})['a'].sum())\n"
    )

    result = await run(sandbox, "python", code)

    assert result.stdout == "45 3\n", result.stderr


async def test_a_missing_module_gets_a_hint(sandbox: Sandbox) -> None:
    result = await run(sandbox, "python", "import requests")

    assert result.exit_code == 1
    hint = next(note for note in result.notes if "'requests'" in note)
    assert "no network" in hint and "numpy" in hint


async def test_cold_python_runs_have_the_packages_and_plots_too(run_root: Path) -> None:
    box = Sandbox(replace(BASE, run_root=run_root, warm="off"))
    await box.start()
    try:
        result = await run(box, "python", "import numpy\n" + PLOT + "plt.show()\n")
    finally:
        await box.close()

    assert box.warm_pid is None
    assert listed(result)["figure_1.png"].is_image, result.stderr
    assert result.stderr == ""


# --- full output -------------------------------------------------------------------------


async def test_a_long_output_is_kept_whole(sandbox: Sandbox) -> None:
    result = await run(sandbox, "python", "for i in range(20000):\n    print(i)")

    assert result.stdout_truncated
    assert result.stdout_full is not None
    assert result.stdout_full.decode().splitlines() == [str(i) for i in range(20000)]
    assert result.stderr_full is None


# --- the workdir of an earlier call (sessions): the helpers alone ---------------------------


def payload_fd(code: bytes, files: tuple[InputFile, ...]) -> int:
    fd = os.memfd_create("payload")
    os.write(fd, workspace.pack(code, files))
    return fd


def test_writing_never_follows_a_link_an_earlier_run_left(tmp_path: Path) -> None:
    workdir, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    workdir.mkdir()
    elsewhere.mkdir()
    (workdir / "lib").symlink_to(elsewhere)
    (workdir / "data.txt").symlink_to(elsewhere / "data.txt")
    fd = payload_fd(b"", (text("lib/x.py", "x"),))

    with pytest.raises(OSError):
        workspace.write_payload(str(workdir), "main.py", fd)
    fd = payload_fd(b"", (text("data.txt", "x"),))
    with pytest.raises(OSError):
        workspace.write_payload(str(workdir), "main.py", fd)

    assert list(elsewhere.iterdir()) == []


def test_writing_refuses_a_fifo_an_earlier_run_left_without_waiting(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "in.txt")
    fd = payload_fd(b"", (text("in.txt", "x"),))

    with pytest.raises(OSError):  # ENXIO: no reader, and O_NONBLOCK does not wait for one
        workspace.write_payload(str(tmp_path), "main.py", fd)


def test_files_from_before_the_snapshot_are_listed_only_once_changed(tmp_path: Path) -> None:
    (tmp_path / "old.txt").write_text("old")
    (tmp_path / "same.txt").write_text("same")
    before = workspace.snapshot(str(tmp_path))
    (tmp_path / "old.txt").write_text("new!")
    (tmp_path / "made.txt").write_text("made")

    fd = workspace.collect(str(tmp_path), before)
    try:
        listing = workspace.read_listing(fd)
    finally:
        os.close(fd)

    assert [(found.path, found.status, found.text) for found in listing.files] == [
        ("made.txt", "created", "made"),
        ("old.txt", "modified", "new!"),
    ]


def test_an_svg_past_the_text_budget_still_comes_back(tmp_path: Path) -> None:
    before = workspace.snapshot(str(tmp_path))
    svg = "<svg xmlns='http://www.w3.org/2000/svg'>" + "<g/>" * 30_000 + "</svg>"
    (tmp_path / "plot.svg").write_text(svg)
    (tmp_path / "notes.txt").write_text("n" * 5000)

    fd = workspace.collect(str(tmp_path), before)
    try:
        files = {found.path: found for found in workspace.read_listing(fd).files}
    finally:
        os.close(fd)

    assert files["plot.svg"].text == svg
    assert files["notes.txt"].text == "n" * 5000
