"""Fixtures for the web tests: a relay in domain mode next to the default LAN-mode one."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from relay.config import TLS, Config
from relay.tls import make_self_signed, write_pair
from tests.helpers import make_config

DOMAIN = "relay.test"


def domain_config(tmp_path: Path, *, mode: str = "files", **sections: object) -> Config:
    """Domain mode on 127.0.0.1 with a certificate for relay.test supplied as files."""
    config = make_config(tmp_path / "data")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    write_pair(cert, key, *make_self_signed(DOMAIN))
    tls = TLS(mode=mode, cert=str(cert), key=str(key)) if mode == "files" else TLS(mode=mode)
    return dataclasses.replace(config, mail_domain=DOMAIN, tls=tls, **sections)
