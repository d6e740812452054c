"""Debian's Postfix as a foreign mail server on its own loopback address, for interop tests.

It receives mail for `domain` into one Maildir and sends everything else to `relayhost`
(our relay's MX port), with opportunistic STARTTLS both ways, as most of the internet does.
The instance lives in a temporary directory that the postfix user can reach.
"""

from __future__ import annotations

import grp
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.helpers import require_tool, wait_for_port

SERVICES = """\
{address}:{port} inet n - n - - smtpd
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
tlsmgr    unix  - - n 1000? 1 tlsmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
smtp      unix  - - n - - smtp
relay     unix  - - n - - smtp
showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
local     unix  - n n - - local
virtual   unix  - n n - - virtual
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
"""


@dataclass
class Postfix:
    root: Path
    address: str
    port: int

    @property
    def maildir(self) -> Path:
        return self.root / "vmail" / "inbox" / "new"

    def delivered(self) -> list[bytes]:
        if not self.maildir.is_dir():
            return []
        return [p.read_bytes() for p in sorted(self.maildir.iterdir())]

    def log(self) -> str:
        path = self.root / "maillog"
        return path.read_text(errors="replace") if path.exists() else ""


@contextmanager
def run_postfix(
    *,
    domain: str,
    address: str,
    port: int,
    relayhost: str,
    cert: Path,
    key: Path,
    extra: dict[str, str] | None = None,
    tables: dict[str, str] | None = None,
) -> Iterator[Postfix]:
    """`extra` main.cf settings override the defaults; "{conf}" in them names the config
    directory, where each of `tables` (name: text) is written (for texthash: lookups)."""
    binary = require_tool("postfix")
    uid, gid = pwd.getpwnam("postfix").pw_uid, grp.getgrnam("postfix").gr_gid
    root = Path(tempfile.mkdtemp(prefix="relay-postfix-"))
    root.chmod(0o755)  # the postfix user must reach its queue and the mailbox
    conf = root / "conf"
    conf.mkdir()
    (root / "spool").mkdir()  # root-owned; `postfix start` makes the queues inside
    for name in ("data", "vmail"):
        (root / name).mkdir()
        shutil.chown(root / name, uid, gid)
    settings = {
        "compatibility_level": "3.6",
        "queue_directory": root / "spool",
        "data_directory": root / "data",
        "maillog_file": root / "maillog",
        "maillog_file_prefixes": root,
        "myhostname": f"mx.{domain}",
        "mydomain": domain,
        "myorigin": domain,
        "mydestination": "",
        # Postfix accepts only addresses of an interface here; 127.0.0.5 is reachable on lo but
        # not assigned, so the listener names its address in master.cf instead.
        "inet_interfaces": "loopback-only",
        "inet_protocols": "ipv4",
        "mynetworks": "127.0.0.0/8",
        "relayhost": relayhost,
        "virtual_mailbox_domains": domain,
        "virtual_mailbox_base": root / "vmail",
        "virtual_mailbox_maps": "static:inbox/",
        "virtual_uid_maps": f"static:{uid}",
        "virtual_gid_maps": f"static:{gid}",
        "virtual_minimum_uid": str(uid),
        "alias_maps": "",
        "alias_database": "",
        "smtpd_tls_cert_file": cert,
        "smtpd_tls_key_file": key,
        "smtpd_tls_security_level": "may",
        "smtp_tls_security_level": "may",
        "smtputf8_enable": "no",
        "biff": "no",
        "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination",
    }
    for name, text in (tables or {}).items():
        (conf / name).write_text(text)
    settings.update({k: v.replace("{conf}", str(conf)) for k, v in (extra or {}).items()})
    (conf / "main.cf").write_text("".join(f"{k} = {v}\n" for k, v in settings.items()))
    (conf / "master.cf").write_text(SERVICES.format(address=address, port=port))
    run = [binary, "-c", str(conf)]
    started = subprocess.run([*run, "start"], capture_output=True, text=True, timeout=60)
    if started.returncode != 0:
        log = (root / "maillog").read_text() if (root / "maillog").exists() else ""
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"postfix did not start: {started.stderr}{started.stdout}{log}")
    try:
        wait_for_port(address, port, timeout=20)
        yield Postfix(root=root, address=address, port=port)
    finally:
        subprocess.run([*run, "stop"], capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)
