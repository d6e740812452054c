"""TLS rules: modern protocol versions only, correct SANs, certificates from files."""

from __future__ import annotations

import ipaddress
import ssl
from pathlib import Path

import pytest
import trio
from cryptography import x509

from relay.config import TLS, Config
from relay.tls import TLSError, TLSManager, make_self_signed, server_context, write_pair


def sans(cert_pem: bytes) -> list[object]:
    cert = x509.load_pem_x509_certificate(cert_pem)
    return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value[:]


def test_self_signed_san_is_the_ip_in_lan_mode() -> None:
    cert, _ = make_self_signed("192.168.1.20")
    assert [n.value for n in sans(cert)] == [ipaddress.ip_address("192.168.1.20")]


def test_self_signed_san_covers_the_domain_and_its_web_names() -> None:
    cert, _ = make_self_signed("chat.example.org")
    names = {n.value for n in sans(cert)}
    assert names == {"chat.example.org", "www.chat.example.org", "mta-sts.chat.example.org"}


async def handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext) -> str:
    """Do one TLS handshake over a socket pair; returns the negotiated version."""
    a, b = trio.testing.memory_stream_pair()
    server = trio.SSLStream(a, server_ctx, server_side=True)
    client = trio.SSLStream(b, client_ctx, server_hostname="relay.test")
    try:
        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(server.do_handshake)
                await client.do_handshake()
    except* (ssl.SSLError, trio.BrokenResourceError) as group:
        raise HandshakeFailed(str(group.exceptions[0])) from None
    return client.version()


class HandshakeFailed(Exception):
    pass


def old_client(version: ssl.TLSVersion) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_ciphers("ALL:@SECLEVEL=0")
    ctx.minimum_version = ctx.maximum_version = version
    return ctx


@pytest.fixture
def cert_files(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    write_pair(cert, key, *make_self_signed("relay.test"))
    return cert, key


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1])
async def test_old_tls_versions_are_refused(
    cert_files: tuple[Path, Path], version: ssl.TLSVersion
) -> None:
    permissive = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    permissive.set_ciphers("ALL:@SECLEVEL=0")
    permissive.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    permissive.load_cert_chain(*cert_files)
    try:
        await handshake(permissive, old_client(version))
    except HandshakeFailed:
        pytest.skip(
            f"this OpenSSL cannot speak {version.name} at all, so refusing it proves nothing"
        )
    with pytest.raises(HandshakeFailed):
        await handshake(server_context(*cert_files), old_client(version))


async def test_tls13_is_preferred_and_12_still_works(cert_files: tuple[Path, Path]) -> None:
    client = ssl.create_default_context(cafile=str(cert_files[0]))
    assert await handshake(server_context(*cert_files), client) == "TLSv1.3"
    client.maximum_version = ssl.TLSVersion.TLSv1_2
    assert await handshake(server_context(*cert_files), client) == "TLSv1.2"


def test_files_mode_loads_given_pem_files(tmp_path: Path, cert_files: tuple[Path, Path]) -> None:
    cert, key = cert_files
    config = Config(
        mail_domain="relay.test",
        data_dir=tmp_path,
        tls=TLS(mode="files", cert=str(cert), key=str(key)),
    )
    manager = TLSManager(config)
    assert manager.certificate().subject.rfc4514_string() == "CN=relay.test"
    assert not (tmp_path / "tls").exists()  # nothing self-signed was made


def test_unreadable_certificate_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "cert.pem").write_text("not a certificate")
    (tmp_path / "key.pem").write_text("nope")
    config = Config(
        mail_domain="relay.test",
        data_dir=tmp_path,
        tls=TLS(mode="files", cert=str(tmp_path / "cert.pem"), key=str(tmp_path / "key.pem")),
    )
    with pytest.raises(TLSError, match="cannot load certificate"):
        TLSManager(config)


def test_a_lan_box_with_a_new_address_gets_a_certificate_for_it(tmp_path: Path) -> None:
    old = Config(mail_domain="192.168.1.20", data_dir=tmp_path)
    TLSManager(old)
    kept = old.cert_path.read_bytes()
    TLSManager(old)
    assert old.cert_path.read_bytes() == kept  # same address: the certificate stays
    moved = Config(mail_domain="192.168.1.33", data_dir=tmp_path)
    manager = TLSManager(moved)
    names = manager.certificate().extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert names.value.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("192.168.1.33")]
