"""Addresses in header fields, parsed the same way on every Python the relay runs on.

`email.utils.getaddresses` drops domain literals (user@[10.0.0.2]) in its strict mode, which
newer Pythons and patched distribution builds use; LAN-mode relays live on such addresses. The
RFC 5322 parser behind `email.headerregistry` reads them on every version.
"""

from __future__ import annotations

from email.errors import HeaderParseError
from email.headerregistry import HeaderRegistry
from email.parser import BytesHeaderParser

_REGISTRY = HeaderRegistry()


def parse_addresses(value: str) -> list[tuple[str, str]]:
    """(display name, addr-spec) of each address in a header value; groups are flattened."""
    try:
        header = _REGISTRY("To", value)  # any address header name selects the address parser
        return [(a.display_name, a.addr_spec) for a in header.addresses]  # type: ignore[attr-defined]
    except (HeaderParseError, ValueError, IndexError, TypeError, AttributeError):
        # The stdlib parser trips over some malformed values with AttributeError ("<a@[1>",
        # "x: y; z=1"): those are unparseable addresses too, not a reason to drop the connection.
        return []


def from_domain(message: bytes) -> str | None:
    """The domain of the single From address, lower case; None if there is not exactly one."""
    headers = BytesHeaderParser().parsebytes(message)
    values = headers.get_all("From") or []
    addresses = [a for v in values for a in parse_addresses(str(v))]
    if len(addresses) != 1 or "@" not in addresses[0][1]:
        return None
    return addresses[0][1].rpartition("@")[2].lower()
