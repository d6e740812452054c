"""SEARCH keys: parsing (RFC 3501 §6.4.4, MODSEQ from RFC 7162) and evaluation per message."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property

from .grammar import ATOM_CHARS, Cursor, ParseError
from .seqset import SeqSet, parse_seqset

FLAG_KEYS = {
    "ANSWERED": ("\\Answered", True),
    "DELETED": ("\\Deleted", True),
    "DRAFT": ("\\Draft", True),
    "FLAGGED": ("\\Flagged", True),
    "SEEN": ("\\Seen", True),
    "UNANSWERED": ("\\Answered", False),
    "UNDELETED": ("\\Deleted", False),
    "UNDRAFT": ("\\Draft", False),
    "UNFLAGGED": ("\\Flagged", False),
    "UNSEEN": ("\\Seen", False),
}
# RECENT/NEW/OLD: this relay never hands out \Recent, so NEW = nothing and OLD = everything.
NO_ARG_KEYS = frozenset(FLAG_KEYS) | {"ALL", "NEW", "OLD", "RECENT"}
STRING_KEYS = frozenset({"BCC", "BODY", "CC", "FROM", "SUBJECT", "TEXT", "TO"})
DATE_KEYS = frozenset({"BEFORE", "ON", "SINCE", "SENTBEFORE", "SENTON", "SENTSINCE"})
CONTENT_KEYS = STRING_KEYS | {"HEADER", "SENTBEFORE", "SENTON", "SENTSINCE"}
# Parentheses, NOT and OR nest; evaluation recurses as deep, so the depth is bounded.
MAX_KEY_DEPTH = 200


@dataclass(frozen=True, slots=True)
class Key:
    op: str  # ALL, SEEN, ..., HEADER, UID, SEQ, NOT, OR, AND, LARGER, MODSEQ, ...
    args: tuple = ()


@dataclass(frozen=True, slots=True)
class Candidate:
    """What a key is evaluated against. `content` is only consulted by CONTENT_KEYS."""

    seq: int
    uid: int
    flags: frozenset[str]
    size: int
    internal_date: datetime
    modseq: int
    largest_seq: int
    largest_uid: int
    content: Callable[[], MessageText] | None = None


class MessageText:
    """Header fields and text of one message, for the string and sent-date keys."""

    def __init__(self, headers: list[tuple[str, str]], body: str, sent: datetime | None) -> None:
        self.headers = headers
        self.body = body
        self.sent = sent

    # Case-folded once per message, however many keys look into it.
    @cached_property
    def folded_body(self) -> str:
        return self.body.casefold()

    @cached_property
    def folded_headers(self) -> str:
        return "\n".join(f"{k}: {v}" for k, v in self.headers).casefold()

    def header(self, name: str) -> list[str]:
        lname = name.lower()
        return [v for k, v in self.headers if k.lower() == lname]


def parse_search(cur: Cursor) -> tuple[str | None, Key]:
    """search = [CHARSET SP astring SP] search-key *(SP search-key); returns (charset, AND-key)."""
    charset = None
    if cur.accept(b"CHARSET "):
        charset = cur.astring_text().upper()
        cur.sp()
    keys = [_key(cur)]
    while not cur.at_end():
        cur.sp()
        cur.skip_spaces()
        if cur.at_end():
            break
        keys.append(_key(cur))
    return charset, keys[0] if len(keys) == 1 else Key("AND", tuple(keys))


def _key(cur: Cursor, depth: int = 0) -> Key:
    if depth > MAX_KEY_DEPTH:
        raise ParseError("Search keys nested too deeply")
    if cur.peek() == ord("("):
        cur.open_list()
        keys = []
        while True:
            keys.append(_key(cur, depth + 1))
            if cur.close_list():
                return keys[0] if len(keys) == 1 else Key("AND", tuple(keys))
    c = cur.peek()
    if c is not None and (chr(c).isdigit() or c == ord("*")):
        return Key("SEQ", (parse_seqset(cur),))
    word = cur.take_while(ATOM_CHARS).decode("ascii").upper()
    if not word:
        raise ParseError("Expected search key")
    if word in NO_ARG_KEYS:
        return Key(word)
    cur.sp()
    if word in STRING_KEYS:
        return Key(word, (cur.astring_text(),))
    if word in ("KEYWORD", "UNKEYWORD"):
        return Key(word, (cur.flag(),))
    if word in DATE_KEYS:
        return Key(word, (cur.date().date(),))
    if word in ("LARGER", "SMALLER"):
        return Key(word, (cur.number(),))
    if word == "UID":
        return Key("UID", (parse_seqset(cur),))
    if word == "HEADER":
        field = cur.astring_text()
        cur.sp()
        return Key("HEADER", (field, cur.astring_text()))
    if word == "NOT":
        return Key("NOT", (_key(cur, depth + 1),))
    if word == "OR":
        first = _key(cur, depth + 1)
        cur.sp()
        return Key("OR", (first, _key(cur, depth + 1)))
    if word == "MODSEQ":
        if cur.peek() == ord('"'):  # entry-name and entry-type-req: accepted and ignored
            cur.quoted()
            cur.sp()
            cur.atom()
            cur.sp()
        return Key("MODSEQ", (cur.number(),))
    raise ParseError(f"Unknown search key {word}")


def needs_content(key: Key) -> bool:
    if key.op in CONTENT_KEYS:
        return True
    return any(isinstance(a, Key) and needs_content(a) for a in key.args)


def uses_modseq(key: Key) -> bool:
    if key.op == "MODSEQ":
        return True
    return any(isinstance(a, Key) and uses_modseq(a) for a in key.args)


def matches(key: Key, c: Candidate) -> bool:
    op, args = key.op, key.args
    if op == "AND":
        return all(matches(k, c) for k in args)
    if op == "OR":
        return matches(args[0], c) or matches(args[1], c)
    if op == "NOT":
        return not matches(args[0], c)
    if op in FLAG_KEYS:
        flag, wanted = FLAG_KEYS[op]
        return (flag in c.flags) == wanted
    if op in ("ALL", "OLD"):
        return True
    if op in ("NEW", "RECENT"):
        return False
    if op == "KEYWORD":
        return _has_flag(c.flags, args[0])
    if op == "UNKEYWORD":
        return not _has_flag(c.flags, args[0])
    if op == "SEQ":
        return args[0].contains(c.seq, c.largest_seq)
    if op == "UID":
        seqset: SeqSet = args[0]
        return seqset.contains(c.uid, c.largest_uid)
    if op == "LARGER":
        return c.size > args[0]
    if op == "SMALLER":
        return c.size < args[0]
    if op == "MODSEQ":
        return c.modseq >= args[0]
    if op in ("BEFORE", "ON", "SINCE"):
        return _compare_date(op, c.internal_date.date(), args[0])
    return _content_match(op, args, c)


def _content_match(op: str, args: tuple, c: Candidate) -> bool:
    if c.content is None:
        raise ValueError("search key needs message content")
    text = c.content()
    if op in ("SENTBEFORE", "SENTON", "SENTSINCE"):
        sent = text.sent
        return sent is not None and _compare_date(op[4:], sent.date(), args[0])
    if op == "HEADER":
        values = text.header(args[0])
        return bool(values) and any(_contains(v, args[1]) for v in values)
    if op == "BODY":
        return args[0].casefold() in text.folded_body
    if op == "TEXT":
        needle = args[0].casefold()
        return needle in text.folded_headers or needle in text.folded_body
    return any(_contains(v, args[0]) for v in text.header(op))


def _compare_date(op: str, day, wanted) -> bool:
    if op == "BEFORE":
        return day < wanted
    if op == "ON":
        return day == wanted
    return day >= wanted


def _contains(haystack: str, needle: str) -> bool:
    return needle.casefold() in haystack.casefold()


def _has_flag(flags: frozenset[str], wanted: str) -> bool:
    lowered = wanted.lower()
    return any(f.lower() == lowered for f in flags)
