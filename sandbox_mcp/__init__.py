"""sandbox-mcp: an MCP server that runs untrusted code in hardened, single-use sandboxes."""

from __future__ import annotations

from sandbox_mcp.config import Settings
from sandbox_mcp.errors import SandboxError

__all__ = ["SandboxError", "Settings", "__version__"]

__version__ = "0.1.0"
