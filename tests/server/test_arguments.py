"""The strict argument check against a tool's input schema."""

from __future__ import annotations

from sandbox_mcp.server.arguments import check

SCHEMA = {
    "type": "object",
    "properties": {
        "language": {"type": "string"},
        "args": {"type": "array", "items": {"type": "string"}},
        "timeout_seconds": {"anyOf": [{"type": "number"}, {"type": "null"}]},
    },
    "required": ["language"],
}


def test_valid_arguments_pass() -> None:
    assert check("t", SCHEMA, {"language": "py", "args": ["a"], "timeout_seconds": 2}) is None
    assert check("t", SCHEMA, {"language": "py", "timeout_seconds": None}) is None


def test_unknown_argument_is_named_with_the_allowed_ones() -> None:
    problem = check("t", SCHEMA, {"language": "py", "lang": "x"})

    assert problem == "t: unknown argument 'lang'; allowed: language, args, timeout_seconds"


def test_missing_argument_is_named() -> None:
    assert check("t", SCHEMA, {}) == "t: missing required argument 'language'"


def test_wrong_types_are_named() -> None:
    assert (
        check("t", SCHEMA, {"language": 3}) == "t: argument 'language' must be string, got integer"
    )
    assert "must be number or null, got boolean" in check(
        "t", SCHEMA, {"language": "p", "timeout_seconds": True}
    )
    assert "item 1 is integer" in check("t", SCHEMA, {"language": "p", "args": ["a", 2]})


def test_arguments_must_be_an_object() -> None:
    assert check("t", SCHEMA, ["language"]) == "t: arguments must be an object, got array"
