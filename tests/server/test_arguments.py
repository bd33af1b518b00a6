"""The strict argument check against a tool's input schema."""

from __future__ import annotations

from sandbox_mcp.server.arguments import check

SCHEMA = {
    "type": "object",
    "properties": {
        "language": {"type": "string"},
        "args": {"type": "array", "items": {"type": "string"}},
        "timeout_seconds": {"anyOf": [{"type": "number", "exclusiveMinimum": 0}, {"type": "null"}]},
        "count": {"type": "integer", "minimum": 1, "maximum": 10},
    },
    "required": ["language"],
}


def test_valid_arguments_pass() -> None:
    assert check("t", SCHEMA, {"language": "py", "args": ["a"], "timeout_seconds": 2}) is None
    assert check("t", SCHEMA, {"language": "py", "timeout_seconds": None}) is None


def test_unknown_argument_is_named_with_the_allowed_ones() -> None:
    problem = check("t", SCHEMA, {"language": "py", "lang": "x"})

    assert problem == "t: unknown argument 'lang'; allowed: language, args, timeout_seconds, count"


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


def test_numbers_out_of_bounds_are_named_with_the_bound() -> None:
    assert (
        check("t", SCHEMA, {"language": "p", "timeout_seconds": -1})
        == "t: argument 'timeout_seconds' must be greater than 0, got -1"
    )
    assert check("t", SCHEMA, {"language": "p", "count": 0}).endswith("must be at least 1, got 0")
    assert check("t", SCHEMA, {"language": "p", "count": 11}).endswith("at most 10, got 11")
    assert check("t", SCHEMA, {"language": "p", "count": 10, "timeout_seconds": 0.5}) is None


def test_a_tool_without_arguments_says_so() -> None:
    problem = check("list_languages", {"type": "object", "properties": {}}, {"x": 1})

    assert problem == "list_languages: unknown argument 'x'; this tool takes no arguments"
