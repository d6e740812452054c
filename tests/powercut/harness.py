"""Power cuts under load: every acknowledged message survives, none twice, no expunge undone.

    .venv/bin/python -m tests.powercut.harness [--cuts 50] [--ignore-fsync[=files]] [--torn]

Each round mounts powercutfs (tests/powercut/powercutfs.py) over a backing directory, starts a
real relay (`python -m relay serve`) with its data dir on the mount, and checks over IMAP what
the previous cut left: every message whose SMTP 250 arrived is in each accepted recipient's
INBOX byte for byte, none is there twice, and none whose UID EXPUNGE was answered OK is back.
Then it loads the relay (senders submitting PGP/MIME-shaped messages over SMTPS to local
recipients, IMAP clients flagging and expunging some of them) and cuts the power at a random
moment: the file system freezes (everything after that instant fails with EIO), the relay is
SIGKILLed, the file system is unmounted and drops everything that was never synced. The next
round starts the relay again on what is left. After the last cut a final round only checks.

With --ignore-fsync the file system ignores every fsync (a relay without syncs), with
--ignore-fsync=files those of files only (directory entries stay durable, data does not): the
same run must then report lost mail, or the harness proves nothing. Exit status: 0 when nothing was lost,
damaged, duplicated or resurrected and the relay started after every cut, 1 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import imaplib
import os
import random
import re
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from relay import config as config_mod  # noqa: E402
from relay.config import Config  # noqa: E402
from tests.helpers import client_context, make_config  # noqa: E402
from tests.policy.corpus import armor, new_packet, pgp_mime, pkesk_v6  # noqa: E402

PASSWORD = "powercut-password-1"
SENDERS = ("cutsnd001", "cutsnd002", "cutsnd003")
RECIPIENTS = ("cutrcv001", "cutrcv002", "cutrcv003", "cutrcv004")
# What the relay may add to a stored copy (it adds nothing today; it removes Received and the
# like at submission, which these messages do not carry). Everything else must be identical.
ADDED_BY_RELAY = (b"received", b"return-path", b"delivered-to")
MESSAGE_ID = re.compile(rb"^Message-ID:\s*(<[^>\r\n]+>)", re.IGNORECASE | re.MULTILINE)

Key = tuple[str, str]  # (recipient address, Message-ID)


def message(sender: str, msgid: str, rnd: random.Random) -> bytes:
    """Shaped like Delta Chat's PGP/MIME (as bench/imap_latency sends), 1 KiB to about 64 KiB."""
    size = int(1024 * 2 ** rnd.uniform(0, 6))
    payload = bytes([2, 9, 2, 16]) + rnd.randbytes(size * 8 // 11)
    data = pgp_mime(armor(pkesk_v6() + new_packet(18, payload)), sender=sender)
    return data.replace(b"Message-ID: <0b1c2d3e@localhost>", f"Message-ID: {msgid}".encode())


def comparable(stored: bytes) -> bytes:
    """The stored copy without the header fields the relay may add."""
    head, sep, body = stored.partition(b"\r\n\r\n")
    fields = re.split(rb"\r\n(?![ \t])", head)
    kept = [f for f in fields if f.split(b":", 1)[0].strip().lower() not in ADDED_BY_RELAY]
    return b"\r\n".join(kept) + sep + body


@dataclass
class Ledger:
    """What the clients were told, across all cuts."""

    sent: dict[str, bytes] = field(default_factory=dict)  # Message-ID -> the message as sent
    acked: set[Key] = field(default_factory=set)  # 250 arrived for this recipient
    in_flight: set[Key] = field(default_factory=set)  # sent, no answer before the cut
    expunged: set[Key] = field(default_factory=set)  # UID EXPUNGE answered OK
    expunging: set[Key] = field(default_factory=set)  # flagged or expunge sent, no OK yet
    gone: set[Key] = field(default_factory=set)  # absent after a restart: must stay absent
    lost: set[Key] = field(default_factory=set)
    resurrected: set[Key] = field(default_factory=set)
    uids: dict[Key, tuple[str, str]] = field(default_factory=dict)  # (UIDVALIDITY, UID) seen
    renumbered: set[Key] = field(default_factory=set)
    damaged: set[Key] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class CutReport:
    cut: int
    acknowledged: int  # 250s that arrived in this round (one per recipient)
    expunges: int  # expunges acknowledged in this round
    expected: int = 0  # acknowledged and not expunged, over all rounds so far
    found: int = 0
    lost: int = 0
    damaged: int = 0
    duplicated: int = 0
    resurrected: int = 0
    renumbered: int = 0  # found under another UIDVALIDITY/UID than a client saw before
    new_identity: bool = False  # the relay came back with another TLS certificate
    recovery_cuts: int = 0  # further cuts while the relay was starting up after this one
    started: bool = True

    def line(self) -> str:
        if not self.started:
            return f"cut {self.cut:3}: THE RELAY DID NOT START"
        return (
            f"cut {self.cut:3}: acknowledged {self.acknowledged:4}, expunged {self.expunges:3}, "
            f"expected {self.expected:5}, found {self.found:5}, lost {self.lost}, "
            f"damaged {self.damaged}, duplicated {self.duplicated}, resurrected {self.resurrected}"
            f", renumbered {self.renumbered}"
            + (", NEW TLS CERTIFICATE" if self.new_identity else "")
            + (f" (+{self.recovery_cuts} cut during recovery)" if self.recovery_cuts else "")
        )


@dataclass
class Totals:
    acknowledged: int = 0
    expunges: int = 0
    lost: int = 0
    damaged: int = 0
    duplicated: int = 0
    resurrected: int = 0
    renumbered: int = 0
    recovery_cuts: int = 0
    new_identities: int = 0
    failed_starts: int = 0
    cuts: list[CutReport] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (
            self.lost
            or self.damaged
            or self.duplicated
            or self.resurrected
            or self.renumbered
            or self.new_identities
            or self.failed_starts
        )

    def line(self) -> str:
        found = self.cuts[-1].found if self.cuts else 0
        return (
            f"total over {len(self.cuts)} cuts: acknowledged {self.acknowledged}, "
            f"expunged {self.expunges}, found at the end {found}, lost {self.lost}, "
            f"damaged {self.damaged}, duplicated {self.duplicated}, "
            f"resurrected {self.resurrected}, renumbered {self.renumbered}, "
            f"new TLS certificates {self.new_identities}, failed starts {self.failed_starts}, "
            f"cuts during recovery {self.recovery_cuts}"
        )


class Mount:
    """powercutfs as a child process."""

    def __init__(self, backing: Path, mountpoint: Path, log: Path, *, ignore_fsync: str | None):
        self.backing, self.mountpoint, self.log = backing, mountpoint, log
        self.ignore_fsync = ignore_fsync
        self.process: subprocess.Popen[bytes] | None = None

    def mount(self, torn_seed: int | None) -> None:
        cmd = [sys.executable, "-m", "tests.powercut.powercutfs", str(self.backing),
               str(self.mountpoint)]  # fmt: skip
        if self.ignore_fsync is not None:
            cmd.append(f"--ignore-fsync={self.ignore_fsync}")
        if torn_seed is not None:
            cmd += ["--torn", str(torn_seed)]
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=out)
        deadline = time.monotonic() + 20
        while not os.path.ismount(self.mountpoint):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"powercutfs did not mount; see {self.log}")
            time.sleep(0.02)

    def cut(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGUSR1)

    def unmount(self) -> None:
        assert self.process is not None
        for attempt in range(50):
            done = subprocess.run(["fusermount3", "-u", str(self.mountpoint)], capture_output=True)
            if done.returncode == 0 or not os.path.ismount(self.mountpoint):
                break
            time.sleep(0.1)
            if attempt == 49:
                subprocess.run(["umount", "-l", str(self.mountpoint)], check=True)
        self.process.wait(timeout=120)
        if self.process.returncode != 0:
            raise RuntimeError(f"powercutfs exited with {self.process.returncode}; see {self.log}")


class Load:
    """Senders and expungers in threads, until stop is set or the relay goes away."""

    def __init__(self, config: Config, ledger: Ledger, rnd: random.Random, round_no: int):
        self.config, self.ledger, self.round_no = config, ledger, round_no
        self.ctx = client_context(config)
        self.host = config.listen.address[0]
        self.domain = config.address_domain
        self.stop = threading.Event()
        self.acked = 0
        self.expunges = 0
        self.errors: list[str] = []
        self.seeds = [rnd.getrandbits(64) for _ in range(len(SENDERS) + len(RECIPIENTS))]
        self.threads = [
            threading.Thread(target=self._guard, args=(self._send, s, i), daemon=True)
            for i, s in enumerate(SENDERS)
        ] + [
            threading.Thread(
                target=self._guard, args=(self._expunge, r, len(SENDERS) + i), daemon=True
            )  # fmt: skip
            for i, r in enumerate(RECIPIENTS)
        ]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def join(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)

    def _guard(self, fn, user: str, n: int) -> None:  # type: ignore[no-untyped-def]
        try:
            fn(user, random.Random(self.seeds[n]))
        except (OSError, smtplib.SMTPException, imaplib.IMAP4.error, ssl.SSLError, EOFError):
            pass  # the power went: the relay is gone
        except Exception as e:  # noqa: BLE001 - reported, not swallowed
            self.errors.append(f"{user}: {e!r}")

    def _send(self, user: str, rnd: random.Random) -> None:
        sender = f"{user}@{self.domain}"
        led = self.ledger
        n = 0
        with smtplib.SMTP_SSL(self.host, self.config.listen.submissions, context=self.ctx,
                              timeout=30) as smtp:  # fmt: skip
            smtp.login(sender, PASSWORD)
            while not self.stop.is_set():
                n += 1
                msgid = f"<r{self.round_no}.{user}.{n}.{rnd.getrandbits(32):08x}@powercut>"
                rcpts = [
                    f"{r}@{self.domain}" for r in rnd.sample(RECIPIENTS, rnd.choice((1, 1, 2)))
                ]
                data = message(sender, msgid, rnd)
                keys = {(r, msgid) for r in rcpts}
                with led.lock:
                    led.sent[msgid] = data
                    led.in_flight |= keys
                try:
                    refused = smtp.sendmail(sender, rcpts, data)
                except smtplib.SMTPRecipientsRefused:
                    refused = dict.fromkeys(rcpts)
                except (smtplib.SMTPDataError, smtplib.SMTPSenderRefused):
                    refused = dict.fromkeys(rcpts)  # a 4xx/5xx answer: nothing was accepted
                with led.lock:
                    led.in_flight -= keys
                    for key in keys:
                        if key[0] not in refused:
                            led.acked.add(key)
                            self.acked += 1

    def _expunge(self, user: str, rnd: random.Random) -> None:
        addr = f"{user}@{self.domain}"
        led = self.ledger
        imap = imaplib.IMAP4_SSL(self.host, self.config.listen.imaps, ssl_context=self.ctx,
                                 timeout=30)  # fmt: skip
        imap.login(addr, PASSWORD)
        _ok(imap.select("INBOX"))
        validity = _uidvalidity(imap)
        while not self.stop.is_set():
            time.sleep(rnd.uniform(0.1, 0.5))
            seen = _message_ids(imap)
            with led.lock:
                for u, m in seen:
                    led.uids.setdefault((addr, m), (validity, u))
            by_uid = {u: m for u, m in seen if (addr, m) not in led.expunged}
            chosen = [u for u in by_uid if rnd.random() < 0.1]
            if not chosen:
                continue
            keys = {(addr, by_uid[u]) for u in chosen}
            uids = ",".join(chosen)
            with led.lock:
                led.expunging |= keys
            _ok(imap.uid("STORE", uids, "+FLAGS.SILENT", r"(\Deleted)"))
            _ok(imap.uid("EXPUNGE", uids))
            with led.lock:
                led.expunging -= keys
                led.expunged |= keys
                self.expunges += len(keys)


def _ok(answer: tuple[str, list]) -> list:  # type: ignore[type-arg]
    typ, data = answer
    if typ != "OK":
        raise imaplib.IMAP4.error(f"{typ} {data!r}")
    return data


def _uidvalidity(imap: imaplib.IMAP4) -> str:
    _, data = imap.response("UIDVALIDITY")
    return data[0].decode() if data and data[0] else "?"


def _message_ids(imap: imaplib.IMAP4) -> list[tuple[str, str]]:
    """(UID, Message-ID) of each message in the selected mailbox."""
    data = _ok(imap.uid("FETCH", "1:*", "(UID BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])"))
    out = []
    for item in data:
        if isinstance(item, tuple):
            uid = re.search(rb"UID (\d+)", item[0])
            mid = MESSAGE_ID.search(item[1])
            if uid and mid:
                out.append((uid[1].decode(), mid[1].decode()))
    return out


def mailbox(
    config: Config, ctx: ssl.SSLContext, addr: str
) -> dict[str, list[tuple[tuple[str, str], bytes]]]:
    """Message-ID -> every copy in addr's INBOX as ((UIDVALIDITY, UID), bytes); logging in
    creates the account if it is gone."""
    imap = imaplib.IMAP4_SSL(config.listen.address[0], config.listen.imaps, ssl_context=ctx,
                             timeout=60)  # fmt: skip
    try:
        imap.login(addr, PASSWORD)
        _ok(imap.select("INBOX", readonly=True))
        validity = _uidvalidity(imap)
        found: dict[str, list[tuple[tuple[str, str], bytes]]] = {}
        for item in _ok(imap.uid("FETCH", "1:*", "(UID BODY.PEEK[])")):
            if isinstance(item, tuple):
                uid = re.search(rb"UID (\d+)", item[0])
                mid = MESSAGE_ID.search(item[1].partition(b"\r\n\r\n")[0])
                where = (validity, uid[1].decode() if uid else "?")
                found.setdefault(mid[1].decode() if mid else "?", []).append((where, item[1]))
        return found
    finally:
        with contextlib.suppress(Exception):
            imap.logout()


def verify(config: Config, ledger: Ledger, report: CutReport) -> None:
    """Check what the relay holds now against what the clients were told."""
    ctx = client_context(config)  # the certificate may be new if the cut took the old one
    led = ledger
    expected = led.acked - led.expunged - led.gone - led.lost - led.expunging
    report.expected = len(expected)
    held: set[Key] = set()
    for user in RECIPIENTS:
        addr = f"{user}@{config.address_domain}"
        for mid, copies in mailbox(config, ctx, addr).items():
            key = (addr, mid)
            held.add(key)
            report.duplicated += len(copies) - 1
            if (key in led.expunged or key in led.gone) and key not in led.resurrected:
                report.resurrected += 1
                led.resurrected.add(key)
            if key not in led.damaged and any(
                comparable(c) != led.sent.get(mid) for _, c in copies
            ):
                report.damaged += 1
                led.damaged.add(key)
            where = copies[0][0]
            if led.uids.setdefault(key, where) != where and key not in led.renumbered:
                report.renumbered += 1
                led.renumbered.add(key)
    report.found = len(expected & held)
    for key in expected - held:
        report.lost += 1
        led.lost.add(key)
    # Fates the clients could not know: a 250 or an expunge OK that the cut swallowed.
    for key in led.in_flight | led.expunging:
        (led.acked if key in held else led.gone).add(key)
    led.in_flight.clear()
    led.expunging.clear()
    led.acked |= held - led.expunged - led.gone  # whatever is there now must stay


def relay_config(data_dir: Path) -> Config:
    config = make_config(data_dir)
    limits = dataclasses.replace(
        config.limits, max_user_send_per_minute=1_000_000, max_user_send_burst_size=100_000
    )
    return dataclasses.replace(config, limits=limits)


def spawn_relay(config: Config, workdir: Path, round_no: int) -> subprocess.Popen[bytes]:
    """`relay serve` on the mount, its output appended to relay.log."""
    path = workdir / "relay.toml"
    path.write_text(config_mod.to_toml(config), encoding="utf-8")
    with open(workdir / "relay.log", "ab") as log:
        log.write(f"--- round {round_no}\n".encode())
        log.flush()
        cmd = [sys.executable, "-m", "relay", "serve", "--config", str(path)]
        return subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=log)


def wait_ready(config: Config, process: subprocess.Popen[bytes], timeout: float = 90) -> bool:
    """Until every port answers (recovery after a cut may replay a lot on a slow machine);
    False if the relay exits or takes longer."""
    deadline = time.monotonic() + timeout
    for port in config.listen.services().values():
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                return False
            try:
                socket.create_connection((config.listen.address[0], port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
    return True


def log_tail(workdir: Path, lines: int = 25) -> str:
    text = (workdir / "relay.log").read_text(errors="replace").splitlines()
    return "\n".join("  | " + line for line in text[-lines:])


def run(
    workdir: Path,
    *,
    cuts: int,
    seed: int,
    ignore_fsync: str | None = None,
    torn: bool = False,
    max_load: float = 3.0,
    recovery_cuts: float = 0.2,
    out=print,  # type: ignore[no-untyped-def]
) -> Totals:
    """`cuts` power cuts under load; after each, with probability `recovery_cuts`, one more
    while the relay is starting up (recovering) on what the cut left."""
    rnd = random.Random(seed)
    backing, mnt = workdir / "backing", workdir / "mnt"
    backing.mkdir(parents=True, exist_ok=True)
    mnt.mkdir(parents=True, exist_ok=True)
    config = relay_config(mnt / "data")
    fs = Mount(backing, mnt, workdir / "powercutfs.log", ignore_fsync=ignore_fsync)
    ledger = Ledger()
    totals = Totals()
    identity = b""  # the relay's TLS certificate, as the clients last saw it
    for round_no in range(cuts + 1):
        if round_no > 0 and rnd.random() < recovery_cuts:
            fs.mount(rnd.getrandbits(32) if torn else None)
            process = spawn_relay(config, workdir, round_no)
            try:
                time.sleep(rnd.uniform(0.0, 1.5))
                fs.cut()
            finally:
                process.kill()
                process.wait()
                fs.unmount()
            totals.cuts[-1].recovery_cuts += 1
            totals.recovery_cuts += 1
        fs.mount(rnd.getrandbits(32) if torn else None)
        relay = None
        try:
            relay = spawn_relay(config, workdir, round_no)
            started = wait_ready(config, relay)
            if not started:
                out(f"  the relay did not start after cut {round_no}; relay.log ends:")
                out(log_tail(workdir))
            if round_no > 0:
                report = totals.cuts[-1]
                if not started:
                    report.started = False
                    totals.failed_starts += 1
                else:
                    verify(config, ledger, report)
                    report.new_identity = config.cert_path.read_bytes() != identity
                    totals.new_identities += report.new_identity
                    identity = config.cert_path.read_bytes()
                out(report.line())
                totals.lost += report.lost
                totals.damaged += report.damaged
                totals.duplicated += report.duplicated
                totals.resurrected += report.resurrected
                totals.renumbered += report.renumbered
            if not started:
                break
            if round_no == 0:  # the recipients' accounts (created at their first login)
                identity = config.cert_path.read_bytes()
                ctx = client_context(config)
                for user in RECIPIENTS:
                    mailbox(config, ctx, f"{user}@{config.address_domain}")
            if round_no == cuts:
                relay.terminate()
                relay.wait(timeout=30)
                break
            load = Load(config, ledger, rnd, round_no)
            load.start()
            time.sleep(rnd.uniform(0.2, max_load))
            fs.cut()  # the power goes: nothing after this instant reaches the disk
            relay.kill()
            relay.wait(timeout=30)
            load.join()
            for error in load.errors:
                out(f"  client error: {error}")
            totals.cuts.append(CutReport(round_no + 1, load.acked, load.expunges))
            totals.acknowledged += load.acked
            totals.expunges += load.expunges
        finally:
            if relay is not None and relay.poll() is None:
                relay.kill()
                relay.wait()
            fs.unmount()
    out(totals.line())
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cuts", type=int, default=50)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument(
        "--ignore-fsync",
        nargs="?",
        const="all",
        choices=("all", "files"),
        help="control: ignore every fsync (all) or those of files (files)",
    )
    parser.add_argument("--torn", action="store_true", help="half the unsynced pages survive a cut")
    parser.add_argument("--max-load", type=float, default=3.0, help="longest load before a cut, s")
    parser.add_argument("--workdir", type=Path, help="kept afterwards (default: a temporary one)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: kill the relay, unmount
    seed = args.seed if args.seed is not None else random.SystemRandom().getrandbits(32)
    mode = f"ignore-fsync={args.ignore_fsync} (control)" if args.ignore_fsync else "normal"
    print(f"powercut harness: {args.cuts} cuts, mode {mode}, torn {args.torn}, seed {seed}")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="powercut-"))
    totals = None
    try:
        totals = run(
            workdir, cuts=args.cuts, seed=seed, ignore_fsync=args.ignore_fsync, torn=args.torn,
            max_load=args.max_load,
        )  # fmt: skip
    finally:
        if args.workdir is None and totals is not None and totals.clean:
            shutil.rmtree(workdir, ignore_errors=True)
        elif args.workdir is None:
            print(f"kept for inspection: {workdir} (relay.log, powercutfs.log, backing/)")
    sys.exit(0 if totals.clean else 1)


if __name__ == "__main__":
    main()
