"""Headless Chromium: a small page using the browser's own WebSocket API logs in, hears
`new_message` for a mail sent over SMTP, and fetches it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.browser import headless_chromium
from tests.webimap.conftest import LiveWebRelay, encrypted

PAGE = """<!doctype html>
<meta charset="utf-8">
<title>webimap</title>
<pre id="log"></pre>
<script>
const seen = window.seen = {state: "connecting", pushes: [], fetched: null, error: null};
const ws = new WebSocket(URL_HERE);
ws.onopen = () => { seen.state = "open"; };
ws.onerror = () => { seen.error = "websocket error"; };
ws.onclose = (e) => { seen.state = "closed " + e.code; };
ws.onmessage = (e) => {
  const m = JSON.parse(e.data);
  document.getElementById("log").textContent += e.data.slice(0, 200) + "\\n";
  if (m.action === "new_message") {
    seen.pushes.push(m.data);
    ws.send(JSON.stringify({req_id: "get-1", action: "fetch", data: {uid: m.data.uid}}));
  } else if (m.req_id === "get-1") {
    seen.fetched = m;
  }
};
</script>
"""


@pytest.fixture
def browser(tmp_path: Path):  # noqa: ANN201 - a selenium WebDriver
    driver = headless_chromium(tmp_path / "profile")
    driver.set_script_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(browser, script: str, timeout: float = 60):  # noqa: ANN001, ANN201
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, timeout).until(lambda d: d.execute_script(script))


def test_a_page_gets_new_mail_over_the_browsers_websocket(
    relay: LiveWebRelay, browser, tmp_path: Path
) -> None:
    account, sender = relay.new_account(), relay.new_account()
    page = tmp_path / "webimap.html"
    page.write_text(PAGE.replace("URL_HERE", json.dumps(relay.ws_url(account))))
    browser.get(page.as_uri())
    state = wait_for(browser, "return window.seen.state !== 'connecting' && window.seen.state")
    assert state == "open"
    # The login created the account (JIT); now mail arrives over SMTP ...
    relay.smtp_send(sender, account[0], encrypted(sender[0], account[0], mid="to-the-browser"))
    fetched = wait_for(browser, "return window.seen.fetched")
    pushes = browser.execute_script("return window.seen.pushes")
    assert [p["envelope"]["message_id"] for p in pushes] == ["<to-the-browser@localhost>"]
    # ... and the page fetched it by the pushed uid.
    assert fetched["action"] == "result"
    assert fetched["data"]["uid"] == pushes[0]["uid"]
    assert fetched["data"]["envelope"]["from"] == [
        {"mailbox": sender[0].split("@")[0], "host": relay.domain}
    ]
    assert "-----BEGIN PGP MESSAGE-----" in fetched["data"]["body"]
    assert browser.execute_script("return window.seen.error") is None
