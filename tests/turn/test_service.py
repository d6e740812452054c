"""The TURN service in a running relay: METADATA mints credentials for it, the secret is kept in
the data dir, and a client on the STUN codec allocates over real UDP sockets and relays
datagrams to a UDP peer and back, by Send/Data indications and by ChannelData."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import ipaddress
import os
import struct
import time

import pytest
import trio

from relay.config import Turn
from relay.turn import stun
from relay.turn.credentials import SECRET_FILE, mint
from tests.helpers import serving
from tests.turn.util import read_turn_metadata, turn_config

HOST = "127.0.0.1"


@pytest.fixture
def relay_config(tmp_path):
    return turn_config(tmp_path / "data")


class UdpTurnClient:
    def __init__(self, server, username: str, password: str, realm: str) -> None:
        self.server, self.username, self.password, self.realm = server, username, password, realm
        self.v6 = ":" in server[0]
        family = trio.socket.AF_INET6 if self.v6 else trio.socket.AF_INET
        self.sock = trio.socket.socket(family, trio.socket.SOCK_DGRAM)
        self.nonce = b""
        self.n = 0

    async def bind(self) -> None:
        await self.sock.bind(("::1" if self.v6 else HOST, 0))

    async def allocate(self) -> tuple[str, int]:
        """The relayed transport address of a new UDP allocation, of the client's own family
        (an IPv6 client asks for it: RFC 6156 makes IPv4 the default)."""
        attrs = [(stun.REQUESTED_TRANSPORT, bytes([17, 0, 0, 0]))]
        if self.v6:
            attrs.append((stun.REQUESTED_ADDRESS_FAMILY, bytes([2, 0, 0, 0])))
        reply = await self.request(stun.ALLOCATE, attrs)
        assert reply.cls == stun.SUCCESS, reply
        return stun.parse_xor_address(reply.get(stun.XOR_RELAYED_ADDRESS), reply.txid)

    def key(self) -> bytes:
        return stun.long_term_key(self.username, self.realm, self.password)

    async def request(self, method: int, attrs: list, txid: bytes | None = None) -> stun.Message:
        for _ in range(2):
            self.n += 1
            txid = txid or struct.pack("!4xQ", self.n)
            msg = stun.Message(method, stun.REQUEST, txid, list(attrs))
            msg.add(stun.USERNAME, self.username.encode()).add(stun.REALM, self.realm.encode())
            msg.add(stun.NONCE, self.nonce or b"-")
            await self.sock.sendto(stun.encode(msg, key=self.key()), self.server)
            reply = await self.receive()
            if (
                reply.cls == stun.ERROR
                and stun.parse_error_code(reply.get(stun.ERROR_CODE)) in (401, 438)
                and not self.nonce
            ):
                self.nonce = reply.get(stun.NONCE) or b""
                txid = None
                continue
            return reply
        return reply

    async def receive(self) -> stun.Message:
        with trio.fail_after(5):
            data, _ = await self.sock.recvfrom(65535)
        return stun.parse(data)

    async def receive_raw(self) -> bytes:
        with trio.fail_after(5):
            data, _ = await self.sock.recvfrom(65535)
        return data


async def test_metadata_mints_rest_credentials_for_the_running_server(relay_server):
    value = await read_turn_metadata(relay_server)
    assert value is not None
    host, port, username, password = value.decode().split(":")
    assert (host, int(port)) == (HOST, relay_server.config.turn.port)
    assert abs(int(username) - (time.time() + 5 * 86400)) < 60
    secret_path = relay_server.config.data_dir / SECRET_FILE
    assert oct(os.stat(secret_path).st_mode & 0o777) == "0o600"
    secret = secret_path.read_bytes().strip()
    expected = base64.b64encode(hmac.new(secret, username.encode(), hashlib.sha1).digest())
    assert password.encode() == expected
    assert relay_server.app.services.ports["turn"] == relay_server.config.turn.port


async def test_relays_to_a_udp_peer_and_back(relay_server):
    config = relay_server.config
    host, port, username, password = (await read_turn_metadata(relay_server)).decode().split(":")
    client = UdpTurnClient((host, int(port)), username, password, config.mail_domain)
    await client.bind()
    reply = await client.request(stun.ALLOCATE, [(stun.REQUESTED_TRANSPORT, bytes([17, 0, 0, 0]))])
    assert reply.cls == stun.SUCCESS, reply
    assert stun.check_integrity(reply, client.key()) and reply.fingerprint_ok
    relay = stun.parse_xor_address(reply.get(stun.XOR_RELAYED_ADDRESS), reply.txid)
    low, high = config.turn.relay_port_range()
    assert relay[0] == HOST and low <= relay[1] <= high

    peer = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
    await peer.bind((HOST, 0))
    peer_addr = peer.getsockname()
    txid = b"p" * 12
    reply = await client.request(
        stun.CREATE_PERMISSION, [(stun.XOR_PEER_ADDRESS, stun.xor_address(peer_addr, txid))], txid
    )
    assert reply.cls == stun.SUCCESS
    send = stun.Message(stun.SEND, stun.INDICATION, b"s" * 12)
    send.add(stun.XOR_PEER_ADDRESS, stun.xor_address(peer_addr, b"s" * 12))
    send.add(stun.DATA_ATTR, b"hello peer")
    await client.sock.sendto(stun.encode(send), client.server)
    with trio.fail_after(5):
        data, source = await peer.recvfrom(2048)
    assert data == b"hello peer" and tuple(source) == relay
    await peer.sendto(b"hello client", relay)
    indication = await client.receive()
    assert (indication.method, indication.cls) == (stun.DATA, stun.INDICATION)
    assert indication.get(stun.DATA_ATTR) == b"hello client"

    txid = b"c" * 12
    reply = await client.request(
        stun.CHANNEL_BIND,
        [
            (stun.CHANNEL_NUMBER, b"\x40\x00\0\0"),
            (stun.XOR_PEER_ADDRESS, stun.xor_address(peer_addr, txid)),
        ],
        txid,
    )
    assert reply.cls == stun.SUCCESS
    await client.sock.sendto(stun.channel_data(0x4000, b"x" * 1200), client.server)
    with trio.fail_after(5):
        data, _ = await peer.recvfrom(2048)
    assert data == b"x" * 1200
    await peer.sendto(b"y" * 1200, relay)
    assert stun.parse_channel_data(await client.receive_raw()) == (0x4000, b"y" * 1200)

    reply = await client.request(stun.REFRESH, [(stun.LIFETIME, stun.u32(0))])
    assert reply.cls == stun.SUCCESS
    peer.close()


async def test_wrong_secret_and_expired_username_get_401(relay_server):
    config = relay_server.config
    server = (HOST, config.turn.port)
    for username, password in (
        mint(b"wrong", time.time()),
        mint((config.data_dir / SECRET_FILE).read_bytes().strip(), time.time() - 6 * 86400),
    ):
        client = UdpTurnClient(server, username, password, config.mail_domain)
        await client.bind()
        reply = await client.request(
            stun.ALLOCATE, [(stun.REQUESTED_TRANSPORT, bytes([17, 0, 0, 0]))]
        )
        assert reply.cls == stun.ERROR and stun.parse_error_code(reply.get(stun.ERROR_CODE)) == 401


async def test_loopback_peers_are_refused_unless_allowed(tmp_path):
    config = turn_config(tmp_path / "data", allow_loopback_peers=False)
    async with serving(config) as relay:
        host, port, username, password = (await read_turn_metadata(relay)).decode().split(":")
        client = UdpTurnClient((host, int(port)), username, password, config.mail_domain)
        await client.bind()
        assert (
            await client.request(stun.ALLOCATE, [(stun.REQUESTED_TRANSPORT, bytes([17, 0, 0, 0]))])
        ).cls == stun.SUCCESS
        txid = b"p" * 12
        reply = await client.request(
            stun.CREATE_PERMISSION,
            [(stun.XOR_PEER_ADDRESS, stun.xor_address((HOST, 9999), txid))],
            txid,
        )
        assert stun.parse_error_code(reply.get(stun.ERROR_CODE)) == 403
        # never to the relay's own service ports either
        txid = b"q" * 12
        imaps = (HOST, config.listen.imaps)
        reply = await client.request(
            stun.CREATE_PERMISSION, [(stun.XOR_PEER_ADDRESS, stun.xor_address(imaps, txid))], txid
        )
        assert stun.parse_error_code(reply.get(stun.ERROR_CODE)) == 403


async def test_the_ipv6_wildcard_takes_ipv4_clients_as_the_tcp_services_do(tmp_path):
    config = turn_config(tmp_path / "data")
    config = dataclasses.replace(config, listen=dataclasses.replace(config.listen, address=["::"]))
    async with serving(config) as relay:
        _, port, username, password = (await read_turn_metadata(relay)).decode().split(":")
        for host in (HOST, "::1"):
            client = UdpTurnClient((host, int(port)), username, password, config.mail_domain)
            await client.bind()
            relayed_host, _ = await client.allocate()
            assert ipaddress.ip_address(relayed_host).version == (6 if client.v6 else 4)
            client.sock.close()


async def test_port_off_and_external_server(tmp_path):
    for turn, expect in (
        (Turn(port=0), None),
        (Turn(external="turn.example.org:3478", secret="north"), "turn.example.org:3478:"),
    ):
        config = turn_config(tmp_path / f"data{expect is None}")
        import dataclasses

        config = dataclasses.replace(config, turn=turn)
        async with serving(config) as relay:
            assert relay.app.services is not None
            assert "turn" not in relay.app.services.running
            value = await read_turn_metadata(relay)
            if expect is None:
                assert value is None
            else:
                assert value.decode().startswith(expect)
                username, password = value.decode().split(":")[2:]
                assert (
                    password
                    == base64.b64encode(
                        hmac.new(b"north", username.encode(), hashlib.sha1).digest()
                    ).decode()
                )


async def test_admin_status_reports_the_turn_server(relay_server):
    from relay.core.admin.status import turn_status

    status = turn_status(relay_server.app)
    assert status["running"] is True and status["port"] == relay_server.config.turn.port
    assert status["allocations"] == 0
