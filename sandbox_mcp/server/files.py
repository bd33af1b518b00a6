"""The files a run left, shaped for the answer: images as images, SVG and small text files
as text, everything listed in the structured content."""

from __future__ import annotations

import base64

from mcp.types import EmbeddedResource, ImageContent, TextResourceContents

from sandbox_mcp.sandbox.runner import RunResult
from sandbox_mcp.server.schema import FileInfo


def file_infos(result: RunResult) -> list[FileInfo]:
    """Each listed file; `content` holds the text of those that came back as text."""
    return [
        FileInfo(
            path=found.path,
            size=found.size,
            mime_type=found.mime_type,
            status=found.status,  # type: ignore[arg-type]
            content=found.text,
            image=found.is_image,
        )
        for found in result.files
    ]


def content_blocks(result: RunResult) -> list[ImageContent | EmbeddedResource]:
    """An image block per image that came back, an embedded text resource per SVG.

    SVG goes as text: some model APIs refuse SVG images.
    """
    blocks: list[ImageContent | EmbeddedResource] = []
    for found in result.files:
        if found.is_image and found.content is not None:
            data = base64.b64encode(found.content).decode()
            blocks.append(ImageContent(type="image", data=data, mime_type=found.mime_type))
        elif found.mime_type == "image/svg+xml" and found.text is not None:
            contents = TextResourceContents(
                uri=f"sandbox://runs/{result.run_id}/files/{found.path}",
                mime_type=found.mime_type,
                text=found.text,
            )
            blocks.append(EmbeddedResource(type="resource", resource=contents))
    return blocks


def summary_lines(result: RunResult) -> list[str]:
    """The files for the text summary: one line each."""
    if not result.files:
        return []
    lines = ["--- files ---"]
    for found in result.files:
        shown = " (image below)" if found.is_image else ""
        lines.append(f"{found.path} ({found.size} bytes, {found.mime_type}, {found.status}){shown}")
    if result.files_unlisted:
        lines.append(f"... and {result.files_unlisted} more files not listed")
    return lines
