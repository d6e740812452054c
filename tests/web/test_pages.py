"""The invite page, autoconfig XML and MTA-STS in LAN mode."""

from __future__ import annotations

import ssl
import xml.etree.ElementTree as ET

import trio

from relay.config import Config
from tests.web.client import fetch
from tests.web.test_new import parse_dclogin

AUTOCONFIG_PATHS = ("/.well-known/autoconfig/mail/config-v1.1.xml", "/mail/config-v1.1.xml")


def client_view(xml: bytes, addr: str) -> list[dict[str, str]]:
    """What Delta Chat takes from the XML: one entry per server, placeholders filled in."""
    root = ET.fromstring(xml)
    assert root.tag == "clientConfig"
    local, _, domain = addr.partition("@")
    found = []
    for tag in ("incomingServer", "outgoingServer"):
        for server in root.iter(tag):
            entry = {"type": server.get("type", "")}
            for field in ("hostname", "port", "socketType", "username"):
                text = server.findtext(field, "")
                text = text.replace("%EMAILADDRESS%", addr).replace("%EMAILLOCALPART%", local)
                entry[field] = text.replace("%EMAILDOMAIN%", domain)
            found.append(entry)
    return found


async def check_listed_ports(config: Config, servers: list[dict[str, str]]) -> None:
    """Every SSL entry completes a TLS handshake; every STARTTLS entry accepts TCP."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    for entry in servers:
        with trio.fail_after(10):
            stream = await trio.open_tcp_stream(entry["hostname"], int(entry["port"]))
            if entry["socketType"] == "SSL":
                stream = trio.SSLStream(stream, ctx, server_hostname=entry["hostname"])
                await stream.do_handshake()
            await trio.aclose_forcefully(stream)


async def test_autoconfig_lists_every_client_port(relay_server):
    config = relay_server.config
    addr = f"abcdefghi@{config.address_domain}"
    expected = [
        {"type": "imap", "port": str(config.listen.imaps), "socketType": "SSL"},
        {"type": "imap", "port": str(config.listen.imap), "socketType": "STARTTLS"},
        {"type": "smtp", "port": str(config.listen.submissions), "socketType": "SSL"},
        {"type": "smtp", "port": str(config.listen.submission), "socketType": "STARTTLS"},
    ]
    for path in AUTOCONFIG_PATHS:
        for service in ("http", "https"):
            tls = relay_server.ssl_client_context() if service == "https" else None
            reply = await fetch(relay_server.host, relay_server.port(service), "GET", path, tls=tls)
            assert reply.status == 200
            assert reply.headers["content-type"].startswith("application/xml")
            servers = client_view(reply.body, addr)
            assert [{k: s[k] for k in ("type", "port", "socketType")} for s in servers] == expected
            assert {s["hostname"] for s in servers} == {config.mail_domain}
            assert {s["username"] for s in servers} == {addr}
    await check_listed_ports(config, servers)


async def test_invite_page_in_lan_mode_shows_a_fresh_login_each_visit(relay_server):
    config = relay_server.config
    links = []
    for _ in range(2):
        page = await fetch(relay_server.host, relay_server.port("http"), "GET", "/")
        assert page.status == 200
        assert page.headers["content-type"].startswith("text/html")
        assert page.headers["cache-control"] == "no-store"
        html = page.text
        assert "<script" not in html.lower()
        assert '<meta name="viewport"' in html
        assert "<svg" in html and "</svg>" in html
        assert config.mail_domain in html
        assert f"at most {config.retention.delete_mails_after} days" in html
        assert "self-signed certificate" in html and "local network" in html
        href = html.split('class="button" href="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
        addr, params = parse_dclogin(href)
        assert addr.endswith(f"@{config.address_domain}") and params["ic"] == "3"
        links.append(href)
    assert links[0] != links[1]


async def test_mta_sts_is_not_served_in_lan_mode(relay_server):
    reply = await fetch(
        relay_server.host, relay_server.port("http"), "GET", "/.well-known/mta-sts.txt"
    )
    assert reply.status == 404
