"""What FETCH and SEARCH show of a stored message: ENVELOPE, BODYSTRUCTURE, BODY[section], text.

Sections must return the stored bytes exactly, so entities are byte offsets (relay.mime);
the stdlib email package is used where it is right: parsing header values (Content-Type
parameters, address lists, dates, encoded words), never for re-serialising content.
"""

from __future__ import annotations

import re
from email.header import decode_header, make_header
from email.message import Message
from email.utils import parsedate_to_datetime

from relay.addresses import parse_addresses
from relay.mime import Entity, header_info, header_params, parse, split_header

from .fetchspec import Section
from .searchkeys import MessageText

_ENVELOPE_ADDRESS_FIELDS = ("from", "sender", "reply-to", "to", "cc", "bcc")


def header_lines(header: bytes) -> list[tuple[str, bytes]]:
    """(field name, raw field bytes incl. continuation lines and line end) for each field."""
    fields: list[tuple[str, bytes]] = []
    for line in header.splitlines(keepends=True):
        if line in (b"\r\n", b"\n"):
            break
        if line[:1] in (b" ", b"\t") and fields:
            name, raw = fields[-1]
            fields[-1] = (name, raw + line)
            continue
        name = line.split(b":", 1)[0].strip().decode("ascii", "replace")
        fields.append((name, line))
    return fields


def header_fields(header: bytes, names: tuple[str, ...], *, exclude: bool) -> bytes:
    """HEADER.FIELDS / HEADER.FIELDS.NOT: the chosen fields, then the terminating empty line."""
    wanted = {n.lower() for n in names}
    picked = [raw for name, raw in header_lines(header) if (name.lower() in wanted) != exclude]
    return b"".join(picked) + b"\r\n"


# -- BODY[section] --------------------------------------------------------------------------


def is_plain_section(section: Section) -> bool:
    """A section of the top level that needs no MIME parse (Delta Chat's prefetch and download)."""
    return not section.part


def section_bytes(data: bytes, section: Section, root: Entity | None = None) -> bytes:
    """The bytes RFC 3501 §6.4.5 assigns to a section; b"" for a part that does not exist.
    `root`: the message already parsed (a FETCH of several parts parses it once)."""
    if is_plain_section(section):
        body_start = split_header(data)
        return _text_of(data[:body_start], data[body_start:], section)
    node = _navigate(root or parse(data), section.part)
    if node is None:
        return b""
    if not section.part:
        return _text_of(node.header, node.body, section)
    if section.text == "MIME":
        return node.header
    if section.text == "":
        return node.body
    inner = node.embedded
    if inner is None:
        return b""
    return _text_of(inner.header, inner.body, section)


def _text_of(header: bytes, body: bytes, section: Section) -> bytes:
    if section.text == "":
        return header + body
    if section.text == "HEADER":
        return header
    if section.text == "TEXT":
        return body
    return header_fields(header, section.fields, exclude=section.text == "HEADER.FIELDS.NOT")


def _navigate(root: Entity, path: tuple[int, ...]) -> Entity | None:
    node = root
    for depth, number in enumerate(path):
        container = node.embedded if depth and node.embedded is not None else node
        if container.children:
            if number > len(container.children):
                return None
            node = container.children[number - 1]
        elif number == 1:
            node = container  # part 1 of a single-part message is its body
        else:
            return None
    return node


# -- ENVELOPE and BODYSTRUCTURE ---------------------------------------------------------------


def envelope(entity: Entity) -> list:
    info = entity.info

    def raw(name: str) -> str | None:
        value = info.get(name)
        return None if value is None else _unfold(str(value))

    addresses = {name: _addresses(info.get_all(name)) for name in _ENVELOPE_ADDRESS_FIELDS}
    # RFC 3501: Sender and Reply-To default to From when absent.
    for name in ("sender", "reply-to"):
        if addresses[name] is None:
            addresses[name] = addresses["from"]
    return [
        raw("date"),
        raw("subject"),
        *(addresses[name] for name in _ENVELOPE_ADDRESS_FIELDS),
        raw("in-reply-to"),
        raw("message-id"),
    ]


def _unfold(value: str) -> str:
    return re.sub(r"\r?\n(?=[ \t])", "", value)


def _addresses(values: list[str] | None) -> list | None:
    if not values:
        return None
    result = []
    for name, addr in (a for v in values for a in parse_addresses(_unfold(str(v)))):
        if not name and not addr:
            continue
        mailbox, _, host = addr.rpartition("@") if "@" in addr else (addr, "", "")
        result.append([name or None, None, mailbox or None, host or None])
    return result or None


def bodystructure(entity: Entity, *, extended: bool) -> list:
    info = entity.info
    if entity.children:
        parts: list = [bodystructure(c, extended=extended) for c in entity.children]
        parts.append(info.get_content_subtype())
        if extended:
            parts += [_params(info), _disposition(info), _language(info), _location(info)]
        return parts
    body = entity.body
    if entity.opaque:
        maintype, subtype, params = "application", "octet-stream", None
    else:
        maintype, subtype, params = (
            info.get_content_maintype(),
            info.get_content_subtype(),
            _params(info),
        )
    fields: list = [
        maintype,
        subtype,
        params,
        _header(info, "content-id"),
        _header(info, "content-description"),
        (_header(info, "content-transfer-encoding") or "7BIT").upper(),
        len(body),
    ]
    if entity.embedded is not None:
        inner = entity.embedded
        fields += [envelope(inner), bodystructure(inner, extended=extended), _lines(body)]
    elif maintype == "text":
        fields.append(_lines(body))
    if extended:
        md5 = _header(info, "content-md5")
        fields += [md5, _disposition(info), _language(info), _location(info)]
    return fields


def _header(info: Message, name: str) -> str | None:
    value = info.get(name)
    return None if value is None else _unfold(str(value)).strip()


def _params(info: Message) -> list | None:
    params = header_params(info)
    if not params:
        return None if info.get_content_maintype() != "text" else ["charset", "us-ascii"]
    flat: list = []
    for key, value in params[1:]:
        flat += [key, value if isinstance(value, str) else str(value)]
    if info.get_content_maintype() == "text" and "charset" not in (k.lower() for k, _ in params):
        flat += ["charset", "us-ascii"]
    return flat or None


def _disposition(info: Message) -> list | None:
    params = header_params(info, "content-disposition")
    if not params:
        return None
    flat: list = []
    for key, value in params[1:]:
        flat += [key, value if isinstance(value, str) else str(value)]
    return [params[0][0], flat or None]


def _language(info: Message) -> str | None:
    return _header(info, "content-language")


def _location(info: Message) -> str | None:
    return _header(info, "content-location")


def _lines(body: bytes) -> int:
    return body.count(b"\n") + (1 if body and not body.endswith(b"\n") else 0)


# -- text for SEARCH --------------------------------------------------------------------------


def message_text(data: bytes) -> MessageText:
    body_start = split_header(data)
    info = header_info(data[:body_start])
    headers = [(name, _decoded(str(value))) for name, value in info.items()]
    sent = None
    if info.get("date"):
        try:
            sent = parsedate_to_datetime(str(info["date"]))
        except (TypeError, ValueError):
            sent = None
    return MessageText(headers, data[body_start:].decode("utf-8", "replace"), sent)


def _decoded(value: str) -> str:
    try:
        return str(make_header(decode_header(_unfold(value))))
    except (ValueError, LookupError):
        return _unfold(value)
