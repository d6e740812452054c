"""Federation over IPv6: a LAN relay on 127.0.0.2 and one whose address is ::1 (its users
are user@[IPv6:::1]) exchange mail over /mxdeliv and over SMTP; an MX whose exchanger has
AAAA records only is found at its IPv6 address, after the IPv4 ones where it has both, asking
a DNS server on IPv4 or on IPv6."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from relay.config import Federation
from relay.resolver import Target, find_targets
from tests.federation.dnsmasq import run_dnsmasq
from tests.federation.pair import Relay, relay_config, shared_ports
from tests.federation.test_lan_pair import body_of, exchange

V4_IP, V6_IP = "127.0.0.2", "::1"


@pytest.fixture
def ports() -> dict[str, int]:
    return shared_ports([V4_IP, V6_IP])


@pytest.mark.parametrize("carrier", ["https", "smtp"])
async def test_mail_goes_both_ways_between_an_ipv4_and_an_ipv6_relay(
    tmp_path: Path, ports: dict[str, int], nursery: trio.Nursery, carrier: str
) -> None:
    closed = {"https": "smtp", "smtp": "https"}[carrier]  # the peers' other port is closed
    v4 = Relay(relay_config(tmp_path / "v4", V4_IP, {**ports, closed: 0}))
    v6 = Relay(relay_config(tmp_path / "v6", V6_IP, {**ports, closed: 0}))
    await v4.start(nursery)
    await v6.start(nursery)
    assert v6.address("bob123456") == "bob123456@[IPv6:::1]"
    sent, got = await exchange(v4, v6, f"to IPv6 over {carrier}")
    assert body_of(got) == body_of(sent)
    sent, got = await exchange(v6, v4, f"from IPv6 over {carrier}")
    assert body_of(got) == body_of(sent)
    for relay in (v4, v6):
        [line] = relay.log_lines("federation-delivered")
        assert f"via={carrier}" in line


async def test_an_ipv6_domain_literal_is_its_own_exchanger() -> None:
    targets = await find_targets("[IPv6:::1]", Federation())
    assert targets == [Target(host="::1", addresses=("::1",), literal=True)]


@pytest.mark.parametrize("dns_server", ["127.0.0.1", "::1"])
async def test_mx_lookup_finds_aaaa_records_after_a_records(dns_server: str) -> None:
    # dnsmasq is waited for by the A record of the first name
    hosts = {"mx.dual.test": "127.0.0.3,::1", "mx.v6only.test": "::1"}
    mx = {"v6only.test": "mx.v6only.test", "dual.test": "mx.dual.test"}
    with run_dnsmasq(hosts=hosts, mx=mx, txt={}, address=dns_server) as resolver:
        fed = Federation(resolver=resolver)
        assert await find_targets("v6only.test", fed) == [
            Target(host="mx.v6only.test", addresses=("::1",))
        ]
        assert await find_targets("dual.test", fed) == [
            Target(host="mx.dual.test", addresses=("127.0.0.3", "::1"))
        ]
