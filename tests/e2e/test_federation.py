"""Delta Chat profiles on two relays (127.0.0.2 and 127.0.0.3) talking through federation."""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from relay.config import Federation
from tests.e2e.dclient import DCClient, LiveRelay
from tests.helpers import free_ports, make_config

HOSTS = ("127.0.0.2", "127.0.0.3")


def _free_on_every_host(count: int) -> list[int]:
    """Ports free on all HOSTS: peers deliver to the port they themselves are told to use."""
    for _ in range(50):
        ports = free_ports(count, HOSTS[0])
        try:
            for host in HOSTS[1:]:
                for port in ports:
                    with socket.socket() as s:
                        s.bind((host, port))
        except OSError:
            continue
        return ports
    raise RuntimeError("no ports free on every host")


@pytest.fixture
def relays(tmp_path: Path) -> Iterator[tuple[LiveRelay, LiveRelay]]:
    https, smtp = _free_on_every_host(2)
    federation = Federation(peer_https_port=https, peer_smtp_port=smtp, retry_initial=2)
    started = []
    try:
        for host in HOSTS:
            config = make_config(tmp_path / host / "data", host=host, federation=federation)
            listen = dataclasses.replace(config.listen, https=https, smtp=smtp)
            (tmp_path / host).mkdir(exist_ok=True)
            relay = LiveRelay(dataclasses.replace(config, listen=listen), tmp_path / host)
            relay.start()
            started.append(relay)
        yield started[0], started[1]
    finally:
        for relay in started:
            relay.stop()
            print(f"--- {relay.host} log (tail) ---\n{relay.log_tail()}")


def test_securejoin_and_chat_across_relays(
    relays: tuple[LiveRelay, LiveRelay], dc: DCClient
) -> None:
    first, second = relays
    alice, bob = dc.add_profile("alice", first), dc.add_profile("bob", second)
    assert alice.addr.endswith("@[127.0.0.2]") and bob.addr.endswith("@[127.0.0.3]")

    bob.securejoin(alice)
    alice.call(alice.chat_with(bob).send_text, "hello from the other relay")
    got = bob.wait_incoming(lambda m: m.text == "hello from the other relay")
    assert got.show_padlock
    bob.call(bob.chat_with(alice).send_text, "and back")
    assert alice.wait_incoming().text == "and back"
