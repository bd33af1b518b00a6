"""`python -m sandbox_mcp` runs the same CLI as the `sandbox-mcp` console script."""

from __future__ import annotations

from sandbox_mcp.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
