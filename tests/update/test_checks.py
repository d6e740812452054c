"""The pure checks of an update (versions, manifest, refusal) and the download's bounds, against
the local HTTPS file server."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import trio

from relay.core.update.rauc import Bundle, System, parse_version
from relay.core.update.updater import UpdateError, parse_manifest, refuse
from relay.outbound import download
from relay.outbound.download import DownloadError, fetch_bytes, fetch_to_file
from tests.update.fileserver import FileServer


def test_versions_compare_as_numbers() -> None:
    assert parse_version("1.10") > parse_version("1.9")
    assert parse_version("1.2.0") == parse_version("1.2") == parse_version("v1.2")
    assert parse_version("2") > parse_version("1.99.99")
    for bad in ("", "1.2-rc1", "1..2", "latest"):
        with pytest.raises(ValueError, match="dotted numbers"):
            parse_version(bad)


def test_refusals_say_why() -> None:
    system = System(compatible="box", booted_version="1.3")
    assert refuse(Bundle(compatible="box", version="1.4"), system) == ""
    assert "it is for 'other'" in refuse(Bundle(compatible="other", version="1.4"), system)
    assert "version 1.3 is not newer than 1.3" in refuse(Bundle("box", "1.3"), system)
    assert "version 1.2.9 is not newer than 1.3" in refuse(Bundle("box", "1.2.9"), system)
    assert "dotted numbers" in refuse(Bundle("box", "1.4-beta"), system)


def test_manifests_are_checked() -> None:
    url = "https://updates.example.org/relay/manifest.json"
    good = b'{"version": "1.4", "bundle": "b-1.4.raucb", "sha256": "' + b"A" * 64 + b'"}'
    assert parse_manifest(url, good) == (
        "1.4",
        "https://updates.example.org/relay/b-1.4.raucb",
        "a" * 64,
    )
    for body, message in [
        (b"<html>", "not JSON"),
        (b"[1]", "not a JSON object"),
        (b'{"version": "1.4", "bundle": "b"}', "needs version, bundle and sha256"),
        (b'{"version": "new", "bundle": "b", "sha256": "' + b"a" * 64 + b'"}', "dotted"),
        (b'{"version": "1.4", "bundle": "b", "sha256": "abc"}', "64 hex digits"),
    ]:
        with pytest.raises(UpdateError, match=message):
            parse_manifest(url, body)


async def test_downloads_are_bounded_and_checked(file_server: FileServer, tmp_path: Path) -> None:
    data = bytes(range(256)) * 4096  # 1 MiB
    file_server.files["/b.raucb"] = data
    ca = str(file_server.ca.path)
    target = tmp_path / "b.raucb"
    seen: list[tuple[int, int | None]] = []
    got = await fetch_to_file(
        file_server.url("/b.raucb"), ca, len(data), target, lambda d, t: seen.append((d, t))
    )
    assert got == hashlib.sha256(data).hexdigest() and target.read_bytes() == data
    assert seen[-1] == (len(data), len(data))
    with pytest.raises(DownloadError, match="is more than 1000"):
        await fetch_to_file(file_server.url("/b.raucb"), ca, 1000, target, lambda d, t: None)
    with pytest.raises(DownloadError, match="HTTP 404"):
        await fetch_bytes(file_server.url("/missing.json"), ca, 1000)
    with pytest.raises(DownloadError, match="certificate verify failed"):
        await fetch_bytes(file_server.url("/b.raucb"), "", len(data))  # not in the system store
    with pytest.raises(DownloadError, match="not an https:// URL"):
        await fetch_bytes(f"http://localhost:{file_server.port}/b.raucb", ca, len(data))


async def test_a_silent_server_times_out(
    file_server: FileServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(download, "IDLE_TIMEOUT", 0.5)
    listener = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listener[0].socket.getsockname()[1]
    async with trio.open_nursery() as nursery:

        async def hold(stream: trio.SocketStream) -> None:
            tls = trio.SSLStream(stream, file_server.context, server_side=True)
            await tls.do_handshake()
            await trio.sleep_forever()

        nursery.start_soon(trio.serve_listeners, hold, listener)
        with trio.fail_after(10), pytest.raises(DownloadError, match="timed out"):
            await fetch_bytes(f"https://localhost:{port}/m.json", str(file_server.ca.path), 1000)
        nursery.cancel_scope.cancel()
