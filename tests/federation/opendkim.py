"""OpenDKIM (Debian's opendkim-tools) as an independent DKIM implementation.

`opendkim-testmsg` signs with a key file, and verifies by asking the system resolver for the
key. So verification runs in a network and mount namespace of its own (root, `unshare`): there
/etc/resolv.conf names 127.0.0.1, where dnsmasq serves the test's TXT records on port 53.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.helpers import free_ports, need, require_tool, wait_for_port

REPO = Path(__file__).resolve().parents[2]


def sign(message: bytes, *, domain: str, selector: str, key: Path) -> bytes:
    """The message with OpenDKIM's DKIM-Signature on top (CRLF line ends kept)."""
    result = subprocess.run(
        [require_tool("opendkim-testmsg"), "-C", "-d", domain, "-s", selector, "-k", str(key)],
        input=message, capture_output=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    return result.stdout


def new_key(directory: Path, *, domain: str, selector: str) -> tuple[Path, list[str]]:
    """A key made by opendkim-genkey: the private key file and the TXT record's strings."""
    subprocess.run(
        [require_tool("opendkim-genkey"), "-d", domain, "-s", selector, "-D", str(directory)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    record = (directory / f"{selector}.txt").read_text()
    strings = record.split('"')[1::2]
    return directory / f"{selector}.private", ["".join(strings).replace(" ", "")]


def verify(message: bytes, txt: dict[str, list[str]]) -> subprocess.CompletedProcess[str]:
    """opendkim-testmsg's verdict on `message` with these TXT records in DNS (rc 0: valid)."""
    need(os.geteuid() == 0, "OpenDKIM's check needs root for a namespace with its own DNS")
    require_tool("opendkim-testmsg")
    unshare = require_tool("unshare")
    with tempfile.TemporaryDirectory() as work:
        (Path(work) / "message").write_bytes(message)
        (Path(work) / "txt.json").write_text(json.dumps(txt))
        return subprocess.run(
            [unshare, "--net", "--mount", "--", sys.executable, "-m", __name__, work],
            cwd=REPO, capture_output=True, text=True, timeout=120,
        )  # fmt: skip


def _inside(work: Path) -> int:
    from tests.federation.dnsmasq import run_dnsmasq

    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    resolv = work / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.1\noptions attempts:1 timeout:2\n")
    subprocess.run(["mount", "--bind", str(resolv), "/etc/resolv.conf"], check=True)
    txt = json.loads((work / "txt.json").read_text())
    with run_dnsmasq(hosts={"resolver.test": "127.0.0.1"}, mx={}, txt=txt, port=53):
        result = subprocess.run(
            [require_tool("opendkim-testmsg")],
            stdin=(work / "message").open("rb"), capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    sys.stderr.write(result.stdout + result.stderr)
    return result.returncode


if __name__ == "__main__":
    sys.exit(_inside(Path(sys.argv[1])))


@contextmanager
def run_milter(*, domain: str, selector: str, key: Path, workdir: Path) -> Iterator[str]:
    """The OpenDKIM milter signing `domain`'s mail (rsa-sha256, as it is deployed), for a
    Postfix's smtpd_milters; yields "inet:127.0.0.1:port"."""
    binary = require_tool("opendkim")
    port = free_ports(1)[0]
    conf = workdir / "opendkim.conf"
    conf.write_text(
        "Syslog no\nBackground no\nMode s\nRequireSafeKeys no\n"  # the key is under /tmp
        f"Domain {domain}\nSelector {selector}\nKeyFile {key}\n"
        "Canonicalization relaxed/simple\nSignatureAlgorithm rsa-sha256\n"
        f"InternalHosts 127.0.0.0/8\nPidFile {workdir / 'opendkim.pid'}\n"
        f"Socket inet:{port}@127.0.0.1\n"
    )
    process = subprocess.Popen(
        [binary, "-f", "-x", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        wait_for_port("127.0.0.1", port, timeout=20)
        yield f"inet:127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)
