"""shadowsocks-libev's ss-local, an independent client, reaches the relay's own services through
its Shadowsocks port: IMAPS login and SMTPS submission work for each cipher. Destinations
outside the relay's services, a wrong password and a replayed connection get no byte back: the
port reads what it is sent and closes only after its probe timeout."""

from __future__ import annotations

import dataclasses
import socket
from pathlib import Path

import pytest
import trio

from relay.config import Config, Limits, Shadowsocks
from relay.shadowsocks import link
from tests.helpers import RelayServer, free_ports, make_config
from tests.shadowsocks.util import (
    HOST,
    IMAP4ViaSocks,
    SMTPViaSocks,
    read_all,
    socks_connect,
    ss_local,
)
from tests.smtp.session_helpers import encrypted

CIPHERS = ["chacha20-ietf-poly1305", "aes-256-gcm", "aes-128-gcm"]
PROBE_TIMEOUT = 2  # seconds; the default is 60
USER_PASSWORD = "proxy-pass-1"


def ss_config(data_dir: Path, cipher: str = CIPHERS[0], **sections: object) -> Config:
    (port,) = free_ports(1)
    ss = Shadowsocks(port=port, cipher=cipher, probe_timeout=PROBE_TIMEOUT)
    return make_config(data_dir, shadowsocks=ss, **sections)


@pytest.fixture(params=CIPHERS)
def relay_config(tmp_path: Path, request: pytest.FixtureRequest) -> Config:
    return ss_config(tmp_path / "data", request.param)


def ss_port(relay: RelayServer) -> int:
    assert relay.app.services is not None
    return relay.app.services.ports["shadowsocks"]


def login_and_submit(relay: RelayServer, socks: int) -> tuple[bytes, list[bytes]]:
    """Over the proxy: SMTPS login and a send to oneself, then IMAPS login and FETCH."""
    addr = f"ssproxy01@{relay.domain}"
    context = relay.ssl_client_context()
    smtp = SMTPViaSocks(lambda: socks_connect(socks, HOST, relay.port("submissions")), context)
    with smtp:
        smtp.login(addr, USER_PASSWORD)
        refused = smtp.sendmail(addr, [addr], encrypted(addr))
        assert refused == {}
    imap = IMAP4ViaSocks(lambda: socks_connect(socks, HOST, relay.port("imaps")), context)
    with imap:
        typ, _ = imap.login(addr, USER_PASSWORD)
        assert typ == "OK"
        typ, data = imap.select("INBOX")
        exists = data[0]
        _, fetched = imap.fetch("1", "(BODY.PEEK[])")
        bodies = [part[1] for part in fetched if isinstance(part, tuple)]
    return exists, bodies


async def test_imaps_login_and_smtps_submission_through_ss_local(relay_server: RelayServer) -> None:
    config = relay_server.config
    with ss_local(ss_port(relay_server), link.password(config), config.shadowsocks.cipher) as socks:
        exists, bodies = await trio.to_thread.run_sync(login_and_submit, relay_server, socks)
    assert exists == b"1"
    assert len(bodies) == 1 and b"-----BEGIN PGP MESSAGE-----" in bodies[0]
    served = relay_server.app.shadowsocks.served
    assert served["submissions"] == 1 and served["imaps"] == 1


def silent_after(sock: socket.socket, payload: bytes) -> bytes:
    with sock:
        sock.settimeout(PROBE_TIMEOUT * 10)
        sock.sendall(payload)
        return read_all(sock)


@pytest.mark.parametrize("relay_config", [CIPHERS[0]], indirect=True)
async def test_a_destination_outside_the_relays_services_gets_nothing(
    relay_server: RelayServer,
) -> None:
    config = relay_server.config
    bystander = socket.create_server((HOST, 0))  # another local service: must see no connection
    bystander.setblocking(False)
    other = bystander.getsockname()[1]
    imaps = relay_server.port("imaps")
    with (
        bystander,
        ss_local(ss_port(relay_server), link.password(config), config.shadowsocks.cipher) as socks,
    ):

        def ask(host: str, port: int) -> bytes:
            return silent_after(socks_connect(socks, host, port), b"a1 NOOP\r\n")

        for host, port in [(HOST, other), ("192.0.2.1", imaps), ("example.org", imaps),
                           (HOST, ss_port(relay_server))]:  # fmt: skip
            assert await trio.to_thread.run_sync(ask, host, port) == b"", (host, port)
        with pytest.raises(BlockingIOError):
            bystander.accept()
        # the same proxy and password do reach the relay's own IMAP
        greeting = await trio.to_thread.run_sync(
            lambda: socks_connect(socks, "localhost", relay_server.port("imap")).recv(100)
        )
    assert greeting.startswith(b"* OK")
    assert relay_server.app.shadowsocks.refused == 4


@pytest.mark.parametrize("relay_config", [CIPHERS[0]], indirect=True)
async def test_a_wrong_password_gets_no_answer(relay_server: RelayServer) -> None:
    cipher = relay_server.config.shadowsocks.cipher
    imap = relay_server.port("imap")  # plain IMAP: the relay would greet first
    with ss_local(ss_port(relay_server), "not-the-password", cipher) as socks:
        answer = await trio.to_thread.run_sync(
            lambda: silent_after(socks_connect(socks, HOST, imap), b"")
        )
    assert answer == b""
    assert relay_server.app.shadowsocks.served["imap"] == 0


async def _recorder(target: int, recorded: bytearray, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """A TCP relay in front of the Shadowsocks port that keeps what the client sent."""
    listeners = await trio.open_tcp_listeners(0, host=HOST)

    async def on_connection(client: trio.SocketStream) -> None:
        upstream = await trio.open_tcp_stream(HOST, target)
        async with client, upstream, trio.open_nursery() as nursery:

            async def pump(source: trio.abc.Stream, sink: trio.abc.Stream, keep: bool) -> None:
                while data := await source.receive_some(65536):
                    if keep:
                        recorded.extend(data)
                    await sink.send_all(data)
                nursery.cancel_scope.cancel()  # one side closed: close both

            nursery.start_soon(pump, client, upstream, True)
            nursery.start_soon(pump, upstream, client, False)

    task_status.started(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(on_connection, listeners)


@pytest.mark.parametrize("relay_config", [CIPHERS[0]], indirect=True)
async def test_a_replayed_connection_gets_no_answer(relay_server: RelayServer) -> None:
    config = relay_server.config
    imap = relay_server.port("imap")
    recorded = bytearray()
    async with trio.open_nursery() as nursery:
        front = await nursery.start(_recorder, ss_port(relay_server), recorded)
        with ss_local(front, link.password(config), config.shadowsocks.cipher) as socks:

            def greet_and_logout() -> bytes:
                with socks_connect(socks, HOST, imap) as sock:
                    greeting = sock.recv(100)
                    sock.sendall(b"a1 LOGOUT\r\n")
                    read_all(sock)
                    return greeting

            greeting = await trio.to_thread.run_sync(greet_and_logout)
        nursery.cancel_scope.cancel()
    assert greeting.startswith(b"* OK")
    assert len(recorded) > 32

    def replay() -> bytes:
        return silent_after(
            socket.create_connection((HOST, ss_port(relay_server))), bytes(recorded)
        )

    assert await trio.to_thread.run_sync(replay) == b""
    assert relay_server.app.shadowsocks.served["imap"] == 1


@pytest.mark.parametrize("relay_config", [CIPHERS[0]], indirect=True)
async def test_a_proxied_session_counts_once_against_its_clients_address(
    relay_server: RelayServer,
) -> None:
    app = relay_server.app
    app.config = dataclasses.replace(app.config, limits=Limits(max_connections_per_ip=1))
    imap = relay_server.port("imap")
    config = app.config
    with ss_local(ss_port(relay_server), link.password(config), config.shadowsocks.cipher) as socks:

        def proxied_then_direct() -> tuple[bytes, bytes]:
            with socks_connect(socks, HOST, imap) as proxied:
                first = proxied.recv(100)  # served: the proxied session is its one connection
                with socket.create_connection((HOST, imap), timeout=10) as direct:
                    second = direct.recv(100)  # the same address, one too many
            return first, second

        first, second = await trio.to_thread.run_sync(proxied_then_direct)
    assert first.startswith(b"* OK")
    assert second.startswith(b"* BYE")
