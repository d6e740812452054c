"""A built-in TURN server for Delta Chat calls (RFC 8656 over UDP, the subset the official relay's
chatmail-turn serves): `stun` is the wire codec, `credentials` the REST credential scheme,
`engine` the sans-IO allocation logic and `service` the trio UDP sockets around it.

The package sits in the base layer: it imports nothing of relay but the config, the log and
`relay.durable`, so the IMAP METADATA handler can mint credentials and the composition root can
run the service.
"""
