"""The chatmail rules for creating an account on first login (pure checks, no I/O)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

LOCALPART_RE = re.compile(r"^[a-z0-9._-]+$")
DEFAULT_MIN_FREE_DISK = 64 << 20


def creation_refusal(config: Any, addr: str, password: str) -> str | None:
    """Why addr/password may not become a new account, or None if it may."""
    acc = config.accounts
    if addr.count("@") != 1:
        return "address must contain exactly one @"
    local, domain = addr.split("@")
    if domain != config.address_domain.lower():
        return "not a local address"
    if not acc.username_min_length <= len(local) <= acc.username_max_length:
        return "username length out of range"
    if not LOCALPART_RE.match(local):
        return "username has characters outside a-z 0-9 . _ -"
    if len(password) < acc.password_min_length:
        return "password too short"
    free = free_disk_space(config.data_dir)
    if free is not None and free < getattr(acc, "min_free_disk_space", DEFAULT_MIN_FREE_DISK):
        return "data disk nearly full"
    return None


def free_disk_space(path: Path) -> int | None:
    """Bytes available to the relay on the data disk; None if it cannot be read (then ignored,
    as chatmail does)."""
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def is_local(config: Any, addr: str) -> bool:
    return addr.rpartition("@")[2] == config.address_domain.lower()
