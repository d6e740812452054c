"""SEARCH key parsing on hostile nesting: a clear parse error, never a RecursionError."""

from __future__ import annotations

import pytest

from relay.imap.grammar import Cursor, ParseError
from relay.imap.searchkeys import MAX_KEY_DEPTH, Key, parse_search


@pytest.mark.parametrize(
    "keys",
    [
        b"(" * 10_000 + b"SEEN" + b")" * 10_000,
        b"NOT " * 10_000 + b"SEEN",
        b"OR SEEN " * 10_000 + b"SEEN",
    ],
    ids=["parentheses", "NOT", "OR"],
)
def test_keys_nested_10000_deep_are_a_parse_error(keys: bytes) -> None:
    with pytest.raises(ParseError, match="Search keys nested too deeply"):
        parse_search(Cursor(keys))


def test_keys_nested_to_the_limit_still_parse() -> None:
    _, key = parse_search(Cursor(b"NOT " * MAX_KEY_DEPTH + b"SEEN"))
    for _ in range(MAX_KEY_DEPTH):
        assert key.op == "NOT"
        key = key.args[0]
    assert key == Key("SEEN")
