"""Several `relay serve` processes on one PostgreSQL database, behind a real HAProxy.

The shape docs/scale-out.md describes, on loopback: the balancer on 127.0.0.1 (the mail
domain, so every link a node hands out leads through it), nodes on 127.0.0.2, .3, .4 with the
same ports, one certificate for all of them (as an operator deploys it), the nodes trusting
the PROXY protocol header from the balancer only.
"""

from __future__ import annotations

import dataclasses
import json
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

from relay.config import Config, Listen
from relay.tls import make_self_signed, write_pair
from tests.federation.conftest import with_federation
from tests.federation.pair import ChildRelay, Endpoint, shared_ports
from tests.haproxy import Frontend, HAProxy
from tests.helpers import free_ports

BALANCER = "127.0.0.1"
PINNED = ("imaps", "submissions")  # what a Delta Chat profile uses, pinned to one node


def node_config(
    data_dir: Path, node: str, ports: dict[str, int], dsn: str, name: str, **fed: Any
) -> Config:
    config = Config(mail_domain=BALANCER, data_dir=data_dir, listen=Listen(address=[node], **ports))
    listen = dataclasses.replace(config.listen, proxy_protocol=True, proxy_from=[BALANCER])
    store = dataclasses.replace(config.store, backend="postgresql", dsn=dsn, node_name=name)
    # The load tests send far faster than a person: the per-sender rate limit must not be what
    # they measure (it is per node anyway: docs/scale-out.md).
    limits = dataclasses.replace(
        config.limits, max_user_send_per_minute=60_000, max_user_send_burst_size=1000
    )
    config = dataclasses.replace(config, listen=listen, store=store, limits=limits)
    keys = {"peer_smtp_port": ports["smtp"], "peer_https_port": ports["https"], "retry_initial": 1}
    return with_federation(config, **{**keys, **fed})


@dataclass
class Cluster:
    workdir: Path
    dsn: str
    nodes_at: list[str]
    ports: dict[str, int]
    federation: dict[str, Any] = field(default_factory=dict)
    nodes: list[ChildRelay] = field(default_factory=list)
    balancer: HAProxy | None = None
    pinned: dict[tuple[str, str], int] = field(default_factory=dict)  # (node, service) -> port

    @classmethod
    def create(cls, workdir: Path, dsn: str, nodes_at: list[str], **federation: Any) -> Cluster:
        ports = shared_ports([BALANCER, *nodes_at])
        return cls(workdir, dsn, nodes_at, ports, federation)

    @property
    def front(self) -> Endpoint:
        """The relay as its users see it: the balancer's address, the shared ports."""
        config = self.nodes[0].config
        return Endpoint(
            dataclasses.replace(
                config, listen=dataclasses.replace(config.listen, address=[BALANCER])
            )
        )

    def node(self, address: str) -> ChildRelay:
        return self.nodes[self.nodes_at.index(address)]

    async def start(self) -> None:
        cert_pem, key_pem = make_self_signed(BALANCER)
        for i, address in enumerate(self.nodes_at):
            config = node_config(
                self.workdir / f"node{i}",
                address,
                self.ports,
                self.dsn,
                f"node{i}",
                **self.federation,
            )
            # One certificate on every node (self-signed mode keeps one that names the domain).
            write_pair(config.cert_path, config.key_path, cert_pem, key_pem)
            self.nodes.append(ChildRelay(config))
        for node in self.nodes:
            await node.start()
        # Not one of the shared ports: nothing binds those on the balancer's address yet, and
        # HAProxy would bind two frontends to one port (SO_REUSEPORT) and split its clients.
        extra = free_ports(len(PINNED) * len(self.nodes_at), BALANCER, self.ports.values())
        frontends = [Frontend(s, p, p, list(self.nodes_at)) for s, p in self.ports.items()]
        for address in self.nodes_at:
            for service in PINNED:
                port = extra.pop()
                self.pinned[(address, service)] = port
                name = f"{service}_{address.replace('.', '_')}"
                frontends.append(Frontend(name, port, self.ports[service], [address]))
        self.balancer = HAProxy(BALANCER, frontends, self.workdir)
        self.balancer.start()

    async def stop(self) -> None:
        if self.balancer is not None:
            self.balancer.stop()
        for node in self.nodes:
            if node.child is not None and node.child.process.poll() is None:
                await node.stop()

    def new_account(self, timeout: float = 10.0) -> dict[str, Any]:
        """POST /new through the balancer, as the invite page's link does in LAN mode."""
        url = f"http://{BALANCER}:{self.ports['http']}/new"
        request = urllib.request.Request(url, data=b"", method="POST")
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())

    def pinned_account(self, node: str) -> dict[str, Any]:
        """A /new answer whose dclogin link leads through the balancer to `node` only."""
        answer = self.new_account()
        link, _, query = answer["dclogin_url"].partition("?")
        params = dict(parse_qsl(query))
        params["ip"] = str(self.pinned[(node, "imaps")])
        params["sp"] = str(self.pinned[(node, "submissions")])
        return {**answer, "dclogin_url": f"{link}?{urlencode(params)}"}

    def logs(self) -> str:
        parts = []
        for node in self.nodes:
            if node.log_path.exists():
                tail = node.log_path.read_text(errors="replace").splitlines()[-40:]
                parts.append(f"--- {node.host} ---\n" + "\n".join(tail))
        if self.balancer is not None and self.balancer.log_path.exists():
            parts.append("--- haproxy ---\n" + self.balancer.log_path.read_text()[-3000:])
        return "\n".join(parts)
