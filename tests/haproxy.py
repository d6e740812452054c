"""A real HAProxy (Debian's) in front of relay nodes: TCP mode, the PROXY protocol to the nodes
(v2 unless `send_proxy` says "send-proxy" for v1), connecting from its own address.

Every frontend listens on the balancer's address with the same port as the service it fronts,
so the links and ports a node hands out (built from the mail domain, the balancer's address)
lead through it. Extra `pinned` frontends each reach one node only, for tests that need a
client on a known node while it still goes through the balancer.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from tests.helpers import require_tool, wait_for_port


@dataclass
class Frontend:
    name: str
    port: int  # on the balancer's address
    backend_port: int  # on each node
    nodes: list[str]  # node addresses it balances over
    check: str = ""  # a backend option for the health check, e.g. "smtpchk"; "" = TCP connect


@dataclass
class HAProxy:
    address: str
    frontends: list[Frontend]
    workdir: Path
    send_proxy: str = "send-proxy-v2"
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def log_path(self) -> Path:
        return self.workdir / "haproxy.log"

    def config_text(self) -> str:
        lines = [
            "global",
            "    maxconn 4096",
            "defaults",
            "    mode tcp",
            "    timeout connect 2s",
            "    timeout client 1h",  # IMAP IDLE connections live long
            "    timeout server 1h",
            "    timeout check 1s",
            "    retries 3",
            "    option redispatch",  # a connection to a dead node is tried on another
        ]
        for front in self.frontends:
            lines += [
                f"frontend {front.name}",
                f"    bind {self.address}:{front.port}",
                f"    default_backend {front.name}_nodes",
                f"backend {front.name}_nodes",
                "    balance roundrobin",
            ]
            if front.check:
                lines.append(f"    option {front.check}")
            for i, node in enumerate(front.nodes):
                # check-send-proxy: the health check starts with a header too, as the node
                # insists on one from the balancer.
                lines.append(
                    f"    server n{i} {node}:{front.backend_port} {self.send_proxy}"
                    f" source {self.address} check check-send-proxy inter 500ms fall 2 rise 1"
                )
        return "\n".join(lines) + "\n"

    def start(self) -> None:
        binary = require_tool("haproxy")
        config = self.workdir / "haproxy.cfg"
        config.write_text(self.config_text(), encoding="utf-8")
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [binary, "-db", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT
            )
        for front in self.frontends:
            wait_for_port(self.address, front.port)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
