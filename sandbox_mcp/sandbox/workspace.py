"""The files of a run's workdir: the caller's files in, and the files the run leaves, out.

In: `check_inputs` holds the caller's files to the path rules before anything runs; `pack`
puts them with the main file into the payload memory file; the supervisor, as the run's uid,
`write_payload`s them into the workdir, one path component at a time from the workdir's
descriptor, never following a symbolic link.

Out: the supervisor takes a `snapshot` of the workdir once the inputs are written, and after
the run, every process of it dead, `collect`s the regular files that are new or changed into
a sealed memory file (a JSON listing, then the contents of the images and small text files
that come back). The server reads that file with `read_listing`, bounded by its own caps.

The payload format: `PAYLOAD_MAGIC`, a 4-byte big-endian length, a JSON header
`{"main": size, "files": [[path, size], ...]}`, then the main file's bytes and each file's
bytes in the header's order.

The listing format: a 4-byte big-endian length, a JSON header
`{"files": [{path, size, mime_type, status, offset?, length?}], "unlisted": n}`, then the
contents the entries with `offset` point at.

Only the standard library: the supervisor imports this module, in the warm template too.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import mimetypes
import os
import stat
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from sandbox_mcp.errors import InvalidPath, InvalidRequest
from sandbox_mcp.sandbox import files

PAYLOAD_MAGIC = b"SBXPAYLOAD1\n"

# Input rules.
MAX_INPUT_FILES = 100
MAX_PATH_BYTES = 1024
MAX_NAME_BYTES = 255
# Made by the supervisor in every workdir: the run's TMPDIR and its build products.
RESERVED_DIRS = (".tmp", ".build")

# Output caps.
MAX_LISTED = 50
MAX_IMAGE_BYTES = 1024 * 1024
MAX_IMAGES_TOTAL = 4 * 1024 * 1024
MAX_TEXT_BYTES = 8 * 1024
MAX_SVG_BYTES = 256 * 1024
MAX_TEXT_TOTAL = 64 * 1024
# The scan looks at no more entries than this; a workdir with more is listed in part.
MAX_SCANNED = 20_000
_MAX_HEADER = 4 * 1024 * 1024

IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")
_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"%PDF-", "application/pdf"),
    (b"PK\x03\x04", "application/zip"),
    (b"\x1f\x8b", "application/gzip"),
    (b"\x7fELF", "application/x-executable"),
)
_EXTENSIONS = {
    ".csv": "text/csv",
    ".tsv": "text/tab-separated-values",
    ".txt": "text/plain",
    ".log": "text/plain",
    ".md": "text/markdown",
    ".json": "application/json",
    ".jsonl": "application/jsonl",
    ".yaml": "application/yaml",
    ".yml": "application/yaml",
    ".toml": "application/toml",
    ".xml": "application/xml",
    ".html": "text/html",
    ".svg": "image/svg+xml",
    ".py": "text/x-python",
    ".js": "text/javascript",
}
_TEXTUAL = ("application/json", "application/jsonl", "application/yaml", "application/toml")


@dataclass(frozen=True)
class InputFile:
    """One file the caller sends into the workdir: a relative path and its bytes."""

    path: str
    content: bytes


@dataclass(frozen=True)
class OutputFile:
    """A regular file the run created or changed in its workdir.

    `status` is "created" or "modified". `content` holds the file for an image (PNG, JPEG,
    GIF, WEBP) or a small text file within the caps, else None.
    """

    path: str
    size: int
    mime_type: str
    status: str
    content: bytes | None = None

    @property
    def is_image(self) -> bool:
        return self.content is not None and self.mime_type in IMAGE_TYPES

    @property
    def text(self) -> str | None:
        """The content as text, for a text file that came back; None otherwise."""
        if self.content is None or self.mime_type in IMAGE_TYPES:
            return None
        return self.content.decode("utf-8", errors="replace")


@dataclass(frozen=True)
class Listing:
    """What the run left: the files listed, and how many more there were."""

    files: tuple[OutputFile, ...] = ()
    unlisted: int = 0


# --- in ----------------------------------------------------------------------------------


def decode_input(path: str, content: str, encoding: str) -> InputFile:
    """An `InputFile` from the caller's text, `encoding` "text" (UTF-8) or "base64"."""
    import base64
    import binascii

    if encoding == "text":
        return InputFile(path, content.encode("utf-8", errors="surrogatepass"))
    if encoding == "base64":
        try:
            return InputFile(path, base64.b64decode(content, validate=True))
        except (binascii.Error, ValueError):
            raise InvalidRequest(f"file {path!r}: content is not valid base64") from None
    raise InvalidRequest(f"file {path!r}: encoding {encoding!r}; use 'text' or 'base64'")


def check_inputs(files: Sequence[InputFile], main_file: str, max_total_bytes: int) -> None:
    """Raise `InvalidPath` or `InvalidRequest` unless every file may be written as asked.

    A path is relative, made of '/'-separated components that are neither empty, '.' nor
    '..', holds no NUL, has components of at most `MAX_NAME_BYTES` bytes and at most
    `MAX_PATH_BYTES` in all, does not start in a directory the supervisor makes (`.tmp`,
    `.build`), is not the main file's name (the code is the main file), and appears once; no
    path is a directory of another. At most `MAX_INPUT_FILES` files and `max_total_bytes`
    bytes of content in all.
    """
    if len(files) > MAX_INPUT_FILES:
        raise InvalidRequest(f"{len(files)} files; at most {MAX_INPUT_FILES} are allowed")
    total = sum(len(item.content) for item in files)
    if total > max_total_bytes:
        raise InvalidRequest(
            f"files add up to {total} bytes; the limit is {max_total_bytes} bytes "
            "(SANDBOX_MAX_FILES_BYTES)"
        )
    seen: set[str] = set()
    for item in files:
        _path_parts(item.path)
        if item.path == main_file:
            raise InvalidPath(
                f"file {item.path!r} has the main file's name: send that content as `code`, "
                "or give the main file another `filename`"
            )
        if item.path in seen:
            raise InvalidPath(f"file {item.path!r} is given twice")
        seen.add(item.path)
    for item in files:
        prefix = ""
        for part in _path_parts(item.path)[:-1]:
            prefix = f"{prefix}{part}"
            if prefix in seen or prefix == main_file:
                raise InvalidPath(f"file {item.path!r} needs {prefix!r} as a directory")
            prefix += "/"


def _path_parts(path: str) -> list[str]:
    shown = repr(path[:80]) + ("..." if len(path) > 80 else "")
    if not path:
        raise InvalidPath("a file has an empty path")
    if "\0" in path:
        raise InvalidPath(f"file {shown}: paths cannot contain NUL")
    encoded = path.encode("utf-8", errors="surrogatepass")
    if len(encoded) > MAX_PATH_BYTES:
        raise InvalidPath(f"file {shown}: path is {len(encoded)} bytes; at most {MAX_PATH_BYTES}")
    if path.startswith("/"):
        raise InvalidPath(f"file {shown}: absolute paths are not allowed; give it relative")
    parts = path.split("/")
    for part in parts:
        if part in ("", ".", ".."):
            raise InvalidPath(
                f"file {shown}: empty, '.' and '..' components are not allowed; the path "
                "must name a file inside the workdir"
            )
        if len(part.encode("utf-8", errors="surrogatepass")) > MAX_NAME_BYTES:
            raise InvalidPath(f"file {shown}: a component is over {MAX_NAME_BYTES} bytes")
    if parts[0] in RESERVED_DIRS:
        raise InvalidPath(f"file {shown}: {parts[0]}/ is the sandbox's own directory")
    return parts


def pack(code: bytes, files: Sequence[InputFile]) -> bytes:
    """The payload: the main file's bytes and the input files, in the format above."""
    header = json.dumps(
        {"main": len(code), "files": [[item.path, len(item.content)] for item in files]}
    ).encode()
    return b"".join(
        [PAYLOAD_MAGIC, struct.pack(">I", len(header)), header, code]
        + [item.content for item in files]
    )


def write_payload(workdir: str, main_file: str, payload: int, replace_main: bool = False) -> None:
    """Write the payload's input files, then its main file, into `workdir`.

    Runs in the supervisor as the run's uid. Each path is checked again, opened from the
    workdir's descriptor one component at a time with O_NOFOLLOW, directories created as
    needed; a file that exists is replaced only if it is a regular file. The main file must
    be new unless `replace_main` (a session's call writes over the one an earlier call left).
    """
    size = os.fstat(payload).st_size
    start = len(PAYLOAD_MAGIC) + 4
    if size < start or os.pread(payload, len(PAYLOAD_MAGIC), 0) != PAYLOAD_MAGIC:
        raise ValueError("the payload has no header")
    (length,) = struct.unpack(">I", os.pread(payload, 4, len(PAYLOAD_MAGIC)))
    if length > _MAX_HEADER:
        raise ValueError("the payload's header is too large")
    header = json.loads(os.pread(payload, length, start))
    offset = start + length
    main_size = int(header["main"])
    entries: list[tuple[str, int, int]] = []
    position = offset + main_size
    for path, file_size in header["files"]:
        _path_parts(str(path))
        entries.append((str(path), position, int(file_size)))
        position += int(file_size)
    if position > size:
        raise ValueError("the payload is shorter than its header says")

    root = os.open(workdir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        for path, start_at, file_size in entries:
            *dirs, name = path.split("/")
            with contextlib.ExitStack() as stack:
                try:
                    parent = stack.enter_context(_directory(root, dirs))
                except OSError as exc:
                    raise NotWritable(path, _why_no_directory(exc)) from exc
                try:
                    _write_file(parent, name, payload, start_at, file_size, replace=True)
                except OSError as exc:
                    raise NotWritable(path, _why_not_written(exc)) from exc
        try:
            _write_file(root, main_file, payload, offset, main_size, replace=replace_main)
        except OSError as exc:
            raise NotWritable(main_file, _why_not_written(exc)) from exc
    finally:
        os.close(root)


class NotWritable(OSError):
    """An input file or the main file could not be written where it goes (`path`): in a
    session, something an earlier call left is in the way."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"could not write {path}: {reason}")
        self.path = path


def _why_not_written(exc: OSError) -> str:
    # EISDIR: a directory; ELOOP: a link (O_NOFOLLOW); ENXIO: a FIFO with no reader
    # (O_NONBLOCK); no errno: opened, and found not to be a regular file.
    if exc.errno in (None, errno.EISDIR, errno.ELOOP, errno.ENXIO):
        return "it exists and is not a regular file"
    return exc.strerror or str(exc)


def _why_no_directory(exc: OSError) -> str:
    if exc.errno in (errno.ENOTDIR, errno.ELOOP):
        return "a directory on its path exists and is a file or a link"
    return exc.strerror or str(exc)


def make_links(workdir: str, links: Sequence[Sequence[str]]) -> None:
    """Make each [path, target] symbolic link in `workdir`, its directories as needed.

    Like the input files, from the workdir's descriptor without following a link on the
    way; a path that already exists is left as it is.
    """
    root = os.open(workdir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        for path, target in links:
            *dirs, name = path.split("/")
            with _directory(root, dirs) as parent, contextlib.suppress(FileExistsError):
                os.symlink(target, name, dir_fd=parent)
    finally:
        os.close(root)


@contextlib.contextmanager
def _directory(root: int, parts: list[str], make: bool = True) -> Iterator[int]:
    """The descriptor of `root/parts...`, no component a symbolic link; made as needed when
    `make`, else a missing one raises."""
    current = os.dup(root)
    try:
        for part in parts:
            if make:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o700, dir_fd=current)
            flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
            following = os.open(part, flags, dir_fd=current)
            os.close(current)
            current = following
        yield current
    finally:
        os.close(current)


def _write_file(
    parent: int, name: str, payload: int, offset: int, size: int, replace: bool
) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    flags |= 0 if replace else os.O_EXCL
    out = os.open(name, flags, 0o600, dir_fd=parent)
    try:
        # O_NONBLOCK: a FIFO left by an earlier run opens without waiting, and is refused.
        if not stat.S_ISREG(os.fstat(out).st_mode):
            raise OSError(f"{name} exists and is not a regular file")
        os.ftruncate(out, 0)
        files.copy_range(out, payload, offset, offset + size)
    finally:
        os.close(out)


# --- out ---------------------------------------------------------------------------------

Snapshot = dict[str, tuple[int, int, int, int]]


def snapshot(workdir: str) -> Snapshot:
    """Each regular file of `workdir` (but `.tmp` and `.build`) with what tells a change."""
    return {path: _signature(info) for path, info in _walk(workdir)}


def collect(workdir: str, before: Snapshot) -> int:
    """The files created or changed since `before`, as a sealed memory file (format above).

    Runs in the supervisor once every process of the run is dead, so nothing changes the
    workdir meanwhile. Symbolic links, FIFOs, sockets and devices are never listed, opened
    or followed; a file is opened with O_NOFOLLOW | O_NONBLOCK and read only if it is the
    regular file the walk saw, and never past the caps.
    """
    changed = [
        (path, info) for path, info in _walk(workdir) if before.get(path) != _signature(info)
    ]
    changed.sort()
    listed, unlisted = changed[:MAX_LISTED], max(0, len(changed) - MAX_LISTED)

    body = bytearray()
    entries = []
    image_room, text_room = MAX_IMAGES_TOTAL, MAX_TEXT_TOTAL
    root = os.open(workdir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        for path, info in listed:
            head = _read(root, path, info, 512) or b""
            mime_type = sniff(path, head)
            entry: dict[str, object] = {
                # A name that is not UTF-8 is shown with replacement characters.
                "path": path.encode("utf-8", "surrogateescape").decode("utf-8", "replace"),
                "size": info.st_size,
                "mime_type": mime_type,
                "status": "modified" if path in before else "created",
            }
            cap = _content_cap(mime_type, head)
            pictures = _counts_as_picture(mime_type)
            room = image_room if pictures else text_room
            if cap and info.st_size <= min(cap, room):
                content = _read(root, path, info, info.st_size)
                if content is not None and _fits(mime_type, content):
                    entry.update(offset=len(body), length=len(content))
                    body += content
                    if pictures:
                        image_room -= len(content)
                    else:
                        text_room -= len(content)
            entries.append(entry)
    finally:
        os.close(root)

    header = json.dumps({"files": entries, "unlisted": unlisted}).encode()
    return _sealed(struct.pack(">I", len(header)) + header + bytes(body))


def read_listing(fd: int) -> Listing:
    """The supervisor's listing from its memory file, held to this side's own caps."""
    size = os.fstat(fd).st_size
    if size < 4:
        return Listing()
    (length,) = struct.unpack(">I", os.pread(fd, 4, 0))
    if length > min(size - 4, _MAX_HEADER):
        return Listing()
    header = json.loads(os.pread(fd, length, 4))
    base = 4 + length
    files = []
    image_room, text_room = MAX_IMAGES_TOTAL, MAX_TEXT_TOTAL
    for raw in header.get("files", [])[:MAX_LISTED]:
        mime_type = str(raw["mime_type"])
        content = None
        if "offset" in raw:
            length_of = int(raw["length"])
            pictures = _counts_as_picture(mime_type)
            room = image_room if pictures else text_room
            cap = _content_cap(mime_type, b"")
            if 0 <= length_of <= min(cap, room):
                content = os.pread(fd, length_of, base + int(raw["offset"]))
                if pictures:
                    image_room -= len(content)
                else:
                    text_room -= len(content)
        files.append(
            OutputFile(str(raw["path"]), int(raw["size"]), mime_type, str(raw["status"]), content)
        )
    return Listing(tuple(files), int(header.get("unlisted", 0)))


def sniff(path: str, head: bytes) -> str:
    """The MIME type of a file from its first bytes, else its extension."""
    for signature, mime_type in _SIGNATURES:
        if head.startswith(signature):
            return mime_type
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    extension = os.path.splitext(path)[1].lower()
    if extension in _EXTENSIONS:
        return _EXTENSIONS[extension]
    if b"<svg" in head[:512] and head.lstrip()[:1] == b"<":
        return "image/svg+xml"
    guessed, _ = mimetypes.guess_type(path, strict=False)
    if guessed:
        return guessed
    if not head or _is_text(head):
        return "text/plain"
    return "application/octet-stream"


def _counts_as_picture(mime_type: str) -> bool:
    # SVG comes back as text but weighs like a picture: it draws on the images' budget.
    return mime_type in IMAGE_TYPES or mime_type == "image/svg+xml"


def _content_cap(mime_type: str, head: bytes) -> int:
    if mime_type in IMAGE_TYPES:
        return MAX_IMAGE_BYTES
    if mime_type == "image/svg+xml":
        return MAX_SVG_BYTES
    if (mime_type.startswith("text/") or mime_type in _TEXTUAL) and _is_text(head):
        return MAX_TEXT_BYTES
    return 0


def _fits(mime_type: str, content: bytes) -> bool:
    return mime_type in IMAGE_TYPES or _is_text(content, whole=True)


def _is_text(data: bytes, whole: bool = False) -> bool:
    if b"\0" in data:
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A character cut at the end of a head is still text.
        return not whole and exc.start >= len(data) - 3
    return True


def _walk(workdir: str) -> list[tuple[str, os.stat_result]]:
    """(relative path, lstat) of each regular file below `workdir`, never leaving it."""
    found: list[tuple[str, os.stat_result]] = []
    seen = 0
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    pending: list[tuple[str, int]] = [("", os.open(workdir, flags))]
    try:
        while pending:
            prefix, fd = pending.pop()
            try:
                names = sorted(os.listdir(fd))
                for name in names:
                    seen += 1
                    if seen > MAX_SCANNED:
                        return found
                    if not prefix and name in RESERVED_DIRS:
                        continue
                    try:
                        info = os.stat(name, dir_fd=fd, follow_symlinks=False)
                    except OSError:
                        continue
                    path = prefix + name
                    if stat.S_ISREG(info.st_mode):
                        found.append((path, info))
                    elif stat.S_ISDIR(info.st_mode) and len(path) < MAX_PATH_BYTES:
                        with contextlib.suppress(OSError):
                            pending.append((path + "/", os.open(name, flags, dir_fd=fd)))
            except OSError:
                continue
            finally:
                os.close(fd)
    finally:
        for _prefix, fd in pending:
            os.close(fd)
    return found


def _signature(info: os.stat_result) -> tuple[int, int, int, int]:
    return (info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


def _read(root: int, path: str, seen: os.stat_result, limit: int) -> bytes | None:
    """Up to `limit` bytes of `path`, if it is still the regular file the walk saw."""
    *dirs, name = path.split("/")
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        with _directory(root, dirs, make=False) as parent:
            fd = os.open(name, flags, dir_fd=parent)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_ino != seen.st_ino:
            return None
        chunks = []
        left = limit
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)


def _sealed(data: bytes) -> int:
    fd = os.memfd_create("files", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE)
    return fd
