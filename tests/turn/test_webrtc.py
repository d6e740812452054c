"""A real WebRTC call path: headless Chromium opens two RTCPeerConnections with
`iceTransportPolicy: "relay"` and exactly the ICE servers the Delta Chat core's `ice_servers()`
returns for an account on this relay (deltachat-rpc-server, which reads them from METADATA
/shared/vendor/deltachat/turn), and a data channel message gets through our TURN server. With a
wrong credential no relay candidate appears and nothing gets through."""

from __future__ import annotations

import http.server
import json
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from relay.config import Config, Turn
from tests.e2e.conftest import dc, make_profile, relay  # noqa: F401  (fixtures)
from tests.e2e.dclient import Profile
from tests.helpers import make_config
from tests.turn.util import free_udp_port

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PAGE = Path(__file__).with_name("web") / "two_peers.html"
pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="chromium missing (Debian package chromium)"),
    pytest.mark.timeout(240),
]


@pytest.fixture
def relay_config(tmp_path: Path) -> Config:
    turn = Turn(port=free_udp_port(), allow_loopback_peers=True)
    return make_config(tmp_path / "relay-data", turn=turn)


def run_in_chromium(ice: list[dict]) -> dict:
    """Serve the page with these ICE servers, open it in headless Chromium, wait for its result."""
    page = PAGE.read_text().replace("ICE_JSON", json.dumps(ice))
    result: dict = {}
    done = threading.Event()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(page.encode())

        def do_POST(self) -> None:
            size = int(self.headers["Content-Length"])
            result.update(json.loads(self.rfile.read(size)))
            self.send_response(200)
            self.end_headers()
            done.set()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    assert CHROMIUM is not None
    try:
        with tempfile.TemporaryDirectory() as profile:
            browser = subprocess.Popen(
                [
                    CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                    f"--user-data-dir={profile}", f"http://127.0.0.1:{server.server_address[1]}/",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
            try:
                assert done.wait(60), "the page never reported"
            finally:
                browser.terminate()
                try:
                    browser.wait(10)
                except subprocess.TimeoutExpired:
                    browser.kill()
                    browser.wait()
    finally:
        server.shutdown()
        server.server_close()
    return result


def test_data_channel_through_our_turn_with_the_cores_ice_servers(
    relay_config: Config,
    make_profile: Callable[[str], Profile],  # noqa: F811  (the fixture imported above)
) -> None:
    alice = make_profile("alice")
    ice = json.loads(alice.call(alice.client.rpc.ice_servers, alice.account.id))
    turn_urls = [f"turn:127.0.0.1:{relay_config.turn.port}"]
    ours = [server for server in ice if server.get("urls") == turn_urls]
    assert ours, ice  # the core made an ICE server of our METADATA value
    result = run_in_chromium(ours)
    assert result == {"msg": "hello through TURN", "types": ["relay"]}, result

    wrong = [{**server, "credential": "d3Jvbmc="} for server in ours]
    result = run_in_chromium(wrong)
    assert result.get("msg") == "TIMEOUT" and "relay" not in result.get("types", []), result
