"""The TURN server's decisions, sans-IO: datagrams and the clock go in, datagrams to send come out.

One `TurnEngine` serves every listener socket. The service feeds it
- `from_client(local, client, data, now)`: a datagram that reached a listener `local` from
  `client` (STUN requests and indications, ChannelData);
- `from_peer(relay, peer, data, now)`: a datagram that reached the relay socket `relay` of an
  allocation;
- `expire(now)`: once a second, to drop allocations, permissions and channels that ran out;
and performs what comes back: `Send(via, to, data)` (via = the local address of the socket to send
from: a listener or a relay socket) and `Close(relay)` (the allocation is gone, close its socket).
Relay sockets are made by the `PortAllocator` the service passes in (binding a UDP socket to a
numeric address does not block).

What it implements, as chatmail-turn does: Binding; Allocate (UDP, IPv4 or IPv6 by
REQUESTED-ADDRESS-FAMILY), Refresh, CreatePermission, ChannelBind, Send and Data indications,
ChannelData; the long-term credential mechanism with REST usernames, stateless nonces (438 when
stale) and FINGERPRINT; EVEN-PORT without a reservation. What it refuses: other transports (442),
RESERVATION-TOKEN and DONT-FRAGMENT (420, as RFC 8656 asks of a server without them), EVEN-PORT
with the R bit (508: no reservations), peers it must not reach (403).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import struct
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from . import stun
from .credentials import expiry_of, password_for
from .stun import Address, Message

UDP = 17
COMPREHENSION_KNOWN = {
    stun.MAPPED_ADDRESS,
    stun.USERNAME,
    stun.MESSAGE_INTEGRITY,
    stun.ERROR_CODE,
    stun.UNKNOWN_ATTRIBUTES,
    stun.CHANNEL_NUMBER,
    stun.LIFETIME,
    stun.XOR_PEER_ADDRESS,
    stun.DATA_ATTR,
    stun.REALM,
    stun.NONCE,
    stun.XOR_RELAYED_ADDRESS,
    stun.REQUESTED_ADDRESS_FAMILY,
    stun.REQUESTED_TRANSPORT,
    stun.XOR_MAPPED_ADDRESS,
    stun.EVEN_PORT,
    0x0024,  # PRIORITY (ICE), harmless
    0x0025,  # USE-CANDIDATE (ICE), harmless
}


@dataclass(frozen=True)
class Limits:
    default_lifetime: int = 600  # RFC 8656 §3.3
    max_lifetime: int = 3600
    permission_lifetime: int = 300
    channel_lifetime: int = 600
    allocations_per_user: int = 10  # per REST username (one credential)
    allocations_per_ip: int = 20  # per client address
    max_allocations: int = 1000  # in all
    permissions_per_allocation: int = 32
    channels_per_allocation: int = 32
    bytes_per_second: int = 1_250_000  # per allocation, both directions (10 Mbit/s)
    burst_seconds: float = 1.0
    nonce_lifetime: int = 600
    unauth_replies_per_second: float = 20.0  # per client IP, answers before authentication
    unauth_burst: float = 40.0


@dataclass(frozen=True)
class Send:
    via: Address  # the local address of the socket to send from
    to: Address
    data: bytes


@dataclass(frozen=True)
class Close:
    relay: Address


Action = Send | Close


class PortAllocator(Protocol):
    def open(self, local: Address, family: int, even: bool = False) -> Address | None:
        """Bind a relay socket (on an even port if asked) for a client that reached `local`;
        its address, or None."""
        ...

    def close(self, relay: Address) -> None: ...


@dataclass
class Allocation:
    local: Address
    client: Address
    username: str
    key: bytes
    relay: Address
    expires: float
    allocate_txid: bytes
    allocate_reply: bytes
    permissions: dict[str, float] = field(default_factory=dict)  # peer IP -> expiry
    channels: dict[int, tuple[Address, float]] = field(default_factory=dict)
    peer_channels: dict[Address, int] = field(default_factory=dict)
    tokens: float = 0.0
    tokens_at: float = 0.0
    bytes_relayed: int = 0
    dropped: int = 0


@dataclass
class Stats:
    allocations_made: int = 0
    packets_relayed: int = 0
    bytes_relayed: int = 0
    dropped_over_rate: int = 0
    refused: dict[int, int] = field(default_factory=dict)  # error code -> count


class TurnEngine:
    def __init__(
        self,
        *,
        realm: str,
        secret: bytes,
        ports: PortAllocator,
        limits: Limits | None = None,
        peer_allowed: Callable[[str, int], bool] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.realm = realm
        self.secret = secret
        self.ports = ports
        self.limits = limits or Limits()
        self.peer_allowed = peer_allowed or (lambda ip, port: True)
        self.clock = clock  # wall-clock seconds: REST usernames carry Unix times
        self.nonce_key = secrets.token_bytes(16)
        self.by_client: dict[tuple[Address, Address], Allocation] = {}
        self.by_relay: dict[Address, Allocation] = {}
        self.per_user: dict[str, int] = {}
        self.per_ip: dict[str, int] = {}
        self.unauth_buckets: dict[str, tuple[float, float]] = {}
        self.stats = Stats()

    # -- datagrams from clients ------------------------------------------------------------------

    def from_client(self, local: Address, client: Address, data: bytes, now: float) -> list[Action]:
        if stun.is_channel_data(data):
            return self._client_channel_data(local, client, data, now)
        try:
            msg = stun.parse(data)
        except stun.StunError:
            return []
        if msg.fingerprint_ok is False:
            return []
        if msg.cls == stun.INDICATION:
            if msg.method == stun.SEND:
                return self._send_indication(local, client, msg, now)
            return []
        if msg.cls != stun.REQUEST:
            return []  # responses are not for a server
        if msg.method == stun.BINDING:
            return self._binding(local, client, msg)
        handlers = {
            stun.ALLOCATE: self._allocate,
            stun.REFRESH: self._refresh,
            stun.CREATE_PERMISSION: self._create_permission,
            stun.CHANNEL_BIND: self._channel_bind,
        }
        handler = handlers.get(msg.method)
        if handler is None:
            return self._unauth_error(local, client, msg, 400)
        unknown = [
            kind for kind, _ in msg.attrs if kind < 0x8000 and kind not in COMPREHENSION_KNOWN
        ]
        auth = self._authenticate(local, client, msg)
        if isinstance(auth, list):
            return auth
        username, key = auth
        if unknown:
            values = b"".join(struct.pack("!H", kind) for kind in unknown[:16])
            return self._error(local, client, msg, 420, key, [(stun.UNKNOWN_ATTRIBUTES, values)])
        return handler(local, client, msg, username, key, now)

    def _binding(self, local: Address, client: Address, msg: Message) -> list[Action]:
        if not self._unauth_budget(client[0]):
            return []
        reply = Message(stun.BINDING, stun.SUCCESS, msg.txid)
        reply.add(stun.XOR_MAPPED_ADDRESS, stun.xor_address(client, msg.txid))
        return [Send(local, client, stun.encode(reply, fingerprint=msg.fingerprint_ok is True))]

    def _authenticate(
        self, local: Address, client: Address, msg: Message
    ) -> tuple[str, bytes] | list[Action]:
        """(username, key) of a request that proves its credential, or the error to send."""
        username_raw, nonce_raw = msg.get(stun.USERNAME), msg.get(stun.NONCE)
        if msg.integrity_at < 0 or username_raw is None or nonce_raw is None:
            return self._challenge(local, client, msg, 401)
        username = username_raw.decode("utf-8", "replace")
        if msg.get(stun.REALM) != self.realm.encode():
            return self._challenge(local, client, msg, 401)
        now = self.clock()
        expiry = expiry_of(username)
        if expiry is None or expiry < now:
            return self._challenge(local, client, msg, 401)
        key = stun.long_term_key(username, self.realm, password_for(self.secret, username))
        if not stun.check_integrity(msg, key):
            return self._challenge(local, client, msg, 401)
        if not self._nonce_fresh(nonce_raw, client[0], now):
            return self._challenge(local, client, msg, 438)
        return username, key

    def _challenge(self, local: Address, client: Address, msg: Message, code: int) -> list[Action]:
        """401/438 with REALM and a fresh NONCE; never bigger than what asked for it."""
        self._count(code)
        if not self._unauth_budget(client[0]):
            return []
        reply = Message(msg.method, stun.ERROR, msg.txid)
        reply.add(stun.ERROR_CODE, stun.error_code(code))
        reply.add(stun.REALM, self.realm.encode())
        reply.add(stun.NONCE, self._nonce(client[0], self.clock()))
        return [Send(local, client, stun.encode(reply, fingerprint=msg.fingerprint_ok is True))]

    def _unauth_error(self, local: Address, client: Address, msg: Message, code: int) -> list:
        self._count(code)
        if not self._unauth_budget(client[0]):
            return []
        reply = Message(msg.method, stun.ERROR, msg.txid).add(
            stun.ERROR_CODE, stun.error_code(code)
        )
        return [Send(local, client, stun.encode(reply, fingerprint=msg.fingerprint_ok is True))]

    def _error(
        self,
        local: Address,
        client: Address,
        msg: Message,
        code: int,
        key: bytes,
        extra: Iterable[tuple[int, bytes]] = (),
    ) -> list[Action]:
        self._count(code)
        reply = Message(msg.method, stun.ERROR, msg.txid).add(
            stun.ERROR_CODE, stun.error_code(code)
        )
        reply.attrs += list(extra)
        return [Send(local, client, stun.encode(reply, key=key))]

    def _success(
        self, local: Address, client: Address, msg: Message, key: bytes, attrs: list
    ) -> list[Action]:
        reply = Message(msg.method, stun.SUCCESS, msg.txid, attrs)
        return [Send(local, client, stun.encode(reply, key=key))]

    def _count(self, code: int) -> None:
        self.stats.refused[code] = self.stats.refused.get(code, 0) + 1

    def _nonce(self, ip: str, now: float) -> bytes:
        stamp = f"{int(now):08x}"
        mac = hmac.new(self.nonce_key, f"{stamp}/{ip}".encode(), hashlib.sha256).hexdigest()
        return (stamp + mac[:16]).encode()

    def _nonce_fresh(self, nonce: bytes, ip: str, now: float) -> bool:
        text = nonce.decode("ascii", "replace")
        if len(text) != 24:
            return False
        try:
            stamp = int(text[:8], 16)
        except ValueError:
            return False
        if not 0 <= now - stamp <= self.limits.nonce_lifetime:
            return False
        return hmac.compare_digest(self._nonce(ip, stamp), nonce)

    def _unauth_budget(self, ip: str) -> bool:
        """A token bucket per client IP for answers sent before authentication (no reflector)."""
        now = time.monotonic()
        tokens, at = self.unauth_buckets.get(ip, (self.limits.unauth_burst, now))
        tokens = min(
            self.limits.unauth_burst, tokens + (now - at) * self.limits.unauth_replies_per_second
        )
        if tokens < 1:
            self.unauth_buckets[ip] = (tokens, now)
            return False
        self.unauth_buckets[ip] = (tokens - 1, now)
        if len(self.unauth_buckets) > 10_000:
            self.unauth_buckets.clear()
        return True

    # -- requests --------------------------------------------------------------------------------

    def _allocate(
        self, local: Address, client: Address, msg: Message, username: str, key: bytes, now: float
    ) -> list[Action]:
        existing = self.by_client.get((local, client))
        if existing is not None:
            if existing.allocate_txid == msg.txid:  # a retransmission: the same answer
                return [Send(local, client, existing.allocate_reply)]
            return self._error(local, client, msg, 437, key)
        transport = msg.get(stun.REQUESTED_TRANSPORT)
        if transport is None:
            return self._error(local, client, msg, 400, key)
        if transport[:1] != bytes([UDP]):
            return self._error(local, client, msg, 442, key)
        family = 1
        requested_family = msg.get(stun.REQUESTED_ADDRESS_FAMILY)
        if requested_family is not None:
            family = requested_family[0] if requested_family else 0
            if family not in (1, 2):
                return self._error(local, client, msg, 440, key)
        even_port = msg.get(stun.EVEN_PORT)
        if even_port is not None and even_port[:1] and even_port[0] & 0x80:
            return self._error(local, client, msg, 508, key)  # no port reservations (R bit)
        lim = self.limits
        if (
            self.per_user.get(username, 0) >= lim.allocations_per_user
            or self.per_ip.get(client[0], 0) >= lim.allocations_per_ip
        ):
            return self._error(local, client, msg, 486, key)
        if len(self.by_client) >= lim.max_allocations:
            return self._error(local, client, msg, 508, key)
        relay = self.ports.open(local, family, even_port is not None)
        if relay is None:
            return self._error(local, client, msg, 440 if family == 2 else 508, key)
        lifetime = self._lifetime(msg)
        reply = Message(stun.ALLOCATE, stun.SUCCESS, msg.txid)
        reply.add(stun.XOR_RELAYED_ADDRESS, stun.xor_address(relay, msg.txid))
        reply.add(stun.XOR_MAPPED_ADDRESS, stun.xor_address(client, msg.txid))
        reply.add(stun.LIFETIME, stun.u32(lifetime))
        raw = stun.encode(reply, key=key)
        alloc = Allocation(
            local=local,
            client=client,
            username=username,
            key=key,
            relay=relay,
            expires=now + lifetime,
            allocate_txid=msg.txid,
            allocate_reply=raw,
            tokens=lim.bytes_per_second * lim.burst_seconds,
            tokens_at=now,
        )
        self.by_client[(local, client)] = alloc
        self.by_relay[relay] = alloc
        self.per_user[username] = self.per_user.get(username, 0) + 1
        self.per_ip[client[0]] = self.per_ip.get(client[0], 0) + 1
        self.stats.allocations_made += 1
        return [Send(local, client, raw)]

    def _lifetime(self, msg: Message) -> int:
        value = msg.get(stun.LIFETIME)
        if value is None or len(value) != 4:
            return self.limits.default_lifetime
        asked = stun.parse_u32(value)
        return max(self.limits.default_lifetime, min(asked, self.limits.max_lifetime))

    def _refresh(
        self, local: Address, client: Address, msg: Message, username: str, key: bytes, now: float
    ) -> list[Action]:
        alloc = self.by_client.get((local, client))
        if alloc is None or alloc.username != username:
            return self._error(local, client, msg, 437, key)
        value = msg.get(stun.LIFETIME)
        if value is not None and len(value) == 4 and stun.parse_u32(value) == 0:
            actions = self._success(local, client, msg, key, [(stun.LIFETIME, stun.u32(0))])
            return actions + self._drop(alloc)
        lifetime = self._lifetime(msg)
        alloc.expires = now + lifetime
        return self._success(local, client, msg, key, [(stun.LIFETIME, stun.u32(lifetime))])

    def _peer_error(self, alloc: Allocation, peer: Address) -> int | None:
        ip = ipaddress.ip_address(peer[0])
        if ip.version != ipaddress.ip_address(alloc.relay[0]).version:
            return 443
        if peer[1] == 0 or not self.peer_allowed(peer[0], peer[1]):
            return 403
        return None

    def _create_permission(
        self, local: Address, client: Address, msg: Message, username: str, key: bytes, now: float
    ) -> list[Action]:
        alloc = self.by_client.get((local, client))
        if alloc is None or alloc.username != username:
            return self._error(local, client, msg, 437, key)
        try:
            peers = [
                stun.parse_xor_address(v, msg.txid) for v in msg.get_all(stun.XOR_PEER_ADDRESS)
            ]
        except stun.StunError:
            return self._error(local, client, msg, 400, key)
        if not peers:
            return self._error(local, client, msg, 400, key)
        for peer in peers:
            code = self._peer_error(alloc, peer)
            if code is not None:
                return self._error(local, client, msg, code, key)
        new = {peer[0] for peer in peers} - alloc.permissions.keys()
        if len(alloc.permissions) + len(new) > self.limits.permissions_per_allocation:
            return self._error(local, client, msg, 508, key)
        for peer in peers:
            alloc.permissions[peer[0]] = now + self.limits.permission_lifetime
        return self._success(local, client, msg, key, [])

    def _channel_bind(
        self, local: Address, client: Address, msg: Message, username: str, key: bytes, now: float
    ) -> list[Action]:
        alloc = self.by_client.get((local, client))
        if alloc is None or alloc.username != username:
            return self._error(local, client, msg, 437, key)
        number_raw, peer_raw = msg.get(stun.CHANNEL_NUMBER), msg.get(stun.XOR_PEER_ADDRESS)
        if number_raw is None or peer_raw is None or len(number_raw) != 4:
            return self._error(local, client, msg, 400, key)
        number = struct.unpack("!H", number_raw[:2])[0]
        try:
            peer = stun.parse_xor_address(peer_raw, msg.txid)
        except stun.StunError:
            return self._error(local, client, msg, 400, key)
        if not stun.CHANNEL_MIN <= number <= stun.CHANNEL_MAX:
            return self._error(local, client, msg, 400, key)
        code = self._peer_error(alloc, peer)
        if code is not None:
            return self._error(local, client, msg, code, key)
        bound = alloc.channels.get(number)
        if (bound is not None and bound[0] != peer) or alloc.peer_channels.get(
            peer, number
        ) != number:
            return self._error(local, client, msg, 400, key)
        lim = self.limits
        if bound is None and len(alloc.channels) >= lim.channels_per_allocation:
            return self._error(local, client, msg, 508, key)
        if (
            peer[0] not in alloc.permissions
            and len(alloc.permissions) >= lim.permissions_per_allocation
        ):
            return self._error(local, client, msg, 508, key)
        alloc.channels[number] = (peer, now + lim.channel_lifetime)
        alloc.peer_channels[peer] = number
        alloc.permissions[peer[0]] = now + lim.permission_lifetime
        return self._success(local, client, msg, key, [])

    # -- data ------------------------------------------------------------------------------------

    def _send_indication(
        self, local: Address, client: Address, msg: Message, now: float
    ) -> list[Action]:
        alloc = self.by_client.get((local, client))
        peer_raw, data = msg.get(stun.XOR_PEER_ADDRESS), msg.get(stun.DATA_ATTR)
        if alloc is None or peer_raw is None or data is None:
            return []
        try:
            peer = stun.parse_xor_address(peer_raw, msg.txid)
        except stun.StunError:
            return []
        if alloc.permissions.get(peer[0], 0) < now or not self._spend(alloc, len(data), now):
            return []
        return [Send(alloc.relay, peer, data)]

    def _client_channel_data(
        self, local: Address, client: Address, data: bytes, now: float
    ) -> list[Action]:
        alloc = self.by_client.get((local, client))
        if alloc is None:
            return []
        try:
            number, payload = stun.parse_channel_data(data)
        except stun.StunError:
            return []
        bound = alloc.channels.get(number)
        if bound is None or bound[1] < now or alloc.permissions.get(bound[0][0], 0) < now:
            return []
        if not self._spend(alloc, len(payload), now):
            return []
        return [Send(alloc.relay, bound[0], payload)]

    def from_peer(self, relay: Address, peer: Address, data: bytes, now: float) -> list[Action]:
        alloc = self.by_relay.get(relay)
        if alloc is None or alloc.permissions.get(peer[0], 0) < now:
            return []
        if not self._spend(alloc, len(data), now):
            return []
        number = alloc.peer_channels.get(peer)
        if number is not None and alloc.channels[number][1] >= now:
            return [Send(alloc.local, alloc.client, stun.channel_data(number, data))]
        txid = secrets.token_bytes(12)
        indication = Message(stun.DATA, stun.INDICATION, txid)
        indication.add(stun.XOR_PEER_ADDRESS, stun.xor_address(peer, txid))
        indication.add(stun.DATA_ATTR, data)
        return [Send(alloc.local, alloc.client, stun.encode(indication, fingerprint=False))]

    def _spend(self, alloc: Allocation, size: int, now: float) -> bool:
        lim = self.limits
        cap = lim.bytes_per_second * lim.burst_seconds
        alloc.tokens = min(cap, alloc.tokens + (now - alloc.tokens_at) * lim.bytes_per_second)
        alloc.tokens_at = now
        if alloc.tokens < size:
            alloc.dropped += 1
            self.stats.dropped_over_rate += 1
            return False
        alloc.tokens -= size
        alloc.bytes_relayed += size
        self.stats.packets_relayed += 1
        self.stats.bytes_relayed += size
        return True

    # -- time ------------------------------------------------------------------------------------

    def expire(self, now: float) -> list[Action]:
        actions: list[Action] = []
        for alloc in list(self.by_client.values()):
            if alloc.expires < now:
                actions += self._drop(alloc)
                continue
            alloc.permissions = {ip: t for ip, t in alloc.permissions.items() if t >= now}
            for number, (peer, t) in list(alloc.channels.items()):
                if t < now:
                    del alloc.channels[number]
                    alloc.peer_channels.pop(peer, None)
        return actions

    def _drop(self, alloc: Allocation) -> list[Action]:
        if self.by_client.pop((alloc.local, alloc.client), None) is None:
            return []
        self.by_relay.pop(alloc.relay, None)
        for counter, name in ((self.per_user, alloc.username), (self.per_ip, alloc.client[0])):
            counter[name] -= 1
            if counter[name] <= 0:
                del counter[name]
        self.ports.close(alloc.relay)
        return [Close(alloc.relay)]

    def close_all(self) -> list[Action]:
        actions: list[Action] = []
        for alloc in list(self.by_client.values()):
            actions += self._drop(alloc)
        return actions
