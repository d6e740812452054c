"""Where the built-in iroh relay is reached, and so what METADATA irohrelay says.

iroh checks the relay's certificate strictly against the web PKI roots, so on the HTTPS
listener only where that certificate is one (ACME, or files in domain mode): `https://<domain>`.
With a self-signed certificate (LAN mode, or a domain without one) the relay runs on its own
plain-HTTP port instead: `http://<host>:<port>`. `[metadata] irohrelay` overrides both.
"""

from __future__ import annotations

from relay.config import Config


def on_https(config: Config) -> bool:
    """The relay is served on the HTTPS listener with a certificate clients trust."""
    return (
        config.iroh.enabled
        and not config.is_lan
        and config.tls.mode in ("acme", "files")
        and bool(config.listen.https)
    )


def plain_listener_wanted(config: Config) -> bool:
    return config.iroh.enabled and bool(config.iroh.port) and not on_https(config)


def relay_url(config: Config, plain_port: int | None) -> str | None:
    """The irohrelay METADATA value, or None while no relay can be offered."""
    if config.metadata.irohrelay:
        return config.metadata.irohrelay
    if on_https(config):
        port = "" if config.listen.https == 443 else f":{config.listen.https}"
        return f"https://{config.url_host}{port}"
    if config.iroh.enabled and plain_port:
        return f"http://{config.url_host}:{plain_port}"
    return None
