"""The TURN engine without sockets: the long-term credential mechanism with REST usernames
(401, 438 and their exact codes), allocations, permissions, channels, relaying, limits, expiry."""

from __future__ import annotations

import struct

import pytest

from relay.turn import stun
from relay.turn.credentials import mint
from relay.turn.engine import Close, Limits, Send, TurnEngine

REALM = "relay.example"
SECRET = b"north"
LOCAL = ("198.51.100.1", 3478)
CLIENT = ("203.0.113.5", 40000)
PEER = ("203.0.113.9", 5000)
NOW = 1_800_000_000.0


class FakePorts:
    def __init__(self) -> None:
        self.next = 50000
        self.open_ones: set = set()

    def open(self, local, family, even=False):
        if family != 1:
            return None
        self.next += 2 if even else 1
        relay = (LOCAL[0], self.next)
        self.open_ones.add(relay)
        return relay

    def close(self, relay):
        self.open_ones.discard(relay)


class Client:
    """A minimal TURN client on the codec, to drive the engine."""

    def __init__(self, engine: TurnEngine, addr=CLIENT, creds=None) -> None:
        self.engine, self.addr = engine, addr
        self.username, self.password = creds or mint(SECRET, NOW)
        self.nonce: bytes | None = None
        self.realm = REALM
        self.n = 0

    def txid(self) -> bytes:
        self.n += 1
        return struct.pack("!4xQ", self.n)

    def raw(self, method, attrs, *, auth=True, txid=None) -> bytes:
        msg = stun.Message(method, stun.REQUEST, txid or self.txid(), list(attrs))
        if not auth:
            return stun.encode(msg)
        key = stun.long_term_key(self.username, self.realm, self.password)
        msg.add(stun.USERNAME, self.username.encode()).add(stun.REALM, self.realm.encode())
        msg.add(stun.NONCE, self.nonce or b"x")
        return stun.encode(msg, key=key)

    def send(self, data: bytes, now=NOW) -> list:
        return self.engine.from_client(LOCAL, self.addr, data, now)

    def request(self, method, attrs=(), *, now=NOW, txid=None) -> stun.Message:
        """A request, retried once after the 401 that hands out the nonce."""
        for _ in range(2):
            out = self.send(self.raw(method, attrs, txid=txid), now)
            assert len(out) == 1 and isinstance(out[0], Send) and out[0].to == self.addr
            reply = stun.parse(out[0].data)
            if (
                reply.cls == stun.ERROR
                and stun.parse_error_code(reply.get(stun.ERROR_CODE)) in (401, 438)
                and self.nonce is None
            ):
                self.nonce = reply.get(stun.NONCE)
                continue
            return reply
        return reply

    def allocate(self, **kw) -> stun.Message:
        return self.request(stun.ALLOCATE, [(stun.REQUESTED_TRANSPORT, bytes([17, 0, 0, 0]))], **kw)


def code(reply: stun.Message) -> int | None:
    if reply.cls != stun.ERROR:
        return None
    return stun.parse_error_code(reply.get(stun.ERROR_CODE))


@pytest.fixture
def engine() -> TurnEngine:
    return TurnEngine(
        realm=REALM,
        secret=SECRET,
        ports=FakePorts(),
        clock=lambda: NOW,
        peer_allowed=lambda ip, port: not ip.startswith("127."),
    )


def test_binding_answers_the_mapped_address(engine):
    out = engine.from_client(
        LOCAL, CLIENT, stun.encode(stun.Message(stun.BINDING, stun.REQUEST, b"t" * 12)), NOW
    )
    reply = stun.parse(out[0].data)
    assert reply.cls == stun.SUCCESS
    assert stun.parse_xor_address(reply.get(stun.XOR_MAPPED_ADDRESS), b"t" * 12) == CLIENT


def test_unauthenticated_allocate_gets_401_with_realm_and_nonce(engine):
    client = Client(engine)
    out = client.send(
        client.raw(stun.ALLOCATE, [(stun.REQUESTED_TRANSPORT, bytes([17, 0, 0, 0]))], auth=False)
    )
    reply = stun.parse(out[0].data)
    assert code(reply) == 401
    assert reply.get(stun.REALM) == REALM.encode() and len(reply.get(stun.NONCE)) == 24
    assert reply.integrity_at < 0  # no key is known yet


def test_allocate_with_rest_credentials(engine):
    client = Client(engine)
    reply = client.allocate()
    assert code(reply) is None and reply.cls == stun.SUCCESS
    key = stun.long_term_key(client.username, REALM, client.password)
    assert stun.check_integrity(reply, key) and reply.fingerprint_ok
    relay = stun.parse_xor_address(reply.get(stun.XOR_RELAYED_ADDRESS), reply.txid)
    assert relay[0] == LOCAL[0]
    assert stun.parse_xor_address(reply.get(stun.XOR_MAPPED_ADDRESS), reply.txid) == CLIENT
    assert stun.parse_u32(reply.get(stun.LIFETIME)) == 600


def test_expired_username_gets_401(engine):
    client = Client(engine, creds=mint(SECRET, NOW - 6 * 86400))  # expired a day ago
    assert code(client.allocate()) == 401
    assert not engine.by_client


def test_wrong_secret_gets_401(engine):
    client = Client(engine, creds=mint(b"not the secret", NOW))
    assert code(client.allocate()) == 401
    assert not engine.by_client


def test_non_rest_username_gets_401(engine):
    client = Client(engine, creds=("alice", "pw"))
    assert code(client.allocate()) == 401


def test_coturn_style_expiry_colon_name_username_works(engine):
    from relay.turn.credentials import password_for

    name = f"{int(NOW) + 60}:alice"
    client = Client(engine, creds=(name, password_for(SECRET, name)))
    assert client.allocate().cls == stun.SUCCESS


def test_stale_nonce_gets_438_and_a_fresh_nonce(engine):
    client = Client(engine)
    client.allocate()
    engine.clock = lambda: NOW + 601  # type: ignore[method-assign]
    out = client.send(client.raw(stun.REFRESH, []), NOW + 601)
    reply = stun.parse(out[0].data)
    assert code(reply) == 438
    client.nonce = reply.get(stun.NONCE)
    assert client.request(stun.REFRESH, now=NOW + 601).cls == stun.SUCCESS


def test_forged_nonce_gets_438(engine):
    client = Client(engine)
    client.nonce = b"%08x" % int(NOW) + b"0" * 16
    out = client.send(client.raw(stun.ALLOCATE, [(stun.REQUESTED_TRANSPORT, bytes([17, 0, 0, 0]))]))
    assert code(stun.parse(out[0].data)) == 438


def test_second_allocate_is_437_but_a_retransmission_gets_the_same_answer(engine):
    client = Client(engine)
    first = client.allocate(txid=b"A" * 12)
    again = client.allocate(txid=b"A" * 12)
    assert first.raw == again.raw
    assert code(client.allocate()) == 437


@pytest.mark.parametrize(
    "attrs, expected",
    [
        ([], 400),  # no REQUESTED-TRANSPORT
        ([(stun.REQUESTED_TRANSPORT, bytes([6, 0, 0, 0]))], 442),  # TCP
        (
            [
                (stun.REQUESTED_TRANSPORT, bytes([17, 0, 0, 0])),
                (stun.REQUESTED_ADDRESS_FAMILY, bytes([2, 0, 0, 0])),
            ],
            440,
        ),
        ([(stun.REQUESTED_TRANSPORT, bytes([17, 0, 0, 0])), (stun.EVEN_PORT, b"\x80")], 508),
        (
            [(stun.REQUESTED_TRANSPORT, bytes([17, 0, 0, 0])), (stun.RESERVATION_TOKEN, b"t" * 8)],
            420,
        ),
        ([(stun.REQUESTED_TRANSPORT, bytes([17, 0, 0, 0])), (stun.DONT_FRAGMENT, b"")], 420),
    ],
)
def test_allocate_refusals(engine, attrs, expected):
    reply = Client(engine).request(stun.ALLOCATE, attrs)
    assert code(reply) == expected
    if expected == 420:
        assert reply.get(stun.UNKNOWN_ATTRIBUTES)


def test_even_port_without_reservation_is_granted(engine):
    reply = Client(engine).request(
        stun.ALLOCATE, [(stun.REQUESTED_TRANSPORT, bytes([17, 0, 0, 0])), (stun.EVEN_PORT, b"\0")]
    )
    relay = stun.parse_xor_address(reply.get(stun.XOR_RELAYED_ADDRESS), reply.txid)
    assert relay[1] % 2 == 0


def test_allocations_per_user_are_capped_with_486(engine):
    engine.limits = Limits(allocations_per_user=2)
    creds = mint(SECRET, NOW)
    for port in (1, 2):
        assert (
            Client(engine, addr=("203.0.113.5", port), creds=creds).allocate().cls == stun.SUCCESS
        )
    assert code(Client(engine, addr=("203.0.113.5", 3), creds=creds).allocate()) == 486


def test_allocations_per_ip_are_capped_with_486(engine):
    engine.limits = Limits(allocations_per_ip=1)
    assert Client(engine, addr=("203.0.113.5", 1)).allocate().cls == stun.SUCCESS
    assert code(Client(engine, addr=("203.0.113.5", 2)).allocate()) == 486
    assert Client(engine, addr=("203.0.113.6", 1)).allocate().cls == stun.SUCCESS


def test_lifetime_is_capped(engine):
    reply = Client(engine).request(
        stun.ALLOCATE,
        [(stun.REQUESTED_TRANSPORT, bytes([17, 0, 0, 0])), (stun.LIFETIME, stun.u32(10**6))],
    )
    assert stun.parse_u32(reply.get(stun.LIFETIME)) == 3600


def test_refresh_and_requests_without_an_allocation(engine):
    client = Client(engine)
    assert code(client.request(stun.REFRESH)) == 437
    assert code(
        client.request(
            stun.CREATE_PERMISSION, [(stun.XOR_PEER_ADDRESS, stun.xor_address(PEER, b"x" * 12))]
        )
    ) in (437, 400)
    client.allocate()
    reply = client.request(stun.REFRESH, [(stun.LIFETIME, stun.u32(1200))])
    assert stun.parse_u32(reply.get(stun.LIFETIME)) == 1200


def test_refresh_zero_deletes_the_allocation(engine):
    client = Client(engine)
    client.allocate()
    relay = next(iter(engine.by_relay))
    out = client.send(client.raw(stun.REFRESH, [(stun.LIFETIME, stun.u32(0))]))
    assert Close(relay) in out and not engine.by_client and not engine.ports.open_ones


def _permission(client: Client, peer) -> stun.Message:
    txid = client.txid()
    return client.request(
        stun.CREATE_PERMISSION, [(stun.XOR_PEER_ADDRESS, stun.xor_address(peer, txid))], txid=txid
    )


def test_send_indication_and_data_indication_round_trip(engine):
    client = Client(engine)
    client.allocate()
    relay = next(iter(engine.by_relay))
    txid = b"s" * 12
    send = stun.Message(stun.SEND, stun.INDICATION, txid)
    send.add(stun.XOR_PEER_ADDRESS, stun.xor_address(PEER, txid)).add(stun.DATA_ATTR, b"ping")
    assert client.send(stun.encode(send)) == []  # no permission yet: dropped
    assert engine.from_peer(relay, PEER, b"early", NOW) == []
    assert _permission(client, PEER).cls == stun.SUCCESS
    assert client.send(stun.encode(send)) == [Send(relay, PEER, b"ping")]
    out = engine.from_peer(relay, PEER, b"pong", NOW)
    assert len(out) == 1 and out[0].via == LOCAL and out[0].to == CLIENT
    data = stun.parse(out[0].data)
    assert (data.method, data.cls) == (stun.DATA, stun.INDICATION)
    assert data.get(stun.DATA_ATTR) == b"pong"
    assert stun.parse_xor_address(data.get(stun.XOR_PEER_ADDRESS), data.txid) == PEER
    # another port of a permitted IP may send too (permissions are per IP); other IPs may not
    assert engine.from_peer(relay, (PEER[0], 6000), b"x", NOW)
    assert engine.from_peer(relay, ("203.0.113.10", 5000), b"x", NOW) == []


def test_channel_bind_and_channel_data(engine):
    client = Client(engine)
    client.allocate()
    relay = next(iter(engine.by_relay))
    txid = client.txid()
    reply = client.request(
        stun.CHANNEL_BIND,
        [
            (stun.CHANNEL_NUMBER, b"\x40\x01\0\0"),
            (stun.XOR_PEER_ADDRESS, stun.xor_address(PEER, txid)),
        ],
        txid=txid,
    )
    assert reply.cls == stun.SUCCESS
    assert client.send(stun.channel_data(0x4001, b"media")) == [Send(relay, PEER, b"media")]
    assert engine.from_peer(relay, PEER, b"back", NOW) == [
        Send(LOCAL, CLIENT, stun.channel_data(0x4001, b"back"))
    ]
    assert client.send(stun.channel_data(0x4002, b"unbound")) == []
    # the same channel for another peer, or another channel for the same peer: 400
    txid = client.txid()
    other = client.request(
        stun.CHANNEL_BIND,
        [
            (stun.CHANNEL_NUMBER, b"\x40\x01\0\0"),
            (stun.XOR_PEER_ADDRESS, stun.xor_address(("203.0.113.10", 1), txid)),
        ],
        txid=txid,
    )
    assert code(other) == 400


@pytest.mark.parametrize("number", [0x3FFF, 0x8000, 0xFFFF])
def test_channel_numbers_out_of_range_get_400(engine, number):
    client = Client(engine)
    client.allocate()
    txid = client.txid()
    reply = client.request(
        stun.CHANNEL_BIND,
        [
            (stun.CHANNEL_NUMBER, struct.pack("!HH", number, 0)),
            (stun.XOR_PEER_ADDRESS, stun.xor_address(PEER, txid)),
        ],
        txid=txid,
    )
    assert code(reply) == 400


def test_forbidden_peer_gets_403_and_wrong_family_443(engine):
    client = Client(engine)
    client.allocate()
    assert code(_permission(client, ("127.0.0.1", 25))) == 403
    assert code(_permission(client, ("2001:db8::1", 25))) == 443
    assert code(_permission(client, (PEER[0], 0))) == 403


def test_permission_and_channel_caps(engine):
    engine.limits = Limits(permissions_per_allocation=2, channels_per_allocation=1)
    client = Client(engine)
    client.allocate()
    assert _permission(client, ("203.0.113.20", 1)).cls == stun.SUCCESS
    assert _permission(client, ("203.0.113.21", 1)).cls == stun.SUCCESS
    assert code(_permission(client, ("203.0.113.22", 1))) == 508


def test_bandwidth_cap_drops_beyond_the_rate(engine):
    engine.limits = Limits(bytes_per_second=10_000, burst_seconds=1.0)
    client = Client(engine)
    client.allocate()
    relay = next(iter(engine.by_relay))
    _permission(client, PEER)
    sent = sum(len(engine.from_peer(relay, PEER, b"x" * 1000, NOW)) for _ in range(20))
    assert sent == 10 and engine.stats.dropped_over_rate == 10
    assert engine.from_peer(relay, PEER, b"x" * 1000, NOW + 0.5)  # refilled half a second later


def test_expiry_drops_allocations_permissions_and_channels(engine):
    client = Client(engine)
    client.allocate()
    relay = next(iter(engine.by_relay))
    _permission(client, PEER)
    assert engine.expire(NOW + 301) == []
    assert engine.from_peer(relay, PEER, b"x", NOW + 301) == []  # the permission ran out
    assert engine.expire(NOW + 601) == [Close(relay)]
    assert not engine.by_client and not engine.per_user and not engine.per_ip


def test_unauthenticated_replies_are_rate_limited_per_ip(engine):
    engine.limits = Limits(unauth_replies_per_second=0.001, unauth_burst=5)
    request = stun.encode(stun.Message(stun.BINDING, stun.REQUEST, b"t" * 12))
    answered = sum(len(engine.from_client(LOCAL, CLIENT, request, NOW)) for _ in range(50))
    assert answered == 5


def test_garbage_and_responses_are_ignored(engine):
    assert engine.from_client(LOCAL, CLIENT, b"\x00" * 3, NOW) == []
    assert engine.from_client(LOCAL, CLIENT, b"GET / HTTP/1.1\r\n\r\n", NOW) == []
    response = stun.encode(stun.Message(stun.BINDING, stun.SUCCESS, b"t" * 12))
    assert engine.from_client(LOCAL, CLIENT, response, NOW) == []
