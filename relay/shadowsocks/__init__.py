"""Shadowsocks (AEAD, SIP004) into the relay's own services, for networks that block the mail
ports: `aead` is the sans-IO stream codec, `replay` the salt filter, `link` the password and
the `ss://` link users scan, `service` the trio side that checks the destination and hands the
decrypted stream to the service it names (docs/shadowsocks.md).

The package sits in the base layer like relay/turn: it knows the config, the log and `Peer`,
and is given the service registry's way to serve a connection by the composition root.
"""
