"""The files a cluster's nodes must hold alike, and their sync at start-up (PostgreSQL only).

Each node makes them as a single relay does (the DKIM key, the TURN secret, the Shadowsocks
password, the admin token, the self-signed certificate), then the database decides: the first
node's copy wins and every node writes it into its data dir (relay/store/postgres/shared_files.py).
Configured secrets ([turn] secret, [shadowsocks] password) and certificate files of
`[tls] mode = "files"` are the admin's and not shared. The ACME account is shared once made.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio

from relay.config import Config
from relay.core.admin.token import TOKEN_FILE, ensure_token
from relay.durable import load_or_create_secret
from relay.outbound import dkim
from relay.shadowsocks.link import PASSWORD_FILE
from relay.turn.credentials import SECRET_FILE

TLS_FILES = ("tls/cert.pem", "tls/key.pem")
ACME_FILES = ("acme/account-key.pem", "acme/account.json", "acme/cert.pem", "acme/key.pem")


def shared_names(config: Config) -> list[str]:
    """The names (paths relative to the data dir) this node shares with the others."""
    names = [TOKEN_FILE]
    if not config.turn.secret:
        names.append(SECRET_FILE)
    if not config.shadowsocks.password:
        names.append(PASSWORD_FILE)
    if not config.is_lan:
        names.append(dkim.key_path(config).relative_to(config.data_dir).as_posix())
    if config.tls.mode != "files":
        names += TLS_FILES
    if config.tls.mode == "acme":
        names += ACME_FILES
    return names


def make_local(config: Config) -> None:
    """Create what a first start creates anyway (the certificate: TLSManager did)."""
    ensure_token(config)
    data_dir = Path(config.data_dir)
    if not config.turn.secret:
        load_or_create_secret(data_dir / SECRET_FILE)
    if not config.shadowsocks.password:
        load_or_create_secret(data_dir / PASSWORD_FILE)
    dkim.ensure_key(config)


async def sync_shared(config: Config, store: Any, tls: Any, log: Any) -> list[str]:
    """Before any service starts: the data dir takes the cluster's copy of every shared file.
    `store` is a PgStore; `tls` (a TLSManager) re-reads the certificate when it changed."""
    await trio.to_thread.run_sync(make_local, config)
    changed = await store.sync_shared_files(config.data_dir, shared_names(config))
    if any(name in TLS_FILES for name in changed):
        tls.reload(config)
    if changed:
        log.info("shared-files-synced", changed=",".join(changed))
    return changed
