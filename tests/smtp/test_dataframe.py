"""The DATA reader on its own: the result does not depend on how the bytes are split."""

from __future__ import annotations

import pytest

from relay.smtp.dataframe import DataReader


def read(pieces: list[bytes], max_size: int) -> tuple:
    reader = DataReader(max_size)
    for i, piece in enumerate(pieces):
        rest = reader.feed(piece)
        if rest is not None:
            return reader.result, rest + b"".join(pieces[i + 1 :])
    raise AssertionError("no terminator")


@pytest.mark.parametrize("cut", range(1, 12))
def test_a_message_of_the_maximum_size_is_accepted_however_the_terminator_is_split(cut) -> None:
    """Found by fuzzing: with the end of the message and ".\\r" in one read and "\\n" in the
    next, a message of the maximum size (or one or two bytes less) was refused as too big."""
    message = b"a\r\nbcd\r\n"
    script = message + b".\r\nQUIT\r\n"
    for max_size in (len(message), len(message) + 1):
        result, rest = read([script[:cut], script[cut:]], max_size)
        assert (result.problem, result.transmission, result.size) == (None, message, 8)
        assert rest == b"QUIT\r\n"
    result, rest = read([script[:cut], script[cut:]], len(message) - 1)
    assert (result.problem, result.size, rest) == ("too-big", 8, b"QUIT\r\n")
