"""Header clean-up, as the official relay does it, on the raw bytes of the header block.

Submitted mail loses what could identify the sender's device or network (Received,
X-Originating-IP, X-Mailer, User-Agent) and its Subject becomes "[...]". Mail that is stored
locally loses DKIM-Signature, Authentication-Results and Received, which only mattered in
transit. Only the top-level header block is touched; the body is never copied line by line.
"""

from __future__ import annotations

SUBMISSION_DROP = frozenset({b"received", b"x-originating-ip", b"x-mailer", b"user-agent"})
STORAGE_DROP = frozenset({b"dkim-signature", b"authentication-results", b"received"})
HIDDEN_SUBJECT = b"Subject: [...]"


def _split_fields(head: bytes) -> list[bytes]:
    """Header fields, each with its continuation lines, without the final CRLF."""
    fields: list[bytes] = []
    for line in head.split(b"\r\n"):
        if fields and line[:1] in (b" ", b"\t"):
            fields[-1] += b"\r\n" + line
        else:
            fields.append(line)
    return fields


def _field_name(field: bytes) -> bytes:
    return field.split(b":", 1)[0].strip().lower()


def _rewrite(message: bytes, drop: frozenset[bytes], hide_subject: bool) -> bytes:
    head, sep, body = message.partition(b"\r\n\r\n")
    if not sep or not head:
        return message
    kept: list[bytes] = []
    subject_done = False
    for field in _split_fields(head):
        name = _field_name(field)
        if name in drop:
            continue
        if hide_subject and name == b"subject":
            if subject_done:
                continue
            field, subject_done = HIDDEN_SUBJECT, True
        kept.append(field)
    return b"\r\n".join(kept) + b"\r\n\r\n" + body


def clean_submitted(message: bytes) -> bytes:
    """What a client submitted, as it leaves the submission service."""
    return _rewrite(message, SUBMISSION_DROP, hide_subject=True)


def clean_for_storage(message: bytes) -> bytes:
    """What is written to a local mailbox."""
    return _rewrite(message, STORAGE_DROP, hide_subject=False)
