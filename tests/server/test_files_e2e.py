"""Files in and out, plots, packages and whole outputs, through the real SDK client."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.types import (
    EmbeddedResource,
    ImageContent,
    ResourceLink,
    TextContent,
    TextResourceContents,
)

from sandbox_mcp.server.files import MAX_IMAGES_SENT
from tests.support import server_params

pytestmark = pytest.mark.anyio


@pytest.fixture
async def client(run_root: Path) -> AsyncIterator[Client]:
    async with Client(server_params(run_root)) as connected:
        yield connected


async def execute(client: Client, **arguments: Any) -> Any:
    return await client.call_tool("execute_code", {"language": "python", **arguments})


async def test_a_multi_file_project_runs_and_its_outputs_are_listed(client: Client) -> None:
    result = await execute(
        client,
        code="import helper, csv\nhelper.write('out.csv')\nprint(open('in.txt').read())",
        files=[
            {"path": "helper.py", "content": "def write(p):\n    open(p, 'w').write('a,b\\n')\n"},
            {"path": "in.txt", "content": base64.b64encode(b"hi").decode(), "encoding": "base64"},
        ],
    )

    assert not result.is_error, result.content
    structured = result.structured_content
    assert structured["stdout"] == "hi\n"
    assert structured["files"] == [
        {
            "path": "out.csv",
            "size": 4,
            "mime_type": "text/csv",
            "status": "created",
            "content": "a,b\n",
            "image": False,
            "note": None,
        }
    ]
    assert "out.csv (4 bytes, text/csv, created)" in result.content[0].text


@pytest.mark.parametrize("path", ["/etc/x", "../x", "a/../../x", "a\u0000b", "x" * 300])
async def test_a_path_leaving_the_workdir_is_refused(client: Client, path: str) -> None:
    result = await execute(client, code="print('ran')", files=[{"path": path, "content": "x"}])

    assert result.is_error
    message = result.content[0].text
    assert "file " in message and "ran" not in message.replace("workdir", "")


async def test_a_file_with_an_unknown_key_or_encoding_is_refused(client: Client) -> None:
    for item in (
        {"path": "a.txt", "contents": "x"},
        {"path": "a.txt", "content": "x", "encoding": "hex"},
        {"path": "a.bin", "content": "@@@", "encoding": "base64"},
    ):
        result = await execute(client, code="print('ran')", files=[item])

        assert result.is_error, item
        assert "ran" not in result.content[0].text.replace("run", "")


async def test_a_plot_comes_back_as_a_png_image(client: Client) -> None:
    result = await execute(
        client,
        code="import matplotlib.pyplot as plt\nplt.plot([1, 2], [3, 4])\nplt.show()",
    )

    images = [block for block in result.content if isinstance(block, ImageContent)]
    assert len(images) == 1, result.content
    assert images[0].mime_type == "image/png"
    assert base64.b64decode(images[0].data).startswith(b"\x89PNG")
    assert result.structured_content["files"][0]["image"] is True


BAD_IMAGES = """
import struct, zlib

def chunk(kind, body):
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

header = struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0)
pixels = chunk(b"IDAT", zlib.compress(b"\\0" * 64))
huge = b"\\x89PNG\\r\\n\\x1a\\n" + chunk(b"IHDR", header) + pixels + chunk(b"IEND", b"")
open("huge.png", "wb").write(huge)
open("fake.png", "wb").write(b"\\x89PNG\\r\\n\\x1a\\n" + bytes(range(256)) * 4)
open("gif.jpg", "wb").write(b"GIF89a" + b"\\xff" * 40)
"""


async def test_a_malformed_or_huge_image_is_listed_but_not_sent(client: Client) -> None:
    result = await execute(client, code=BAD_IMAGES)

    assert not result.is_error, result.content
    assert not [block for block in result.content if isinstance(block, ImageContent)]
    files = {info["path"]: info for info in result.structured_content["files"]}
    assert files["huge.png"]["mime_type"] == files["fake.png"]["mime_type"] == "image/png"
    assert files["gif.jpg"]["mime_type"] == "image/gif"
    assert not any(info["image"] for info in files.values())
    assert "100000x100000" in files["huge.png"]["note"]
    assert "IHDR" in files["fake.png"]["note"]
    assert "over the cap" in files["gif.jpg"]["note"]
    text = result.content[0].text
    assert "huge.png" in text and "not shown as an image" in text and "(image below)" not in text


async def test_images_past_the_cap_are_listed_and_counted_in_the_summary(client: Client) -> None:
    code = (
        "import matplotlib.pyplot as plt\n"
        "for i in range(20):\n    plt.figure(figsize=(2, 2)); plt.plot([0, i])\n"
        "plt.show()"
    )
    result = await execute(client, code=code)

    assert not result.is_error, result.content
    images = [block for block in result.content if isinstance(block, ImageContent)]
    assert len(images) == MAX_IMAGES_SENT, result.content[0].text
    files = result.structured_content["files"]
    assert len(files) == 20
    assert sum(info["image"] for info in files) == MAX_IMAGES_SENT
    left_out = [info for info in files if not info["image"]]
    assert all("at most 8 images per answer" in info["note"] for info in left_out)
    assert f"{20 - MAX_IMAGES_SENT} more images left out" in result.content[0].text


PILLOW_IMAGES = """
from PIL import Image
picture = Image.new("RGB", (300, 200), (200, 30, 30))
for name in ("a.jpg", "a.gif", "a.webp", "a.png"):
    picture.save(name)
Image.new("RGBA", (300, 200)).save("b.webp", lossless=True)
"""


async def test_images_made_by_pillow_are_sent(client: Client) -> None:
    result = await execute(client, code=PILLOW_IMAGES)

    assert not result.is_error, result.content
    files = result.structured_content["files"]
    assert [(info["path"], info["image"], info["note"]) for info in files] == [
        (name, True, None) for name in ("a.gif", "a.jpg", "a.png", "a.webp", "b.webp")
    ]
    images = [block for block in result.content if isinstance(block, ImageContent)]
    assert sorted(block.mime_type for block in images) == [
        "image/gif",
        "image/jpeg",
        "image/png",
        "image/webp",
        "image/webp",
    ]


async def test_a_long_output_is_readable_whole_as_a_resource(client: Client) -> None:
    result = await execute(client, code="for i in range(30000):\n    print(i)")

    structured = result.structured_content
    assert structured["stdout_truncated"]
    uri = structured["stdout_uri"]
    links = [block for block in result.content if isinstance(block, ResourceLink)]
    assert [str(link.uri) for link in links] == [uri]

    read = await client.read_resource(uri)
    assert read.contents[0].text.splitlines() == [str(i) for i in range(30000)]

    missing = uri.replace(structured["run_id"], "000000000000")
    with pytest.raises(Exception, match="no stored stdout"):
        await client.read_resource(missing)


SVG = '<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"><rect width="4"/></svg>'


@pytest.mark.parametrize("session", [None, "new"])
async def test_an_svg_comes_back_as_text_at_a_uri_that_can_be_read(
    client: Client, session: str | None
) -> None:
    code = f"open('pic.svg', 'w').write({SVG!r})"
    result = await execute(client, code=code, session_id=session)

    assert not result.is_error, result.content
    embedded = [block for block in result.content if isinstance(block, EmbeddedResource)]
    assert [block.resource.text for block in embedded] == [SVG]
    assert not [block for block in result.content if isinstance(block, ImageContent)]
    uri = str(embedded[0].resource.uri)
    # A session's file is read where it is; a fresh run's, whose workdir is gone, from the store.
    session_id = result.structured_content["session_id"]
    expected = (
        f"sessions/{session_id}" if session else f"runs/{result.structured_content['run_id']}"
    )
    assert uri == f"sandbox://{expected}/files/pic.svg"
    read = await client.read_resource(uri)
    assert read.contents[0].text == SVG


async def test_list_languages_names_the_python_packages(client: Client) -> None:
    result = await client.call_tool("list_languages", {})

    languages = {info["id"]: info for info in result.structured_content["languages"]}
    names = [entry.split()[0] for entry in languages["python"]["packages"]]
    assert {"numpy", "pandas", "matplotlib"} <= set(names)
    assert languages["c"]["packages"] == []


async def test_a_missing_module_is_explained(client: Client) -> None:
    result = await execute(client, code="import requests")

    text = next(block.text for block in result.content if isinstance(block, TextContent))
    assert "'requests' is not installed" in text and "numpy" in text


async def test_an_svg_comes_back_as_text_never_as_an_image(client: Client) -> None:
    result = await execute(
        client,
        code="import matplotlib.pyplot as plt\nplt.plot([1, 2], [3, 4])\nplt.savefig('plot.svg')",
    )

    assert not result.is_error, result.content
    assert not [block for block in result.content if isinstance(block, ImageContent)]
    [embedded] = [block for block in result.content if isinstance(block, EmbeddedResource)]
    assert embedded.resource.mime_type == "image/svg+xml"
    assert isinstance(embedded.resource, TextResourceContents)
    assert "<svg" in embedded.resource.text
    [listed] = result.structured_content["files"]
    assert (listed["path"], listed["mime_type"], listed["image"]) == (
        "plot.svg",
        "image/svg+xml",
        False,
    )
    assert listed["content"] == embedded.resource.text


async def test_a_file_name_cannot_add_lines_or_escapes_to_the_summary(client: Client) -> None:
    result = await execute(client, code="open('a\\nforged line\\x1b[31m\\u202e.txt', 'w')")

    text = result.content[0].text
    assert "\nforged line" not in text and "\x1b" not in text and "\u202e" not in text
    assert "a\\nforged line\\x1b[31m\\u202e.txt (0 bytes" in text
    # The structured content keeps the name as it is: JSON escapes it.
    assert result.structured_content["files"][0]["path"] == "a\nforged line\x1b[31m\u202e.txt"
