"""Parse one complete tagged IMAP command into a typed Command."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from .fetchspec import FetchAtt, parse_fetch_atts
from .grammar import ATOM_CHARS, Cursor, ParseError
from .searchkeys import Key, parse_search
from .seqset import SeqSet, parse_seqset

if TYPE_CHECKING:
    from .session import Session

# A command handler answers with the tagged OK's text, (response code, text), or None (a plain
# "Completed."); a table maps command names to (the state it needs, handler).
Result = str | tuple[str, str] | None
Handler = Callable[["Session", "Command"], Awaitable[Result]]
HandlerTable = dict[str, tuple[str, Handler]]

# Tags: any astring chars except "+" (RFC 3501 tag grammar).
_TAG_CHARS = frozenset(b for b in ATOM_CHARS | {ord("]")} if b != ord("+"))
UID_COMMANDS = frozenset({"FETCH", "STORE", "COPY", "MOVE", "SEARCH", "EXPUNGE"})


class CommandError(ParseError):
    """A parse error that knows the tag (None when even the tag was unreadable)."""

    def __init__(self, tag: str | None, message: str) -> None:
        super().__init__(message)
        self.tag = tag
        self.message = message


@dataclass(frozen=True, slots=True)
class Fetch:
    seqset: SeqSet
    atts: tuple[FetchAtt, ...]
    changedsince: int | None = None


@dataclass(frozen=True, slots=True)
class Store:
    seqset: SeqSet
    mode: str  # "add" | "remove" | "replace"
    silent: bool
    flags: tuple[str, ...]
    unchangedsince: int | None = None


@dataclass(frozen=True, slots=True)
class Append:
    mailbox: str
    flags: tuple[str, ...]
    date: datetime | None
    message: bytes


@dataclass(frozen=True, slots=True)
class Search:
    charset: str | None
    key: Key


@dataclass(frozen=True, slots=True)
class GetMetadata:
    mailbox: str
    entries: tuple[str, ...]
    maxsize: int | None = None
    depth: str = "0"


@dataclass(frozen=True, slots=True)
class Command:
    tag: str
    name: str  # upper case; for "UID FETCH" name is "FETCH" and uid is True
    args: tuple = field(default=())
    uid: bool = False


def read_tag(data: bytes) -> str | None:
    cur = Cursor(data)
    raw = cur.take_while(_TAG_CHARS)
    return raw.decode("ascii") if raw and cur.peek() == 0x20 else None


def parse_command(data: bytes) -> Command:
    tag = read_tag(data)
    if tag is None:
        raise CommandError(None, "Error in IMAP command received by server.")
    cur = Cursor(data, len(tag) + 1)
    try:
        name = cur.atom().upper()
        uid = False
        if name == "UID":
            cur.sp()
            name = cur.atom().upper()
            uid = True
            if name not in UID_COMMANDS:
                raise ParseError(f"Unknown UID command {name}")
        parser = _PARSERS.get(name)
        if parser is None:
            raise ParseError(f"Unknown command {name}")
        args = parser(cur)
        cur.end()
    except CommandError:
        raise
    except ParseError as exc:
        raise CommandError(tag, str(exc)) from None
    return Command(tag, name, args, uid)


# -- per-command argument grammars --------------------------------------------------------------


def _none(cur: Cursor) -> tuple:
    return ()


def _one_atom(cur: Cursor) -> tuple:
    cur.sp()
    return (cur.atom().upper(),)


def _login(cur: Cursor) -> tuple:
    cur.sp()
    user = cur.astring()
    cur.sp()
    return (user, cur.astring())


def _authenticate(cur: Cursor) -> tuple:
    cur.sp()
    mech = cur.atom().upper()
    if cur.at_end():
        return (mech, None)
    cur.sp()
    return (mech, cur.take_while(ATOM_CHARS | {ord("=")}))


def _id(cur: Cursor) -> tuple:
    cur.sp()
    if cur.accept_nil():
        return (None,)
    cur.open_list()
    params: dict[str, str | None] = {}
    if cur.empty_list_end():
        return (params,)
    while True:
        key = cur.string().decode("utf-8", "replace")
        cur.sp()
        value = cur.nstring()
        params[key] = None if value is None else value.decode("utf-8", "replace")
        if cur.close_list():
            return (params,)


def _enable(cur: Cursor) -> tuple:
    names = []
    while not cur.at_end():
        cur.sp()
        names.append(cur.atom().upper())
    if not names:
        raise ParseError("ENABLE needs a capability")
    return tuple(names)


def _mailbox(cur: Cursor) -> tuple:
    cur.sp()
    return (cur.mailbox(),)


def _select(cur: Cursor) -> tuple:
    cur.sp()
    mailbox = cur.mailbox()
    params: list[str] = []
    if not cur.at_end():  # select-params such as (CONDSTORE)
        cur.sp()
        cur.open_list()
        if not cur.empty_list_end():
            while True:
                params.append(cur.atom().upper())
                if cur.close_list():
                    break
    return (mailbox, tuple(params))


def _two_mailboxes(cur: Cursor) -> tuple:
    cur.sp()
    first = cur.mailbox()
    cur.sp()
    return (first, cur.mailbox())


def _list(cur: Cursor) -> tuple:
    cur.sp()
    reference = cur.astring_text()
    cur.sp()
    return (reference, cur.list_mailbox())


def _status(cur: Cursor) -> tuple:
    cur.sp()
    mailbox = cur.mailbox()
    cur.sp()
    cur.open_list()
    items: list[str] = []
    while True:
        items.append(cur.atom().upper())
        if cur.close_list():
            return (mailbox, tuple(items))


def _append(cur: Cursor) -> tuple:
    cur.sp()
    mailbox = cur.mailbox()
    cur.sp()
    flags: tuple[str, ...] = ()
    date = None
    if cur.peek() == ord("("):
        flags = tuple(cur.flag_list())
        cur.sp()
    if cur.peek() == ord('"'):
        date = cur.date_time()
        cur.sp()
    return (Append(mailbox, flags, date, cur.literal()),)


def _search(cur: Cursor) -> tuple:
    cur.sp()
    charset, key = parse_search(cur)
    return (Search(charset, key),)


def _fetch(cur: Cursor) -> tuple:
    cur.sp()
    seqset = parse_seqset(cur)
    cur.sp()
    atts = parse_fetch_atts(cur)
    changedsince = None
    if not cur.at_end():  # fetch-modifiers: (CHANGEDSINCE n) from RFC 7162
        cur.sp()
        cur.open_list()
        cur.expect(b"CHANGEDSINCE ")
        changedsince = cur.number()
        if not cur.close_list():
            raise ParseError("Expected ')'")
    return (Fetch(seqset, atts, changedsince),)


def _store(cur: Cursor) -> tuple:
    cur.sp()
    seqset = parse_seqset(cur)
    cur.sp()
    unchangedsince = None
    if cur.peek() == ord("("):
        cur.open_list()
        cur.expect(b"UNCHANGEDSINCE ")
        unchangedsince = cur.number()
        if not cur.close_list():
            raise ParseError("Expected ')'")
        cur.sp()
    mode = "add" if cur.accept(b"+") else "remove" if cur.accept(b"-") else "replace"
    cur.expect(b"FLAGS")
    silent = cur.accept(b".SILENT")
    cur.sp()
    if cur.peek() == ord("("):
        flags = cur.flag_list()
    else:  # the flag list may be given without parentheses
        flags = [cur.flag()]
        while not cur.at_end():
            cur.sp()
            flags.append(cur.flag())
    return (Store(seqset, mode, silent, tuple(flags), unchangedsince),)


def _copy(cur: Cursor) -> tuple:
    cur.sp()
    seqset = parse_seqset(cur)
    cur.sp()
    return (seqset, cur.mailbox())


def _expunge(cur: Cursor) -> tuple:
    if cur.at_end():
        return ()
    cur.sp()
    return (parse_seqset(cur),)


def _getmetadata(cur: Cursor) -> tuple:
    cur.sp()
    maxsize = None
    depth = "0"
    if cur.peek() == ord("("):  # options: (MAXSIZE n) (DEPTH 0|1|infinity), in any order
        cur.open_list()
        while True:
            option = cur.atom().upper()
            cur.sp()
            if option == "MAXSIZE":
                maxsize = cur.number()
            elif option == "DEPTH":
                depth = cur.atom().lower()
            else:
                raise ParseError(f"Unknown GETMETADATA option {option}")
            if cur.close_list():
                break
        cur.sp()
    mailbox = cur.mailbox()
    cur.sp()
    entries: list[str] = []
    if cur.peek() == ord("("):
        cur.open_list()
        while True:
            entries.append(cur.astring_text())
            if cur.close_list():
                break
    else:
        entries.append(cur.astring_text())
    return (GetMetadata(mailbox, tuple(entries), maxsize, depth),)


def _setmetadata(cur: Cursor) -> tuple:
    cur.sp()
    mailbox = cur.mailbox()
    cur.sp()
    cur.open_list()
    values: list[tuple[str, bytes | None]] = []
    while True:
        entry = cur.astring_text()
        cur.sp()
        values.append((entry, cur.nstring()))
        if cur.close_list():
            return (mailbox, tuple(values))


def _quota_root(cur: Cursor) -> tuple:
    cur.sp()
    return (cur.astring_text(),)


_PARSERS = {
    "CAPABILITY": _none,
    "NOOP": _none,
    "LOGOUT": _none,
    "STARTTLS": _none,
    "CHECK": _none,
    "CLOSE": _none,
    "UNSELECT": _none,
    "IDLE": _none,
    "NAMESPACE": _none,
    "COMPRESS": _one_atom,
    "LOGIN": _login,
    "AUTHENTICATE": _authenticate,
    "ID": _id,
    "ENABLE": _enable,
    "SELECT": _select,
    "EXAMINE": _select,
    "CREATE": _mailbox,
    "DELETE": _mailbox,
    "SUBSCRIBE": _mailbox,
    "UNSUBSCRIBE": _mailbox,
    "RENAME": _two_mailboxes,
    "LIST": _list,
    "LSUB": _list,
    "STATUS": _status,
    "APPEND": _append,
    "SEARCH": _search,
    "FETCH": _fetch,
    "STORE": _store,
    "COPY": _copy,
    "MOVE": _copy,
    "EXPUNGE": _expunge,
    "GETMETADATA": _getmetadata,
    "SETMETADATA": _setmetadata,
    "GETQUOTAROOT": _mailbox,
    "GETQUOTA": _quota_root,
}
