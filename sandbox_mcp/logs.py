"""The server's log on stderr: one line per event, readable by a person or as JSON.

stdout belongs to the MCP channel (stdio transport): nothing here writes to it. A log
record may carry `fields` (a dict: the run's id, language, outcome and sizes, see
`Sandbox._result`); the JSON form puts them in the object as they are. Neither form ever
holds a snippet's code or output: the records do not carry them.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the record's fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(level: str, form: str = "plain") -> None:
    """Send every log record to stderr, one line each, as `form` ("plain" or "json")."""
    handler = logging.StreamHandler(sys.stderr)
    if form == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # The SDK logs each failed tool call and resource read at INFO with its message and URI,
    # which carry session ids, credentials to those sessions; our own lines say what failed.
    logging.getLogger("mcp.server.mcpserver.server").setLevel(max(logging.WARNING, root.level))
