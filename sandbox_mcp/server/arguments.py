"""Strict checking of tool arguments, before the SDK sees them.

The SDK validates arguments with pydantic, which silently drops unknown keys and words its
errors for Python programmers. This middleware checks every `tools/call` against the tool's
published input schema first: an unknown argument, a missing one or a wrong type is refused
with a message naming the argument and what is allowed, so a model can correct its call.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from mcp.server import MCPServer
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.types import CallToolResult, TextContent

_JSON_TYPES: dict[str, Callable[[Any], bool]] = {
    "string": lambda value: isinstance(value, str),
    "integer": lambda value: isinstance(value, int) and not isinstance(value, bool),
    "number": lambda value: isinstance(value, int | float) and not isinstance(value, bool),
    "boolean": lambda value: isinstance(value, bool),
    "array": lambda value: isinstance(value, list),
    "object": lambda value: isinstance(value, dict),
    "null": lambda value: value is None,
}


class StrictArguments:
    """Server middleware that refuses malformed `tools/call` arguments with a clear error."""

    def __init__(self, server: MCPServer) -> None:
        self._server = server
        self._schemas: dict[str, Mapping[str, Any]] | None = None

    async def __call__(
        self, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        if ctx.method != "tools/call" or not isinstance(ctx.params, Mapping):
            return await call_next(ctx)
        if self._schemas is None:
            self._schemas = {
                tool.name: tool.input_schema for tool in await self._server.list_tools()
            }
        name = ctx.params.get("name")
        schema = self._schemas.get(name) if isinstance(name, str) else None
        if schema is None:
            return await call_next(ctx)

        problem = check(name, schema, ctx.params.get("arguments"))
        if problem is not None:
            return CallToolResult(content=[TextContent(type="text", text=problem)], is_error=True)
        return await call_next(ctx)


def check(tool: str, schema: Mapping[str, Any], arguments: object) -> str | None:
    """The problem with `arguments` for `tool`, or None when they match its schema."""
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        return f"{tool}: arguments must be an object, got {_json_type(arguments)}"

    properties: Mapping[str, Any] = schema.get("properties", {})
    unknown = [key for key in arguments if key not in properties]
    if unknown:
        names = ", ".join(repr(key) for key in unknown)
        if not properties:
            return f"{tool}: unknown argument {names}; this tool takes no arguments"
        return f"{tool}: unknown argument {names}; allowed: {', '.join(properties)}"

    missing = [key for key in schema.get("required", []) if key not in arguments]
    if missing:
        return f"{tool}: missing required argument {', '.join(repr(k) for k in missing)}"

    for key, value in arguments.items():
        expected = _types(properties[key])
        if expected and not any(
            _JSON_TYPES[kind](value) for kind in expected if kind in _JSON_TYPES
        ):
            return (
                f"{tool}: argument {key!r} must be {' or '.join(expected)}, got {_json_type(value)}"
            )
        items = _items_types(properties[key])
        if isinstance(value, list) and items:
            for index, item in enumerate(value):
                if not any(_JSON_TYPES[kind](item) for kind in items if kind in _JSON_TYPES):
                    return (
                        f"{tool}: argument {key!r} must be a list of {' or '.join(items)}; "
                        f"item {index} is {_json_type(item)}"
                    )
        out_of_range = _out_of_range(properties[key], value)
        if out_of_range:
            return f"{tool}: argument {key!r} must be {out_of_range}, got {value!r}"
    return None


def _out_of_range(spec: Mapping[str, Any], value: object) -> str | None:
    # The bound a number breaks, in words; pydantic's own message names Python types.
    if not _JSON_TYPES["number"](value):
        return None
    for option in [spec, *spec.get("anyOf", [])]:
        for keyword, words, broken in (
            ("exclusiveMinimum", "greater than", lambda bound: value <= bound),
            ("minimum", "at least", lambda bound: value < bound),
            ("exclusiveMaximum", "less than", lambda bound: value >= bound),
            ("maximum", "at most", lambda bound: value > bound),
        ):
            bound = option.get(keyword)
            if isinstance(bound, int | float) and broken(bound):
                return f"{words} {bound:g}"
    return None


def _types(spec: Mapping[str, Any]) -> list[str]:
    if "type" in spec:
        kind = spec["type"]
        return list(kind) if isinstance(kind, list) else [kind]
    kinds: list[str] = []
    for option in spec.get("anyOf", []):
        kinds.extend(_types(option))
    return kinds


def _items_types(spec: Mapping[str, Any]) -> list[str]:
    for option in [spec, *spec.get("anyOf", [])]:
        if option.get("type") == "array" and isinstance(option.get("items"), Mapping):
            return _types(option["items"])
    return []


def _json_type(value: object) -> str:
    for name in ("null", "boolean", "integer", "number", "string", "array", "object"):
        if _JSON_TYPES[name](value):
            return name
    return type(value).__name__
