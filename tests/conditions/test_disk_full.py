"""A full data disk: the relay refuses new mail with a 4xx, keeps serving, loses nothing it
acknowledged, restarts on the full disk, and accepts mail again once mail was deleted."""

from __future__ import annotations

import contextlib
import dataclasses
import imaplib
import os
import shutil
import smtplib
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from hwctl.admin_client import connect
from relay.config import Config
from relay.web.mxdeliv import mxdeliv
from relay.web.onboard import registration_refusal
from tests.helpers import (
    RelayProcess,
    RelayServer,
    make_account,
    make_config,
    need,
    start_relay_process,
    stop_relay_process,
)
from tests.imap.util import RawClient
from tests.policy.corpus import armor, new_packet, pgp_mime, pkesk_v6

PASSWORD = "correct-horse-1"
FS_MIB = 48
FULL = (452, b"4.3.1 Insufficient system storage")


@contextlib.contextmanager
def small_ext4(size_mib: int) -> Iterator[Path]:
    """A fresh ext4 of `size_mib` on a loop device, mounted; unmounted afterwards."""
    need(
        os.geteuid() == 0 and all(shutil.which(t) for t in ("losetup", "mkfs.ext4", "mount")),
        "needs root with losetup, mkfs.ext4 and mount (util-linux, e2fsprogs)",
    )
    work = Path(tempfile.mkdtemp(prefix="diskfull-"))
    image, mnt = work / "fs.img", work / "mnt"
    mnt.mkdir()
    with open(image, "wb") as f:
        f.truncate(size_mib << 20)
    dev = subprocess.run(
        ["losetup", "-f", "--show", str(image)], capture_output=True, text=True
    ).stdout.strip()
    need(bool(dev), "no loop device available")
    try:
        subprocess.run(["mkfs.ext4", "-q", "-F", dev], check=True)
        subprocess.run(["mount", dev, str(mnt)], check=True)
        try:
            yield mnt
        finally:
            subprocess.run(["umount", str(mnt)])
    finally:
        subprocess.run(["losetup", "-d", dev])
        shutil.rmtree(work)


def message(sender: str, n: int) -> bytes:
    """About 1 MiB of PGP/MIME, different for every n."""
    payload = bytes([2, 9, 2, 16]) + n.to_bytes(4, "big") + os.urandom(760 * 1024)
    return pgp_mime(armor(pkesk_v6() + new_packet(18, payload)), sender=sender)


def send(
    relay: RelayProcess | RelayServer, sender: str, rcpt: str, data: bytes
) -> tuple[int, bytes]:
    with smtplib.SMTP_SSL(
        relay.host, relay.port("submissions"), context=relay.ssl_client_context(), timeout=60
    ) as smtp:
        smtp.login(sender, PASSWORD)
        try:
            smtp.sendmail(sender, [rcpt], data)
        except smtplib.SMTPRecipientsRefused as e:
            return e.recipients[rcpt]
        except smtplib.SMTPDataError as e:
            return e.smtp_code, e.smtp_error
    return 250, b""


def imap(relay: RelayProcess, addr: str) -> imaplib.IMAP4_SSL:
    client = imaplib.IMAP4_SSL(
        relay.host, relay.port("imaps"), ssl_context=relay.ssl_client_context(), timeout=60
    )
    client.login(addr, PASSWORD)
    return client


def bodies(relay: RelayProcess, addr: str) -> list[bytes]:
    client = imap(relay, addr)
    try:
        client.select("INBOX")
        _, data = client.uid("FETCH", "1:*", "(BODY.PEEK[TEXT])")
        return [item[1] for item in data if isinstance(item, tuple)]
    finally:
        client.logout()


def delete_all(relay: RelayProcess, addr: str) -> None:
    client = imap(relay, addr)
    try:
        client.select("INBOX")
        client.store("1:*", "+FLAGS.SILENT", "(\\Deleted)")
        client.expunge()
    finally:
        client.logout()


def body_of(data: bytes) -> bytes:
    return data.split(b"\r\n\r\n", 1)[1]


async def status_problems(config: Config) -> list[str]:
    async with connect(config.data_dir / "admin.sock") as client:
        return (await client.call("status"))["health"]["problems"]


def relay_config(mnt: Path) -> Config:
    config = make_config(mnt / "data")
    accounts = dataclasses.replace(config.accounts, min_free_disk_space=8 << 20)
    limits = dataclasses.replace(
        config.limits,
        max_mailbox_size=1 << 30,
        max_user_send_per_minute=10_000,
        max_user_send_burst_size=10_000,
    )
    return dataclasses.replace(config, accounts=accounts, limits=limits)


async def test_a_full_disk_refuses_for_now_loses_nothing_and_recovers(tmp_path: Path) -> None:
    with small_ext4(FS_MIB) as mnt:
        config = relay_config(mnt)
        relay = start_relay_process(config, tmp_path / "relay.toml")
        alice, bob = (f"{n}@{relay.domain}" for n in ("alice0001", "bob000001"))
        try:
            for addr in (alice, bob):  # the first logins create the accounts
                await trio.to_thread.run_sync(lambda a=addr: imap(relay, a).logout())
            accepted: list[bytes] = []
            for n in range(FS_MIB):
                data = message(alice, n)
                reply = await trio.to_thread.run_sync(send, relay, alice, bob, data)
                if reply[0] != 250:
                    break
                accepted.append(data)
            assert reply == FULL, reply
            assert 10 <= len(accepted) < FS_MIB
            assert "data disk full" in await status_problems(config)
            # Still serving, and every acknowledged message is there byte for byte.
            stored = await trio.to_thread.run_sync(bodies, relay, bob)
            assert stored == [body_of(d) for d in accepted]
            # A new account cannot be made on a full disk; an existing one logs in.
            with pytest.raises(imaplib.IMAP4.error, match="UNAVAILABLE"):
                await trio.to_thread.run_sync(imap, relay, f"carol0001@{relay.domain}")

            stop_relay_process(relay)  # and up again, on the full disk
            relay = start_relay_process(config, tmp_path / "relay.toml")
            stored = await trio.to_thread.run_sync(bodies, relay, bob)
            assert stored == [body_of(d) for d in accepted]

            await trio.to_thread.run_sync(delete_all, relay, bob)
            with trio.fail_after(30):  # the emptied segments go within seconds, not hours
                while True:
                    data = message(alice, 1000)
                    reply = await trio.to_thread.run_sync(send, relay, alice, bob, data)
                    if reply[0] == 250:
                        break
                    assert reply == FULL, reply
                    await trio.sleep(0.5)
            assert await trio.to_thread.run_sync(bodies, relay, bob) == [body_of(data)]
            assert "data disk full" not in await status_problems(config)
        finally:
            stop_relay_process(relay)


def watermark_above_any_disk(relay: RelayServer) -> None:
    config = relay.app.config
    accounts = dataclasses.replace(config.accounts, min_free_disk_space=1 << 60)
    relay.app.config = dataclasses.replace(config, accounts=accounts)
    relay.app.store.config = relay.app.config


async def test_every_door_says_the_disk_is_full(relay_server: RelayServer) -> None:
    """SMTP at RCPT, /mxdeliv before the body, IMAP APPEND, a first login, /new."""
    alice = f"alice0002@{relay_server.domain}"
    assert await make_account(relay_server.app.store, alice, PASSWORD)
    client = await RawClient.connect(relay_server)
    await client.read_line()
    await client.command(f"a LOGIN {alice} {PASSWORD}\r\n".encode())
    watermark_above_any_disk(relay_server)

    reply = await trio.to_thread.run_sync(send, relay_server, alice, alice, message(alice, 1))
    assert reply == FULL
    response = await mxdeliv(
        relay_server.app, [("X-Mail-From", "x@[192.0.2.1]"), ("X-Mail-To", alice)], b"x\r\n"
    )
    assert (response.status, response.body) == (507, b"452 4.3.1 Insufficient system storage")
    data = b"From: " + alice.encode() + b"\r\n\r\nhello\r\n"
    [no] = await client.command(b"b APPEND INBOX {%d+}\r\n" % len(data) + data + b"\r\n")
    assert no == b"b NO [OVERQUOTA] Insufficient system storage, try again later.\r\n"
    newcomer = await RawClient.connect(relay_server)
    await newcomer.read_line()
    [no] = await newcomer.command(
        f"c LOGIN carol0002@{relay_server.domain} {PASSWORD}\r\n".encode()
    )
    assert no == b"c NO [UNAVAILABLE] Insufficient system storage, try again later.\r\n"
    assert registration_refusal(relay_server.app) == (
        503,
        "This relay is full and cannot take new accounts right now.",
    )
    assert relay_server.app.store.storage_problems() == ["data disk full"]
    for c in (client, newcomer):
        await c.aclose()
