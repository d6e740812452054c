"""Addresses in header fields, parsed the same way on every Python the relay runs on.

`email.utils.getaddresses` drops domain literals (user@[10.0.0.2]) in its strict mode, which
newer Pythons and patched distribution builds use; LAN-mode relays live on such addresses. The
RFC 5322 parser behind `email.headerregistry` reads them on every version.
"""

from __future__ import annotations

import re
from email.errors import HeaderParseError
from email.headerregistry import HeaderRegistry
from email.parser import BytesHeaderParser

_REGISTRY = HeaderRegistry()

# The one-address forms mail clients write (Delta Chat's among them): a bare addr-spec, or one
# in angle brackets after an optional quoted display name. Read here directly, they give the same
# result as the RFC 5322 parser (tests/test_addresses.py compares the two), which costs about
# 60 microseconds a field: every message through the PGP gate has its From field parsed.
# Anything else (encoded words, comments, folding, groups, lists) goes to that parser.
_DOT_ATOM = r"[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*"
_DOMAIN = r"[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
_IPV4_LITERAL = r"\[\d{1,3}(?:\.\d{1,3}){3}\]"
_IPV6_LITERAL = r"\[[Ii][Pp][Vv]6:[0-9A-Fa-f:.]+\]"  # user@[IPv6:fd00::2], RFC 5321 4.1.3
_ADDR_SPEC = rf"{_DOT_ATOM}@(?:{_DOMAIN}|{_IPV4_LITERAL}|{_IPV6_LITERAL})"
_SIMPLE = re.compile(
    rf'[ \t]*(?:(?:"(?P<name>[ !#-\[\]-~]*)"[ \t]*)?<(?P<bracketed>{_ADDR_SPEC})>'
    rf"|(?P<bare>{_ADDR_SPEC}))[ \t]*"
)


def parse_addresses(value: str) -> list[tuple[str, str]]:
    """(display name, addr-spec) of each address in a header value; groups are flattened."""
    simple = _SIMPLE.fullmatch(value)
    if simple and "=?" not in (name := simple["name"] or ""):
        return [(name, simple["bracketed"] or simple["bare"])]
    return parse_rfc5322(value)


def parse_rfc5322(value: str) -> list[tuple[str, str]]:
    """parse_addresses with the standard library's RFC 5322 parser, for every form."""
    try:
        header = _REGISTRY("To", value)  # any address header name selects the address parser
        return [(a.display_name, a.addr_spec) for a in header.addresses]  # type: ignore[attr-defined]
    except (HeaderParseError, ValueError, IndexError, TypeError, AttributeError, NameError):
        # The stdlib parser trips over some malformed values with AttributeError ("<a@[1>",
        # "x: y; z=1") or UnboundLocalError ("a@[ "): those are unparseable addresses too, not a
        # reason to drop the connection.
        return []


def from_domain(message: bytes) -> str | None:
    """The domain of the single From address, lower case; None if there is not exactly one."""
    headers = BytesHeaderParser().parsebytes(message)
    values = headers.get_all("From") or []
    addresses = [a for v in values for a in parse_addresses(str(v))]
    if len(addresses) != 1 or "@" not in addresses[0][1]:
        return None
    return addresses[0][1].rpartition("@")[2].lower()
