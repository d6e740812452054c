"""tls.mode = "acme" against Debian's pebble test CA on 127.0.0.1.

Pebble resolves relay.test through a fake DNS server to 127.0.0.1 and validates http-01 on
the relay's own HTTP listener. The test issues a certificate, serves it on the https port,
forces a renewal and sees the new certificate on a fresh connection while an old connection
keeps working.
"""

from __future__ import annotations

import dataclasses
import datetime
import io
import json
import os
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import requests
import trio
from cryptography import x509

from relay.config import TLS
from relay.tls import acme_account_uri, make_self_signed, write_pair
from relay.web import acme
from tests.helpers import free_ports, require_tool, wait_for_port
from tests.web.client import HTTPClient
from tests.web.conftest import DOMAIN, domain_config
from tests.web.fakedns import serve_dns

AUTOCONFIG = "/mail/config-v1.1.xml"


def pebble_cert(tmp_path) -> Path:
    """Pebble's own HTTPS certificate (self-signed), for its directory and management ports."""
    return tmp_path / "pebble" / "cert.pem"


@pytest.fixture
def pebble_port() -> int:
    return free_ports(1)[0]


@pytest.fixture
def relay_config(tmp_path, pebble_port, monkeypatch):
    # The relay's own keeper starts before pebble does, so its first try fails; it retries
    # within a second, issues once pebble is up and then sleeps until renewal is due. The
    # tests wait for that certificate and never have two keepers asking the CA at once.
    monkeypatch.setattr(acme, "FIRST_RETRY", 0.2)
    config = domain_config(tmp_path, mode="acme")
    tls = TLS(
        mode="acme",
        acme_directory=f"https://127.0.0.1:{pebble_port}/dir",
        acme_ca_file=str(pebble_cert(tmp_path)),  # written by the pebble fixture
    )
    config = dataclasses.replace(config, tls=tls)
    # Listeners start before the first issuance, with a placeholder certificate.
    write_pair(config.cert_path, config.key_path, *make_self_signed(DOMAIN))
    return config


@pytest.fixture
async def pebble(relay_config, pebble_port, tmp_path) -> AsyncIterator[str]:
    """A running pebble; yields the URL of its management interface."""
    binary = require_tool("pebble")
    folder = tmp_path / "pebble"
    cert, key = pebble_cert(tmp_path), folder / "key.pem"
    write_pair(cert, key, *make_self_signed("127.0.0.1"))
    management = free_ports(1)[0]
    settings = {
        "pebble": {
            "listenAddress": f"127.0.0.1:{pebble_port}",
            "managementListenAddress": f"127.0.0.1:{management}",
            "certificate": str(cert),
            "privateKey": str(key),
            "httpPort": relay_config.listen.http,
            "tlsPort": relay_config.listen.https,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": False,
        }
    }
    (folder / "config.json").write_text(json.dumps(settings))
    env = {**os.environ, "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"}
    async with trio.open_nursery() as nursery:
        dns_port = await nursery.start(serve_dns)
        command = [
            binary,
            "-config",
            str(folder / "config.json"),
            "-dnsserver",
            f"127.0.0.1:{dns_port}",
        ]
        log = open(folder / "pebble.log", "wb")  # noqa: SIM115 - closed below
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            await trio.to_thread.run_sync(wait_for_port, "127.0.0.1", pebble_port)
            yield f"https://127.0.0.1:{management}"
        finally:
            process.terminate()
            process.wait(timeout=10)
            log.close()
            nursery.cancel_scope.cancel()


async def served_certificate(client: HTTPClient) -> x509.Certificate:
    assert isinstance(client.stream, trio.SSLStream)
    der = client.stream.getpeercert(binary_form=True)
    return x509.load_der_x509_certificate(der)


async def connect(relay_server) -> HTTPClient:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the test compares certificates itself
    return await HTTPClient.connect(
        relay_server.host, relay_server.port("https"), tls=ctx, sni=DOMAIN
    )


async def check_chain(relay_server, management: str) -> None:
    """A client that trusts pebble's root accepts what the relay serves for relay.test."""
    root = await trio.to_thread.run_sync(
        lambda: (
            requests.get(
                f"{management}/roots/0", timeout=10, verify=relay_server.config.tls.acme_ca_file
            ).text
        )
    )
    ctx = ssl.create_default_context(cadata=root)
    client = await HTTPClient.connect(
        relay_server.host, relay_server.port("https"), tls=ctx, sni=DOMAIN
    )
    await client.aclose()


async def wait_for_new_certificate(
    keeper: acme.CertificateKeeper, old: int | None
) -> x509.Certificate:
    with trio.fail_after(120):
        while True:
            cert = keeper.stored_certificate()
            if cert is not None and cert.serial_number != old:
                return cert
            await trio.sleep(0.2)


async def test_issue_serve_renew_and_swap_without_restart(relay_server, pebble):
    keeper = acme.CertificateKeeper(relay_server.app)
    first = await wait_for_new_certificate(keeper, None)  # issued by the relay's own keeper
    await check_chain(relay_server, pebble)
    names = first.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(names.get_values_for_type(x509.DNSName)) == {DOMAIN, f"mta-sts.{DOMAIN}"}
    old_connection = await connect(relay_server)
    assert (await served_certificate(old_connection)).serial_number == first.serial_number
    assert (await old_connection.request("GET", AUTOCONFIG)).status == 200

    second = await keeper.obtain()  # a renewal, while the relay's keeper sleeps
    assert second.serial_number != first.serial_number
    assert keeper.stored_certificate() == second
    fresh = await connect(relay_server)
    assert (await served_certificate(fresh)).serial_number == second.serial_number
    assert (await fresh.request("GET", AUTOCONFIG)).status == 200
    # The connection made before the swap goes on with its certificate.
    assert (await served_certificate(old_connection)).serial_number == first.serial_number
    assert (await old_connection.request("GET", AUTOCONFIG)).status == 200
    await fresh.aclose()
    await old_connection.aclose()
    account = acme_account_uri(relay_server.config)
    assert account and account.startswith("https://127.0.0.1")
    assert not list(acme.challenge_dir(relay_server.config).iterdir())  # challenges cleaned up


async def test_a_restart_reuses_the_stored_certificate(relay_server, pebble):
    keeper = acme.CertificateKeeper(relay_server.app)
    issued = await wait_for_new_certificate(keeper, None)  # issued by the relay's own keeper
    # A new keeper (as after a restart) installs what is stored and does not ask the CA again.
    write_pair(
        relay_server.config.cert_path, relay_server.config.key_path, *make_self_signed(DOMAIN)
    )
    relay_server.app.tls.reload(relay_server.config)
    again = acme.CertificateKeeper(relay_server.app)
    async with trio.open_nursery() as nursery:
        await nursery.start(again.run)
        client = await connect(relay_server)
        assert (await served_certificate(client)).serial_number == issued.serial_number
        await client.aclose()
        nursery.cancel_scope.cancel()
    assert again.stored_certificate() == issued


async def test_an_unreachable_ca_is_reported_and_retried(relay_server, monkeypatch):
    closed_port = free_ports(1)[0]
    tls = TLS(mode="acme", acme_directory=f"https://127.0.0.1:{closed_port}/dir")
    relay_server.app.config = dataclasses.replace(relay_server.app.config, tls=tls)
    monkeypatch.setattr(acme, "FIRST_RETRY", 0.2)
    log = io.StringIO()
    monkeypatch.setattr(relay_server.app.log, "stream", log)
    keeper = acme.CertificateKeeper(relay_server.app)

    def ours(text: str) -> list[str]:
        """Failures against the closed port (the relay's own keeper reads the same config and
        may write some too; before the change it failed against the absent pebble)."""
        return [
            line
            for line in text.splitlines()
            if "acme-failed" in line and f":{closed_port}/" in line
        ]

    async with trio.open_nursery() as nursery:
        await nursery.start(keeper.run)
        with trio.fail_after(30):
            while len(ours(log.getvalue())) < 2:
                await trio.sleep(0.1)
        # Meanwhile the relay serves with the certificate it has.
        client = await connect(relay_server)
        assert (await client.request("GET", AUTOCONFIG)).status == 200
        await client.aclose()
        nursery.cancel_scope.cancel()
    first_error = ours(log.getvalue())[0]
    assert "cannot reach the ACME directory" in first_error
    assert "retry_in_s=" in first_error


def test_renewal_is_due_at_two_thirds_of_the_lifetime():
    cert_pem, _ = make_self_signed(DOMAIN, days=90)
    cert = x509.load_pem_x509_certificate(cert_pem)
    due = acme.renewal_time(cert)
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert due - cert.not_valid_before_utc == lifetime * 2 / 3
    assert due > datetime.datetime.now(datetime.UTC)
