"""The files a run left, shaped for the answer: images as images, SVG and small text files
as text, everything listed in the structured content.

An image goes into the content only if its headers are sound and its size within the caps
(`sandbox_mcp.sandbox.images`), checked here on the bytes the server holds so that no
listing can bypass it, and only the first `MAX_IMAGES_SENT` of those: the rest are listed,
with a `note` saying why they are not shown.
"""

from __future__ import annotations

import base64
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

from mcp.types import EmbeddedResource, ImageContent, TextResourceContents

from sandbox_mcp.sandbox.images import image_problem
from sandbox_mcp.sandbox.runner import RunResult
from sandbox_mcp.sandbox.workspace import IMAGE_TYPES, OutputFile
from sandbox_mcp.server.schema import FileInfo

# Each image costs the model hundreds to thousands of tokens: a loop of plt.show() would
# otherwise fill the answer with figures. The first ones, in listing order, are sent.
MAX_IMAGES_SENT = 8
_OVER_COUNT = f"not shown as an image: at most {MAX_IMAGES_SENT} images per answer"


@dataclass(frozen=True)
class Shown:
    """One listed file and how it is shown: as an image or not, and why not."""

    file: OutputFile
    image: bool
    note: str | None


def shown(result: RunResult) -> list[Shown]:
    """How each file the run left is shown. Decided once per answer: the image checks read
    every image's bytes, and the three views below must agree."""
    decided, sent = [], 0
    for found in result.files:
        note = None
        if found.is_image and found.content is not None:
            problem = image_problem(found.mime_type, found.content)
            if problem:
                note = f"not shown as an image: {problem}"
            elif sent >= MAX_IMAGES_SENT:
                note = _OVER_COUNT
        elif found.mime_type in IMAGE_TYPES:
            note = "not shown as an image: over 1 MB, or over 4 MB of images in all"
        image = found.is_image and note is None
        sent += image
        decided.append(Shown(found, image, note))
    return decided


def file_infos(files: list[Shown]) -> list[FileInfo]:
    """Each listed file; `content` holds the text of those that came back as text."""
    return [
        FileInfo(
            path=item.file.path,
            size=item.file.size,
            mime_type=item.file.mime_type,
            status=item.file.status,  # type: ignore[arg-type]
            content=item.file.text,
            image=item.image,
            note=item.note,
        )
        for item in files
    ]


def embeds_svg(files: list[Shown]) -> bool:
    """Whether `content_blocks` embeds an SVG's text among these files."""
    return any(_is_embedded_svg(item) for item in files)


def _is_embedded_svg(item: Shown) -> bool:
    found = item.file
    return not item.image and found.mime_type == "image/svg+xml" and found.text is not None


def content_blocks(
    files: list[Shown], uri: Callable[[OutputFile], str]
) -> list[ImageContent | EmbeddedResource]:
    """An image block per image shown, an embedded text resource per SVG, at `uri(file)`.

    SVG goes as text: some model APIs refuse SVG images.
    """
    blocks: list[ImageContent | EmbeddedResource] = []
    for item in files:
        found = item.file
        if item.image and found.content is not None:
            data = base64.b64encode(found.content).decode()
            blocks.append(ImageContent(type="image", data=data, mime_type=found.mime_type))
        elif _is_embedded_svg(item):
            contents = TextResourceContents(
                uri=uri(found),
                mime_type=found.mime_type,
                text=found.text,
            )
            blocks.append(EmbeddedResource(type="resource", resource=contents))
    return blocks


def _printable(name: str) -> str:
    """`name` with its control and format characters escaped: a run's file name cannot add
    lines to the summary, move a terminal's cursor or turn the text right to left."""
    return "".join(
        char if not unicodedata.category(char).startswith("C") else ascii(char)[1:-1]
        for char in name
    )


def summary_lines(result: RunResult, files: list[Shown]) -> list[str]:
    """The files for the text summary: one line each."""
    if not result.files:
        return []
    lines = ["--- files ---"]
    for item in files:
        found = item.file
        if item.image:
            tail = " (image below)"
        elif item.note == _OVER_COUNT:
            tail = " (over the image cap)"
        elif item.note:
            tail = f" ({item.note})"
        else:
            tail = ""
        facts = f"{found.size} bytes, {found.mime_type}, {found.status}"
        lines.append(f"{_printable(found.path)} ({facts}){tail}")
    if result.files_unlisted:
        lines.append(f"... and {result.files_unlisted} more files not listed")
    left_out = sum(item.note == _OVER_COUNT for item in files)
    if left_out:
        lines.append(
            f"{left_out} more images left out (at most {MAX_IMAGES_SENT} shown per answer): "
            "they are only listed, here and in `files`"
        )
    return lines
