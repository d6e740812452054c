"""The MIME entity tree (relay.mime) and what FETCH makes of it, on hostile structures: deep
nesting, many parts, lines that only look like boundaries. Work stays linear in the size of the
message, nesting never recurses, and beyond the limits the structure is shown flat."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from relay import mime
from relay.imap import message_parts
from relay.imap.fetchspec import Section
from tests.helpers import nested_message


def depth_of(structure: list) -> int:
    """Levels of multipart in a BODYSTRUCTURE, and the type of the innermost body."""
    depth = 0
    while isinstance(structure[0], list):
        depth += 1
        structure = structure[0]
    return depth


def innermost(structure: list) -> list:
    while isinstance(structure[0], list):
        structure = structure[0]
    return structure


@pytest.mark.parametrize("depth", [400, 10_000])
def test_deep_nesting_is_cut_at_the_limit_and_shown_flat(depth: int) -> None:
    data = nested_message(depth, 1 << 20)
    structure = message_parts.bodystructure(mime.parse(data), extended=True)
    assert depth_of(structure) == mime.MAX_DEPTH
    assert innermost(structure)[:2] == ["application", "octet-stream"]
    assert mime.limit_exceeded(data) == "MIME nesting deeper than 100 levels"


def test_nesting_within_the_limit_is_shown_whole() -> None:
    data = nested_message(mime.MAX_DEPTH, 4096)
    structure = message_parts.bodystructure(mime.parse(data), extended=False)
    assert depth_of(structure) == mime.MAX_DEPTH
    assert innermost(structure)[:2] == ["text", "plain"]
    assert mime.limit_exceeded(data) is None


def test_a_part_deep_inside_is_returned_byte_exact() -> None:
    data = nested_message(400, 1 << 20)
    part = message_parts.section_bytes(data, Section(part=(1, 1), text="MIME"))
    assert part == b'Content-Type: multipart/mixed; boundary="b2"\r\n\r\n'
    body = message_parts.section_bytes(data, Section(part=(1, 1)))
    assert body.startswith(b'--b2\r\nContent-Type: multipart/mixed; boundary="b3"\r\n')
    assert body.endswith(b"\r\n--b3--\r\n--b2--")  # the CRLF before "--b1--" is the delimiter's


def test_parts_beyond_the_count_limit_are_not_looked_into() -> None:
    part = b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n"
    data = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n" + part * 20_000 + b"--b--\r\n"
    root = mime.parse(data)
    assert len(root.children) == mime.MAX_PARTS - 1  # the root is a part too
    assert mime.limit_exceeded(data) == "more than 10000 MIME parts"


def test_consecutive_delimiters_make_an_empty_part_as_the_policy_reads_them() -> None:
    data = (
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n--b\r\n"
        b"Content-Type: text/plain\r\n\r\nhi\r\n--b--\r\n"
    )
    root = mime.parse(data)
    assert [c.whole for c in root.children] == [b"", b"Content-Type: text/plain\r\n\r\nhi"]


def test_a_boundary_reused_inside_belongs_to_the_outer_multipart() -> None:
    data = (
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
        b"Content-Type: text/plain\r\n\r\nhi\r\n--b--\r\n"
    )
    root = mime.parse(data)
    assert len(root.children) == 2
    assert root.children[0].children == []


def best_time(fn: Callable[[], object], runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def fetch_structure(data: bytes) -> None:
    message_parts.bodystructure(mime.parse(data), extended=True)
    message_parts.envelope(mime.parse_header(data))


SHAPES: dict[str, Callable[[int], bytes]] = {
    "flat parts": lambda n: (
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
        + (b"--b\r\nContent-Type: text/plain\r\n\r\n" + b"x" * 28 + b"\r\n") * (n // 64)
        + b"--b--\r\n"
    ),
    "deep nesting": lambda n: nested_message(n // 64, n),
    "boundary look-alikes": lambda n: (
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\n" + b"--bx\r\n" * (n // 6)
    ),
    "one line of dashes": lambda n: (
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n" + b"--b" * (n // 3)
    ),
    "long header": lambda n: b"X-A: 1\r\n" * (n // 8) + b"\r\nbody\r\n",
    "folded header": lambda n: b"Subject: a\r\n" + b" b\r\n" * (n // 4) + b"\r\nbody\r\n",
    "empty lines": lambda n: b"Content-Type: text/plain\r\n\r\n" + b"\r\n" * (n // 2),
}


@pytest.mark.parametrize("shape", SHAPES)
def test_doubling_the_message_at_most_roughly_doubles_the_work(shape: str) -> None:
    make = SHAPES[shape]
    small, large = make(128 * 1024), make(512 * 1024)  # within MAX_PARTS for every shape
    ratio = best_time(lambda: fetch_structure(large)) / best_time(lambda: fetch_structure(small))
    assert ratio < 4 * 2.5, f"{shape}: 4x the bytes took {ratio:.1f}x the time"


@pytest.mark.parametrize(
    "data",
    [
        b"Content-Type: multipart/mixed; boundary*7=x; boundary*=y\r\n\r\n--x\r\n\r\n--x--\r\n",
        b"Content-Type: text/plain; name*7=x; name*=y\r\n"
        b"Content-Disposition: attachment; filename*7=a; filename*=b\r\n\r\nx",
    ],
    ids=["boundary", "parameters"],
)
def test_rfc2231_continuations_mixed_wrongly_are_no_crash(data: bytes) -> None:
    # The stdlib raises TypeError deciding such parameters (found by fuzzing).
    structure = message_parts.bodystructure(mime.parse(data), extended=True)
    assert structure[0] in ("multipart", "text")
    assert mime.limit_exceeded(data) is None


def test_the_gate_reads_such_a_message_as_unparsable_not_as_a_crash() -> None:
    from relay.policy.checks import check_incoming, check_outgoing

    data = (
        b"From: <a@b.org>\r\nContent-Type: multipart/encrypted; boundary*7=x; boundary*=y\r\n"
        b"\r\n--x\r\n\r\n--x--\r\n"
    )
    assert check_incoming(data, "a@b.org", ["c@d.org"]).kind == "rejected"
    assert check_outgoing(data, "a@b.org", ["c@d.org"]).kind == "rejected"
