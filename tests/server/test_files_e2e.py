"""Files in and out, plots, packages and whole outputs, through the real SDK client."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.types import ImageContent, ResourceLink, TextContent

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
