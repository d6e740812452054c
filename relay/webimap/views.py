"""The JSON shapes WebIMAP answers with, made from what the store holds (pure functions).

madmail's shapes exactly (docs/webimap.md), so its web clients work unchanged:
MailboxInfo{name, attributes[], messages, unseen}, Address{name, mailbox, host},
Envelope{date, subject, from[], to[], cc[], message_id, in_reply_to},
MessageSummary{uid, seq_num, flags[], size, date, envelope}, MessageDetail = summary + body.
As in madmail (Go's `omitempty`), empty names, address lists and ids are left out, and a
missing or unreadable Date header is Go's zero time.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.header import decode_header, make_header
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import parsedate_to_datetime
from typing import Any

from relay.addresses import parse_addresses
from relay.mime import split_header
from relay.store import MailboxEntry, MailboxSnapshot, MessageMeta

ZERO_TIME = "0001-01-01T00:00:00Z"  # what madmail (Go) shows for a message without a date
DELIMITER = "/"
_HEADER_PARSER = BytesHeaderParser(policy=compat32)
_FOLD = re.compile(r"\r?\n(?=[ \t])")
# One plain address ("Name <a@b>", "<a@b>", "a@b"): the common case, read without the stdlib's
# full RFC 5322 parser (about 150 us an address: most of a push's time). Anything else
# (lists, groups, quotes, comments) goes to that parser.
_ONE_ADDRESS = re.compile(
    r"\s*(?:([^\"<>,;:()\\@]*?)\s*<([^<>\s\"(),;:\\]+@[^<>\s\"(),;:\\]+)>|"
    r"([^<>\s\"(),;:\\]+@[^<>\s\"(),;:\\]+))\s*"
)

Json = dict[str, Any]


def rfc3339(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def mailbox_info(entry: MailboxEntry, names: set[str], snap: MailboxSnapshot | None) -> Json:
    """One mailbox with the attributes IMAP LIST shows for it (children, special use)."""
    children = any(n.startswith(entry.name + DELIMITER) for n in names)
    attributes = ["\\HasChildren" if children else "\\HasNoChildren"]
    if entry.special_use:
        attributes.append(entry.special_use)
    messages = snap.messages if snap is not None else []
    return {
        "name": entry.name,
        "attributes": attributes,
        "messages": len(messages),
        "unseen": sum(1 for m in messages if "\\Seen" not in m.flags),
    }


def summary(meta: MessageMeta, seq_num: int, data: bytes) -> Json:
    """A MessageSummary; `data` is the stored message (only its header is read)."""
    return {
        "uid": meta.uid,
        "seq_num": seq_num,
        "flags": sorted(meta.flags),
        "size": meta.size,
        "date": rfc3339(meta.internal_date),
        "envelope": envelope(data[: split_header(data)]),
    }


def detail(meta: MessageMeta, seq_num: int, data: bytes) -> Json:
    """A MessageDetail: the summary and the raw message as text."""
    return {**summary(meta, seq_num, data), "body": data.decode("utf-8", "replace")}


def envelope(header: bytes) -> Json:
    info = _HEADER_PARSER.parsebytes(header)
    result: Json = {"date": _date(info), "subject": _text(info.get("subject"))}
    for key in ("from", "to", "cc"):
        addresses = _addresses(info.get_all(key))
        if addresses:
            result[key] = addresses
    for key, name in (("message_id", "message-id"), ("in_reply_to", "in-reply-to")):
        value = _unfold(info.get(name)).strip()
        if value:
            result[key] = value
    return result


def search_text(summary: Json) -> str:
    """What `search` looks into (lower case): subject, the From names and addresses, and the
    Message-ID, as madmail v2 (the body is not searched: chatmail bodies are encrypted)."""
    env = summary["envelope"]
    parts = [env.get("subject", ""), env.get("message_id", "")]
    for address in env.get("from", []):
        parts += [address.get("name", ""), f"{address['mailbox']}@{address['host']}"]
    return "\n".join(parts).lower()


def _date(info: Message) -> str:
    value = info.get("date")
    if not value:
        return ZERO_TIME
    try:
        return rfc3339(parsedate_to_datetime(_unfold(value)))
    except (TypeError, ValueError, IndexError, OverflowError):
        return ZERO_TIME


def _addresses(values: list[Any] | None) -> list[Json]:
    out: list[Json] = []
    for value in values or []:
        text = _unfold(value)
        quick = _ONE_ADDRESS.fullmatch(text)
        if quick is not None:
            pairs = [((quick[1] or "").strip(), quick[2] or quick[3])]
        else:
            pairs = parse_addresses(text)
        for name, addr in pairs:
            if not addr:
                continue
            mailbox, _, host = addr.rpartition("@") if "@" in addr else (addr, "", "")
            entry: Json = {"mailbox": mailbox, "host": host}
            if name:
                entry = {"name": _text(name), **entry}
            out.append(entry)
    return out


def _unfold(value: Any) -> str:
    return "" if value is None else _FOLD.sub("", str(value))


def _text(value: Any) -> str:
    """A header value with RFC 2047 encoded words decoded (a subject, a display name)."""
    raw = _unfold(value)
    try:
        return str(make_header(decode_header(raw)))
    except (ValueError, LookupError, UnicodeError):
        return raw
