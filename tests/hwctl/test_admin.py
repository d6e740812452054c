"""The relay's admin socket and the power-cut safe factory reset, without the rest of the relay."""

from __future__ import annotations

import dataclasses
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from hwctl.admin_client import AdminError, connect
from relay import admin
from relay.config import Config
from relay.core.accounts import authenticate
from relay.core.admin import local, reset
from relay.core.admin.errors import AdminError as RefusedByRelay
from tests.helpers import make_account
from tests.hwctl.fakes import running_app


async def test_status_onboarding_and_account_created_event(tmp_path: Path) -> None:
    async with running_app(tmp_path) as app:
        sock = app.config.data_dir / "admin.sock"
        async with trio.open_nursery() as nursery:
            await nursery.start(admin.serve_admin, app, sock)
            assert stat.S_IMODE(sock.stat().st_mode) == 0o600
            with trio.fail_after(5):
                async with connect(sock) as client:
                    status = await client.call("status")
                    assert status["accounts"] == 0
                    assert status["domain"] == "127.0.0.1" and status["lan"] is True
                    assert status["ports"]["imaps"] == app.config.listen.imaps
                    await client.call("subscribe")
                    invite = await client.call("new_onboarding")
                    assert invite["mode"] == "dclogin"
                    assert invite["url"].startswith("dclogin:") and invite["addr"].endswith(
                        "@[127.0.0.1]"
                    )
                    # A service logs in with the invite's credentials: the first login creates it.
                    password = invite["url"].split("p=")[1].split("&")[0]
                    result = await authenticate(
                        app, "127.0.0.1", invite["addr"], password, via="test"
                    )
                    assert result.created
                    event = await client.events.receive()
                    assert event == {
                        "type": "account_created",
                        "addr": invite["addr"],
                        "onboarding": True,
                        "accounts": 1,
                    }
                    with pytest.raises(AdminError, match="unknown method"):
                        await client.call("no_such_method")
            nursery.cancel_scope.cancel()
        assert not sock.exists()


async def test_domain_mode_hands_out_the_dcaccount_link(tmp_path: Path) -> None:
    async with running_app(tmp_path, domain="chat.example.org") as app:
        sock = app.config.data_dir / "admin.sock"
        async with trio.open_nursery() as nursery:
            await nursery.start(admin.serve_admin, app, sock)
            with trio.fail_after(5):
                async with connect(sock) as client:
                    invite = await client.call("new_onboarding")
            nursery.cancel_scope.cancel()
        assert invite == {
            "mode": "dcaccount",
            "url": f"DCACCOUNT:https://chat.example.org:{app.config.listen.https}/new",
            "addr": None,
            "proxy_url": None,  # Shadowsocks is off
        }


async def test_factory_reset_writes_the_flag_and_asks_for_a_restart(tmp_path: Path) -> None:
    async with running_app(tmp_path) as app:
        sock = app.config.data_dir / "admin.sock"
        with pytest.raises(BaseException) as caught:  # noqa: PT011 (an ExceptionGroup from the nursery)
            async with trio.open_nursery() as nursery:
                await nursery.start(admin.serve_admin, app, sock)
                with trio.fail_after(5):
                    async with connect(sock) as client:
                        await client.call("subscribe")
                        assert await client.call("factory_reset") == {"scheduled": True}
                        assert (await client.events.receive())["type"] == "factory_reset"
                await trio.sleep(5)
        assert caught.group_contains(admin.RestartRequested)
        assert (app.config.data_dir / reset.RESET_FLAG).exists()


def populate(data_dir: Path, files: int = 20) -> None:
    (data_dir / "tls").mkdir(parents=True, exist_ok=True)
    (data_dir / "tls" / "key.pem").write_text("secret")
    (data_dir / "index.sqlite").write_text("accounts")
    mail = data_dir / "segments"
    mail.mkdir(exist_ok=True)
    for i in range(files):
        (mail / f"{i:06d}.seg").write_bytes(b"x" * 64)


def test_reset_wipes_everything_but_the_config_and_removes_the_flag_last(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    populate(data_dir)
    config_file = data_dir / "relay.toml"
    config_file.write_text("# kept")
    config = dataclasses.replace(Config.embedded_default(data_dir), source=config_file)
    assert reset.apply_pending_factory_reset(config) is False  # no flag: nothing happens
    assert (data_dir / "index.sqlite").exists()
    reset.schedule_factory_reset(config)
    assert reset.apply_pending_factory_reset(config) is True
    assert sorted(p.name for p in data_dir.iterdir()) == ["relay.toml"]
    assert reset.apply_pending_factory_reset(config) is False


WIPE_SCRIPT = """
import os, pathlib, signal, sys
from relay.config import Config
from relay.core.admin import reset
# A power cut after the first `cut_after` deletions: the process dies as it would, mid-wipe.
cut_after, deleted, unlink = int(sys.argv[2]), [0], os.unlink
def unlink_then_cut(*args, **kwargs):
    unlink(*args, **kwargs)
    deleted[0] += 1
    if deleted[0] == cut_after:
        os.kill(os.getpid(), signal.SIGKILL)
os.unlink = unlink_then_cut
reset.apply_pending_factory_reset(Config.embedded_default(pathlib.Path(sys.argv[1])))
"""


def test_a_wipe_killed_half_way_is_finished_at_the_next_start(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    populate(data_dir, files=2000)
    config = Config.embedded_default(data_dir)
    reset.schedule_factory_reset(config)
    segments = data_dir / "segments"
    child = subprocess.run(
        [sys.executable, "-c", WIPE_SCRIPT, str(data_dir), "1000"], timeout=120, check=False
    )
    assert child.returncode == -signal.SIGKILL, "the wipe finished before the cut"
    left = len(os.listdir(segments)) if segments.exists() else 0
    print(f"killed the wipe with {left} of 2000 mail files left")
    assert 0 < left < 2000, "the kill did not land in the middle of the wipe"
    assert (data_dir / reset.RESET_FLAG).exists(), "the flag must outlive an interrupted wipe"
    assert reset.apply_pending_factory_reset(config) is True
    assert list(data_dir.iterdir()) == []


async def test_identity_export_restores_keys_config_and_accounts_on_a_fresh_box(tmp_path) -> None:
    async with running_app(tmp_path / "old") as old:
        assert await make_account(old.store, "abcdefghi@[127.0.0.1]", "password123")
        config_file = old.config.data_dir / "relay.toml"
        config_file.write_text("mail_domain = '127.0.0.1'\n")
        old.config = dataclasses.replace(old.config, source=config_file)
        (old.config.data_dir / "dkim").mkdir()
        (old.config.data_dir / "dkim" / "default.private").write_text("dkim key")
        (old.config.data_dir / "segments").mkdir()
        (old.config.data_dir / "segments" / "1.seg").write_text("mail must not be backed up")
        identity = await local.identity_export(old)
    assert sorted(identity["files"]) == [
        "config/relay.toml",
        "dkim/default.private",
        "tls/cert.pem",
        "tls/key.pem",
    ]
    assert [a["addr"] for a in identity["accounts"]] == ["abcdefghi@[127.0.0.1]"]

    async with running_app(tmp_path / "new") as new:
        new.config = dataclasses.replace(new.config, source=new.config.data_dir / "relay.toml")
        assert await local.identity_import(new, identity) == {"restored": 4, "accounts": 1}
        login = await authenticate(
            new, "127.0.0.1", "abcdefghi@[127.0.0.1]", "password123", via="test"
        )
        assert login.ok and not login.created  # the same password works on the new box
    assert (new.config.data_dir / "dkim" / "default.private").read_text() == "dkim key"
    assert (new.config.data_dir / "relay.toml").read_text() == "mail_domain = '127.0.0.1'\n"
    assert new.admin.restart_requested.is_set()  # the relay restarts to load keys and config
    with pytest.raises(RefusedByRelay):
        await local.identity_import(new, {"files": {"../../etc/passwd": ""}})
