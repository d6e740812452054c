"""One address holds at most `max_connections_per_ip` connections summed over every service: a
client cannot take the cap on SMTP, again on IMAP and again on HTTP."""

from __future__ import annotations

import dataclasses

import trio

from tests.helpers import RelayServer

CAP = 4
BUSY = {
    "smtp": b"421 4.7.0 Error: too many connections from your address\r\n",
    "imap": b"* BYE Too many connections from your address.\r\n",
    "http": b"HTTP/1.1 503 ",
}


async def first_bytes(stream: trio.SocketStream) -> bytes:
    with trio.fail_after(5):
        return await stream.receive_some(4096)


async def test_the_cap_counts_connections_of_all_services_together(
    relay_server: RelayServer,
) -> None:
    app = relay_server.app
    limits = dataclasses.replace(app.config.limits, max_connections_per_ip=CAP)
    app.config = dataclasses.replace(app.config, limits=limits)

    async def connect(service: str) -> trio.SocketStream:
        return await trio.open_tcp_stream(relay_server.host, relay_server.port(service))

    held = [await connect("smtp"), await connect("smtp"), await connect("imap")]
    assert (await first_bytes(held[0])).startswith(b"220 ")
    assert (await first_bytes(held[1])).startswith(b"220 ")
    assert (await first_bytes(held[2])).startswith(b"* OK")
    held.append(await connect("http"))  # the fourth: still within the cap
    with trio.fail_after(5):
        while app.admission.per_ip.count("127.0.0.1") < CAP:
            await trio.sleep(0.01)

    for service, busy in BUSY.items():
        extra = await connect(service)
        assert (await first_bytes(extra)).startswith(busy), service
        await extra.aclose()

    await held.pop(0).aclose()  # a freed SMTP slot can be taken by IMAP
    with trio.fail_after(5):
        while True:
            again = await connect("imap")
            if (await first_bytes(again)).startswith(b"* OK"):
                break
            await again.aclose()
            await trio.sleep(0.05)
    await again.aclose()
    for stream in held:
        await stream.aclose()
