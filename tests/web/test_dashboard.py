"""The admin dashboard at /admin: its files and headers over HTTPS, and a real browser (Debian's
chromium driven by selenium) using it against a relay process whose config file it changes.

RELAY_DASHBOARD_SCREENSHOTS=docs/images makes test_screenshots write the PNGs the docs show.
"""

from __future__ import annotations

import dataclasses
import imaplib
import os
import shutil
import smtplib
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from PIL import Image
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from relay.config import Iroh, Push, Turn
from relay.web import dashboard
from tests.browser import headless_chromium
from tests.federation.mail import encrypted
from tests.federation.pair import relay_config, shared_ports
from tests.helpers import (
    RelayProcess,
    client_context,
    free_ports,
    make_config,
    start_relay_process,
    stop_relay_process,
)
from tests.turn.util import free_udp_port, stun_answers
from tests.web.test_admin_api import PASSWORD, USER, Admin, imap_login

pytestmark = pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")

OTHER = "jklmnopqr@[127.0.0.1]"
WINDOW = (1000, 700)
PHONE = (390, 844)
A_IP, B_IP = "127.0.0.2", "127.0.0.3"
WAIT = 30  # seconds a condition may take before the test fails (a bound on failure, not speed)


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[RelayProcess]:
    config = make_config(tmp_path / "data", turn=Turn(port=free_udp_port(), enabled=False))
    process = start_relay_process(config, tmp_path / "relay.toml")
    yield process
    stop_relay_process(process)


def token_of(relay: RelayProcess) -> str:
    return (relay.config.data_dir / "admin_token").read_text().strip()


def admin_url(relay: RelayProcess, path: str = "/admin") -> str:
    return f"https://{relay.host}:{relay.port('https')}{path}"


# Over HTTP: what the server sends


def test_the_page_script_and_style_carry_one_csp_that_allows_only_their_own_origin(
    relay: RelayProcess,
) -> None:
    for path, content_type in (
        ("/admin", "text/html"),
        ("/admin/app.js", "text/javascript"),
        ("/admin/style.css", "text/css"),
    ):
        answer = requests.get(admin_url(relay, path), verify=False, timeout=30)
        assert answer.status_code == 200
        assert answer.headers["Content-Type"].startswith(content_type)
        policies = answer.raw.headers.getlist("Content-Security-Policy")
        assert policies == [dashboard.CSP]  # one header: a second one would be enforced too
        directives = dict(d.strip().split(" ", 1) for d in dashboard.CSP.split(";"))
        assert directives["script-src"] == "'self'" and directives["default-src"] == "'none'"
        assert directives["frame-ancestors"] == "'none'"
    html = requests.get(admin_url(relay), verify=False, timeout=30).text
    assert '<script src="/admin/app.js" defer></script>' in html
    assert "<script>" not in html and " style=" not in html  # nothing inline for the CSP to block
    # The rest of the site keeps its own policy, which allows no script at all.
    invite = requests.get(admin_url(relay, "/"), verify=False, timeout=30)
    assert invite.raw.headers.getlist("Content-Security-Policy") == [
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
    ]


def test_the_page_holds_no_data_of_the_relay(relay: RelayProcess) -> None:
    imap_login(relay.config).logout()
    without = requests.get(admin_url(relay), verify=False, timeout=30).content
    with_token = requests.get(
        admin_url(relay), headers={"Authorization": f"Bearer {token_of(relay)}"}, verify=False,
        timeout=30,
    ).content  # fmt: skip
    assert without == with_token  # the same static page for everyone: data come from the API
    assert b"abcdefghi" not in without and token_of(relay).encode() not in without
    assert b'type="password" id="token"' in without


def test_the_files_ship_in_a_wheel(tmp_path: Path) -> None:
    """pyproject's package-data: `pip install .` gets the dashboard, not only a source checkout."""
    root = Path(__file__).resolve().parents[2]
    source = tmp_path / "source"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in ("relay", "hwctl"):
        shutil.copytree(root / name, source / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(root / name, source / name)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), source],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for name in ("index.html", "app.js", "style.css"):
        assert f"relay/web/dashboard/{name}" in names


# In a browser


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    driver = headless_chromium(
        tmp_path / "profile", "--hide-scrollbars", f"--window-size={WINDOW[0]},{WINDOW[1]}"
    )
    viewport(driver, *WINDOW, mobile=False)
    yield driver
    driver.quit()


def viewport(driver: webdriver.Chrome, width: int, height: int, *, mobile: bool) -> None:
    """Exactly this many CSS pixels, as a phone (mobile: the page's meta viewport applies)."""
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile},
    )


class Dashboard:
    def __init__(self, driver: webdriver.Chrome, relay: RelayProcess) -> None:
        self.driver = driver
        self.relay = relay
        self.url = admin_url(relay)
        self.token = token_of(relay)

    def until(self, condition: Callable[[Any], Any]) -> Any:
        return WebDriverWait(
            self.driver, WAIT, ignored_exceptions=(NoSuchElementException,
                                                   StaleElementReferenceException)
        ).until(condition)  # fmt: skip

    def find(self, css: str) -> WebElement:
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def visible(self, css: str) -> WebElement:
        return self.until(EC.visibility_of_element_located((By.CSS_SELECTOR, css)))

    def text(self, css: str) -> str:
        return self.find(css).text

    def text_is(self, css: str, text: str) -> None:
        self.until(lambda d: self.text(css) == text)

    def idle(self) -> None:
        """No API call is in flight (the page's aria-busy)."""
        self.until(lambda d: self.find("body").get_attribute("aria-busy") == "false")

    def open(self, fragment: str = "") -> None:
        self.driver.get(self.url + fragment)

    def log_in(self, token: str | None = None) -> None:
        self.open()
        field = self.visible("#token")
        field.send_keys(self.token if token is None else token)
        field.send_keys(Keys.ENTER)

    def logged_in(self) -> None:
        self.visible("#tabs")
        self.visible("#card-accounts")

    def tab(self, name: str) -> None:
        self.find(f'#tabs button[data-tab="{name}"]').click()
        self.visible(f"section#{name}")
        self.idle()

    def notice(self) -> str:
        return self.visible("#notice").text

    def no_horizontal_scroll(self) -> bool:
        return bool(
            self.driver.execute_script(
                "return document.documentElement.scrollWidth <= window.innerWidth"
            )
        )


@pytest.fixture
def page(browser: webdriver.Chrome, relay: RelayProcess) -> Dashboard:
    return Dashboard(browser, relay)


def test_logging_in_with_the_form_shows_the_overview(page: Dashboard) -> None:
    imap = imap_login(page.relay.config)  # the account and an open IMAP connection
    page.open()
    page.visible("#login")
    assert not page.find("#tabs").is_displayed() and not page.find("#overview").is_displayed()
    page.log_in()
    page.logged_in()
    page.text_is("#card-accounts .figure", "1")
    assert page.text("#card-health .figure") in ("ok", "degraded")
    assert page.text("#relay-name") == "127.0.0.1"
    assert not page.find("#login").is_displayed()
    imaps = f"imaps ({page.relay.config.listen.imaps})"
    rows = [
        [cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
        for row in page.driver.find_elements(By.CSS_SELECTOR, "#connections tbody tr")
    ]
    assert [imaps, "1", "1"] in rows
    imap.logout()


def test_the_login_link_logs_in_and_leaves_the_address_bar(page: Dashboard) -> None:
    imap_login(page.relay.config).logout()
    page.open(f"#token={page.token}")
    page.logged_in()
    page.text_is("#card-accounts .figure", "1")
    assert "token" not in page.driver.current_url
    assert page.driver.current_url == page.url
    page.driver.refresh()  # the token lives on in this tab's session storage
    page.logged_in()
    page.find("#logout").click()
    page.visible("#login")
    page.driver.refresh()
    page.visible("#login")  # logged out for good


def test_a_wrong_token_shows_the_error_and_the_login_form(page: Dashboard) -> None:
    page.log_in("0" * 64)
    page.until(lambda d: page.text("#notice") == "invalid token")
    assert page.find("#login").is_displayed() and not page.find("#tabs").is_displayed()
    page.open(f"#token={'1' * 64}")
    page.until(lambda d: page.text("#notice") == "invalid token")
    assert page.find("#login").is_displayed()


def test_a_locked_out_address_is_told_so_even_with_the_right_token(page: Dashboard) -> None:
    admin = Admin(page.relay)
    for _ in range(10):
        assert admin.call("GET", "/admin/status", token="wrong")["status"] == 401
    page.log_in()
    page.until(lambda d: "too many failed authentications" in page.text("#notice"))
    assert page.find("#login").is_displayed() and not page.find("#tabs").is_displayed()


def test_a_token_that_stops_working_brings_back_the_login(page: Dashboard) -> None:
    page.log_in()
    page.logged_in()
    (page.relay.config.data_dir / "admin_token").write_text("f" * 64 + "\n")  # a new token
    page.find('#tabs button[data-tab="accounts"]').click()
    page.visible("#login")
    assert page.notice() == "invalid token"
    assert not page.find("#accounts").is_displayed()


def test_closing_registration_in_the_browser_makes_new_answer_403(page: Dashboard) -> None:
    new_url = f"http://127.0.0.1:{page.relay.port('http')}/new"
    page.log_in()
    page.logged_in()
    page.tab("registration")
    page.text_is("#registration-state", "open")
    page.find("#registration-open").click()
    page.text_is("#registration-state", "closed")
    assert not page.find("#registration-open").is_selected()
    assert "saved and applied" in page.notice()
    assert requests.post(new_url, timeout=30).status_code == 403
    assert "registration_open = false" in page.relay.config_path.read_text()


def account_row(page: Dashboard, address: str) -> WebElement:
    for row in page.driver.find_elements(By.CSS_SELECTOR, "#account-table tbody tr"):
        if row.find_elements(By.CSS_SELECTOR, ".address") and address in row.text:
            return row
    raise NoSuchElementException(address)


def listed(page: Dashboard, css: str) -> list[str]:
    return [e.text for e in page.driver.find_elements(By.CSS_SELECTOR, css)]


def test_blocking_and_deleting_accounts_in_the_browser(page: Dashboard) -> None:
    imap_login(page.relay.config).logout()
    imap_login(page.relay.config, OTHER).logout()
    page.log_in()
    page.logged_in()
    page.tab("accounts")
    page.text_is("#account-total", "(2)")
    row = page.until(lambda d: account_row(page, USER))
    row.find_element(By.XPATH, ".//button[text()='Block']").click()
    page.until(EC.alert_is_present()).accept()
    page.until(lambda d: listed(page, "#blocklist .address") == [USER])
    page.text_is("#account-total", "(1)")
    with pytest.raises(imaplib.IMAP4.error):
        imap_login(page.relay.config)  # blocked: no login, and no new account either

    delete = account_row(page, OTHER).find_element(By.XPATH, ".//button[text()='Delete']")
    delete.click()
    page.until(EC.alert_is_present()).dismiss()  # changed their mind: nothing happens
    page.idle()
    assert account_row(page, OTHER)
    delete.click()
    page.until(EC.alert_is_present()).accept()
    page.text_is("#account-total", "(0)")
    assert Admin(page.relay).ok("GET", "/admin/accounts")["accounts"] == []

    unblock = page.find("#blocklist button")
    unblock.click()
    page.until(lambda d: listed(page, "#blocklist .address") == [])
    imap_login(page.relay.config, USER, PASSWORD).logout()  # the name is free again


def test_switching_turn_on_in_the_browser_starts_it(page: Dashboard) -> None:
    port = page.relay.config.turn.port
    assert not stun_answers(port)
    page.log_in()
    page.logged_in()
    page.tab("services")
    page.text_is("#service-turn-state", "off")
    assert {"turn", "iroh"} <= {
        e.get_attribute("id").removeprefix("service-")
        for e in page.driver.find_elements(By.CSS_SELECTOR, "#service-list input")
    }
    page.find("#service-turn").click()
    page.text_is("#service-turn-state", "running")
    assert page.find("#service-turn").is_selected()
    assert "turn on was saved and applied" in page.notice()
    assert stun_answers(port)
    page.find("#service-turn").click()
    page.text_is("#service-turn-state", "off")
    assert not stun_answers(port)


def setting(page: Dashboard, key: str) -> WebElement:
    return page.visible(f'[id="setting-{key}"]')


def save_setting(page: Dashboard, key: str, value: str) -> str:
    field = setting(page, key)
    field.clear()
    field.send_keys(value, Keys.ENTER)
    state = f'[id="setting-{key}-state"]'
    page.until(lambda d: page.text(state) not in ("", "saving…"))
    return page.text(state)


def test_changing_settings_in_the_browser_writes_the_config_file(page: Dashboard) -> None:
    page.log_in()
    page.logged_in()
    page.tab("settings")
    assert setting(page, "limits.max_message_size").get_attribute("value") == str(
        page.relay.config.limits.max_message_size
    )
    assert save_setting(page, "limits.max_message_size", "2M") == "saved"
    assert setting(page, "limits.max_message_size").get_attribute("value") == "2097152"
    assert "max_message_size = 2097152" in page.relay.config_path.read_text()

    port = str(page.relay.config.listen.imap + 1)
    assert save_setting(page, "listen.imap", port) == "saved: applies after a restart"
    assert setting(page, "listen.imap").get_attribute("value") == port  # what the file says now
    assert page.notice() == (
        "listen.imap was saved; it takes effect after a restart. Waiting for a restart: listen.imap."
    )

    before = page.relay.config_path.read_bytes()
    error = save_setting(page, "limits.max_mailbox_size", "lots")
    assert "limits.max_mailbox_size" in error
    assert page.find('[id="setting-limits.max_mailbox_size-state"]').get_attribute("class") == (
        "state error"
    )
    assert page.relay.config_path.read_bytes() == before

    page.find('[id="setting-limits.max_message_size"] ~ button.quiet').click()  # Reset
    page.text_is('[id="setting-limits.max_message_size-state"]', "saved")  # live, not waiting
    assert page.notice().endswith("applied. Waiting for a restart: listen.imap.")
    assert "max_message_size" not in page.relay.config_path.read_text().split("[limits]")[-1]


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[RelayProcess, RelayProcess]]:
    """Two LAN relays on 127.0.0.2 and 127.0.0.3 that deliver to each other (tests/federation)."""
    ports = shared_ports([A_IP, B_IP])
    relays: list[RelayProcess] = []
    try:
        for name, ip in (("a", A_IP), ("b", B_IP)):
            # A runs TURN and the iroh listener on free ports; B neither (nothing on the fixed
            # default ports 3478 and 3340).
            turn, iroh = (free_udp_port(ip), free_ports(1, ip)[0]) if name == "a" else (0, 0)
            config = dataclasses.replace(
                relay_config(tmp_path / name, ip, ports),
                push=Push(url=""),
                turn=Turn(port=turn),
                iroh=Iroh(port=iroh),
            )
            relays.append(start_relay_process(config, tmp_path / f"{name}.toml"))
        yield relays[0], relays[1]
    finally:
        for relay in relays:
            stop_relay_process(relay)


def log_in_over_imap(relay: RelayProcess, user: str) -> imaplib.IMAP4_SSL:
    """A Delta Chat login on `relay` (the first one creates the account)."""
    context = client_context(relay.config)
    imap = imaplib.IMAP4_SSL(relay.host, relay.port("imaps"), ssl_context=context, timeout=30)
    imap.login(user, PASSWORD)
    return imap


def send_to_peer(a: RelayProcess, b: RelayProcess) -> None:
    """A user of A writes to a user of B (the login creates the sender's account)."""
    sender, recipient = f"alice1234@[{A_IP}]", f"bob123456@[{B_IP}]"
    log_in_over_imap(b, recipient).logout()  # the recipient's account
    context = client_context(a.config)
    with smtplib.SMTP_SSL(a.host, a.port("submissions"), context=context, timeout=30) as smtp:
        smtp.login(sender, PASSWORD)
        smtp.sendmail(sender, [recipient], encrypted(sender, [recipient]))


def peer_rows(page: Dashboard) -> list[list[str]]:
    """The per-peer table, read again from the relay (the Refresh button)."""
    page.find("section#federation button.refresh").click()
    page.idle()
    rows = page.driver.find_elements(By.CSS_SELECTOR, "#peers tbody tr")
    return [[td.text for td in row.find_elements(By.TAG_NAME, "td")] for row in rows]


def test_federation_rules_and_peer_stats_in_the_browser(
    browser: webdriver.Chrome, pair: tuple[RelayProcess, RelayProcess]
) -> None:
    a, b = pair
    page = Dashboard(browser, a)
    page.log_in()
    page.logged_in()
    page.tab("federation")
    assert page.find("#federation-enabled").is_selected()
    page.until(lambda d: "no mail exchanged" in page.text("#peers tbody"))

    send_to_peer(a, b)
    row = page.until(lambda d: next((r for r in peer_rows(page) if r[0] == f"[{B_IP}]"), None))
    assert row[1:4] == ["1", "1 / 0", "0 / 0"]  # one recipient, over /mxdeliv
    assert row[4].endswith(" ms") and row[5] != "never"

    page.find("#rule-domain").send_keys(f"[{B_IP}]", Keys.ENTER)
    page.until(lambda d: listed(page, "#rules .address") == [f"[{B_IP}]"])
    assert "policy_domains" in a.config_path.read_text()
    page.find("#policy").send_keys("R")  # REJECT: only the listed domains
    page.find("#policy-form button").click()
    page.until(lambda d: "Policy REJECT" in page.text("#notice"))
    assert 'policy = "REJECT"' in a.config_path.read_text()
    page.find("#rules button").click()  # Remove
    page.until(lambda d: listed(page, "#rules .address") == [])
    assert "no other server is accepted" in page.text("#rules")
    page.find("#federation-enabled").click()
    page.text_is("#federation-state", "off")
    assert not page.find("#federation-enabled").is_selected()


def test_on_a_phone_nothing_scrolls_sideways(page: Dashboard) -> None:
    imap_login(page.relay.config).logout()
    Admin(page.relay).ok("POST", "/admin/federation/rules", {"domain": "a-long-name.example"})
    viewport(page.driver, *PHONE, mobile=True)
    page.log_in()
    page.logged_in()
    assert page.driver.execute_script("return window.innerWidth") == PHONE[0]
    assert page.no_horizontal_scroll()
    for name in ("services", "registration", "accounts", "federation", "settings"):
        page.tab(name)
        assert page.no_horizontal_scroll(), name
    page.tab("overview")
    cards = page.driver.find_elements(By.CSS_SELECTOR, ".card")
    assert len(cards) > 1 and len({card.location["x"] for card in cards}) == 1  # one column


# Screenshots for docs/


def shoot(page: Dashboard, out: Path, name: str) -> Path:
    path = out / f"dashboard-{name}.png"
    page.driver.save_screenshot(str(path))
    with Image.open(path) as image:  # a palette image is a third of the size for this UI
        image.convert("RGB").quantize(colors=128).save(path, optimize=True)
    return path


def test_screenshots(
    browser: webdriver.Chrome, pair: tuple[RelayProcess, RelayProcess], tmp_path: Path
) -> None:
    out = Path(os.environ.get("RELAY_DASHBOARD_SCREENSHOTS") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    a, b = pair
    page = Dashboard(browser, a)
    send_to_peer(a, b)
    for user in ("carol5678", "dave12345"):
        log_in_over_imap(a, f"{user}@[{A_IP}]").logout()
    admin = Admin(a)
    admin.url = admin_url(a, "/api/admin")
    admin.ok("POST", "/admin/blocklist", {"username": f"spammer01@[{A_IP}]"})
    admin.ok("POST", "/admin/federation/rules", {"domain": "spam.example"})
    imap = log_in_over_imap(a, f"carol5678@[{A_IP}]")
    page.log_in()
    page.logged_in()
    page.text_is("#card-accounts .figure", "3")
    shots = [shoot(page, out, "overview")]
    for name in ("services", "accounts", "federation", "settings"):
        page.tab(name)
        if name == "federation":
            page.until(lambda d: any(r[0] == f"[{B_IP}]" for r in peer_rows(page)))
        shots.append(shoot(page, out, name))
    viewport(page.driver, *PHONE, mobile=True)
    page.tab("overview")
    shots.append(shoot(page, out, "phone"))
    imap.logout()
    for path in shots:
        with Image.open(path) as image:
            assert image.size in (WINDOW, PHONE), (path, image.size)
