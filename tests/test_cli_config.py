"""`relay config get/set/list` as an operator uses it, also against a running relay."""

from __future__ import annotations

import json
import smtplib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from relay import cli, config_edit
from relay import config as config_mod
from relay.config import Config, Limits
from tests.helpers import client_context, make_config, start_relay_process, stop_relay_process


@pytest.fixture
def relay_toml(tmp_path: Path) -> Path:
    """A config as `relay init` writes it, with an operator's comment added."""
    path = tmp_path / "relay.toml"
    config = make_config(tmp_path / "data")
    path.write_text("# my relay\n" + config_mod.to_toml(config), encoding="utf-8")
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_get_prints_values_as_they_are_written_in_the_file(
    relay_toml: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    where = ("--config", str(relay_toml))
    assert run(capsys, "config", "get", "limits.max_message_size", *where) == (0, "31457280\n", "")
    assert run(capsys, "config", "get", "accounts.jit", *where)[1] == "true\n"
    assert run(capsys, "config", "get", "mail_domain", *where)[1] == '"127.0.0.1"\n'
    assert run(capsys, "config", "get", "listen.address", *where)[1] == '["127.0.0.1"]\n'
    code, out, err = run(capsys, "config", "get", "limits.nope", *where)
    assert code == 2 and "limits.nope: unknown key" in err


def test_set_writes_validated_changes_and_says_what_changed(
    relay_toml: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(
        capsys, "config", "set", "limits.max_message_size", "2M",
        "accounts.registration_open", "no", "--config", str(relay_toml),
    )  # fmt: skip
    assert code == 0, err
    assert out.splitlines() == [
        "accounts.registration_open: true -> false",
        "limits.max_message_size: 31457280 -> 2097152",
        "the relay is not running: the change applies at its next start",
    ]
    config = config_mod.load(relay_toml)
    assert config.limits.max_message_size == 2 << 20
    assert config.accounts.registration_open is False
    assert relay_toml.read_text().startswith("# my relay\n")

    code, out, _ = run(capsys, "config", "set", "--reset", "limits.max_message_size",
                       "--config", str(relay_toml))  # fmt: skip
    assert code == 0 and out.startswith("limits.max_message_size: 2097152 -> 31457280\n")
    assert "max_message_size" not in relay_toml.read_text()
    code, out, _ = run(capsys, "config", "set", "accounts.jit", "true", "--config", str(relay_toml))
    assert (code, out) == (0, "nothing changed\n")


def test_set_refuses_a_bad_value_with_the_loaders_message_and_keeps_the_file(
    relay_toml: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = relay_toml.read_bytes()
    code, out, err = run(capsys, "config", "set", "limits.max_message_size", "100",
                         "--config", str(relay_toml))  # fmt: skip
    assert code == 2 and out == ""
    assert err == "relay: config error: limits.max_message_size: too small (100 bytes)\n"
    code, _, err = run(capsys, "config", "set", "accounts.jit", "--config", str(relay_toml))
    assert code == 2 and "KEY VALUE pairs" in err
    code, _, err = run(capsys, "config", "set", "accounts.jitt", "1", "--config", str(relay_toml))
    assert code == 2 and "accounts.jitt: unknown key" in err
    assert relay_toml.read_bytes() == before


def test_without_a_config_file_get_shows_the_embedded_default_and_set_explains(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert run(capsys, "config", "get", "listen.smtp") == (0, "2525\n", "")
    code, out, err = run(capsys, "config", "set", "listen.smtp", "2626")
    assert code == 2 and out == ""
    assert "embedded default" in err and "relay init" in err and "--config" in err
    assert list(tmp_path.iterdir()) == []  # nothing written anywhere


def test_list_prints_every_key_and_its_lines_can_be_set_back(
    relay_toml: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "config", "list", "--config", str(relay_toml))
    assert code == 0
    lines = dict(line.split(" = ", 1) for line in out.splitlines())
    assert list(lines) == list(config_edit.KEYS)
    assert lines["limits.max_message_size"] == "31457280"
    before = relay_toml.read_bytes()
    pairs = [word for key, value in lines.items() for word in (key, value)]
    code, out, err = run(capsys, "config", "set", *pairs, "--config", str(relay_toml))
    assert (code, out, err) == (0, "nothing changed\n", "")
    assert relay_toml.read_bytes() == before


def test_the_console_script_works_end_to_end(relay_toml: Path) -> None:
    relay = Path(sys.executable).parent / "relay"
    result = subprocess.run(
        [str(relay), "config", "set", "turn.max_lifetime", "900", "--config", str(relay_toml)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("turn.max_lifetime: 3600 -> 900\n")
    assert config_mod.load(relay_toml).turn.max_lifetime == 900


@pytest.fixture
def fake_relay(relay_toml: Path) -> Iterator[list[dict[str, object]]]:
    """An admin socket in the data dir that answers "reload" as the relay's admin API does;
    yields the requests it got, answers with fake_relay_answer."""
    data_dir = config_mod.load(relay_toml).data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(data_dir / "admin.sock"))
    server.listen(1)
    requests: list[dict[str, object]] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn, conn.makefile("rwb") as f:
                request = json.loads(f.readline())
                requests.append(request)
                answer = {"id": request["id"], **FAKE_ANSWER[0]}
                f.write(json.dumps(answer).encode() + b"\n")
                f.flush()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield requests
    server.shutdown(socket.SHUT_RDWR)
    server.close()
    thread.join()


FAKE_ANSWER: list[dict[str, object]] = [{}]


@pytest.mark.parametrize(
    ("answer", "said", "code"),
    [
        ({"result": {"applied": True, "restart_required": [], "error": None}}, "applied live", 0),
        (
            {"result": {"applied": True, "restart_required": ["listen.smtp"], "error": None}},
            "restart needed for: listen.smtp",
            0,
        ),
        ({"error": {"code": -32603, "message": "internal error"}},
         "did not apply it: internal error", 1),
        ({"result": {"applied": False, "restart_required": [], "error": "cert gone"}},
         "did not apply it: cert gone", 1),
    ],
)  # fmt: skip
def test_set_asks_a_running_relay_to_reload(
    relay_toml: Path,
    fake_relay: list[dict[str, object]],
    capsys: pytest.CaptureFixture[str],
    answer: dict[str, object],
    said: str,
    code: int,
) -> None:
    FAKE_ANSWER[0] = answer
    got, out, err = run(capsys, "config", "set", "limits.max_recipients", "77",
                        "--config", str(relay_toml))  # fmt: skip
    assert got == code
    assert said in out + err
    assert fake_relay == [{"id": 1, "method": "reload", "params": {}}]
    assert config_mod.load(relay_toml).limits.max_recipients == 77  # written in every case


def smtp_answer_to_a_big_message(config: Config) -> int:
    """The reply to a 4 KiB message announced with SIZE, as a peer relay would send it."""
    with smtplib.SMTP(config.listen.address[0], config.listen.smtp, timeout=10) as s:
        s.starttls(context=client_context(config))
        s.ehlo("peer.example")
        code, _ = s.mail("alice@peer.example", ["SIZE=4096"])
        s.rset()
        return code


def test_a_set_on_a_running_relay_applies_after_the_reload(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The command asks the running relay to reload over its admin socket: the new size limit
    holds for the very next SMTP transaction."""
    config = make_config(tmp_path / "data", limits=Limits(max_message_size=1 << 20))
    relay = start_relay_process(config, tmp_path / "relay.toml")
    try:
        while not (config.data_dir / "admin.sock").exists():  # it opens after the ports
            assert relay.process.poll() is None, "the relay ended"
            time.sleep(0.05)
        assert smtp_answer_to_a_big_message(config) == 250

        code, out, err = run(capsys, "config", "set", "limits.max_message_size", "2048",
                             "--config", str(relay.config_path))  # fmt: skip
        assert code == 0, err
        assert "limits.max_message_size: 1048576 -> 2048" in out
        assert "applied live" in out
        assert smtp_answer_to_a_big_message(config) == 552
    finally:
        stop_relay_process(relay)


async def test_a_reload_applies_what_it_can_and_keeps_restart_only_keys(tmp_path: Path) -> None:
    """SIGHUP after `relay config set`: the size limit applies at once; a new SMTP port and
    another TLS mode wait for the restart (and the log says which), never half-applied."""
    import io

    import trio

    from relay.log import Logger
    from relay.server import reload, serve

    path = tmp_path / "relay.toml"
    config = make_config(tmp_path / "data")
    path.write_text(config_mod.to_toml(config), encoding="utf-8")
    config = config_mod.load(path)
    out = io.StringIO()
    async with trio.open_nursery() as nursery:
        listening = await nursery.start(
            lambda task_status: serve(config, log=Logger(stream=out), task_status=task_status)
        )
        app = listening.app
        cert = app.config.cert_path
        config_edit.set_values(
            path,
            {
                "limits.max_message_size": 2048,
                "listen.smtp": config.listen.smtp + 1,
                "tls.mode": "files",
                "tls.cert": str(cert),
                "tls.key": str(app.config.key_path),
            },
        )
        assert (await reload(app))["restart_required"] == ["listen.smtp", "tls.mode"]
        assert app.config.limits.max_message_size == 2048
        assert app.config.listen == config.listen and app.config.tls.mode == "self-signed"
        nursery.cancel_scope.cancel()
    assert "reload-needs-restart" in out.getvalue() and "listen.smtp,tls.mode" in out.getvalue()
