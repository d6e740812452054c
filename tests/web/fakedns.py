"""A hand-made DNS responder for tests (dnspython, not a DNS server): every name has one A
record, 127.0.0.1.

Pebble resolves the names it validates through it (`pebble -dnsserver`), so no test touches
/etc/hosts or a real resolver.
"""

from __future__ import annotations

import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import trio

ADDRESS = "127.0.0.1"


def answer(query_wire: bytes) -> bytes | None:
    try:
        query = dns.message.from_wire(query_wire)
    except dns.exception.DNSException:
        return None
    response = dns.message.make_response(query)
    response.flags |= dns.flags.AA
    for question in query.question:
        if question.rdtype == dns.rdatatype.A:
            response.answer.append(
                dns.rrset.from_text(question.name, 60, dns.rdataclass.IN, dns.rdatatype.A, ADDRESS)
            )
    return response.to_wire()


async def serve_dns(*, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    """Answer on a free UDP port of 127.0.0.1 until cancelled; reports the port."""
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
    with sock:
        await sock.bind((ADDRESS, 0))
        task_status.started(sock.getsockname()[1])
        while True:
            data, peer = await sock.recvfrom(4096)
            reply = answer(data)
            if reply is not None:
                await sock.sendto(reply, peer)
