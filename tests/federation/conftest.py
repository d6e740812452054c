"""Small shared pieces of the federation tests: federation keys on a config, ports, waiting."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from relay.config import Config
from tests.helpers import free_ports

SENDER_IP = "127.0.0.2"
PEER_IP = "127.0.0.3"


def with_federation(config: Config, **keys: Any) -> Config:
    """`config` with these keys of its [federation] section changed."""
    return dataclasses.replace(config, federation=dataclasses.replace(config.federation, **keys))


def closed_port(host: str = PEER_IP) -> int:
    return free_ports(1, host)[0]


async def wait_until(
    predicate: Callable[[], Awaitable[bool]], timeout: float = 10.0, step: float = 0.02
) -> None:
    with trio.fail_after(timeout):
        while not await predicate():
            await trio.sleep(step)
