"""Choosing a file's text encoding: an encoding that cannot read the file is refused with a message, not a crash."""

from __future__ import annotations

import io

import pytest

from scholarise.errors import InputError
from scholarise.textencoding import choose_encoding

CSV = "first_name,last_name,email\nJosé,Muñoz,jose@example.org\n"


@pytest.mark.parametrize("given", ["utf-16", "UTF-16", "utf-32"])
def test_a_bom_only_encoding_given_for_a_file_without_the_mark_is_refused_with_a_message(given: str) -> None:
    data = io.BytesIO(CSV.encode("cp1252"))
    with pytest.raises(InputError) as excinfo:
        choose_encoding(data, 0, given, 1024 * 1024)
    message = str(excinfo.value)
    name = given.lower()
    assert message.startswith(f"The file cannot be read as {name}: it does not start with the byte-order mark")
    assert f"choose {name}-le or {name}-be" in message


def test_the_byte_order_mark_wins_over_a_given_encoding_and_explicit_byte_orders_read_without_one() -> None:
    assert choose_encoding(io.BytesIO(CSV.encode("utf-16")), 0, "utf-16", 1024 * 1024) == ("utf-16", "bom")
    assert choose_encoding(io.BytesIO(CSV.encode("utf-16-le")), 0, "utf-16-le", 1024 * 1024) == ("utf-16-le", "given")


def test_an_encoding_that_cannot_decode_the_file_names_the_line() -> None:
    with pytest.raises(InputError, match="cannot be read as utf-8: line 2 contains bytes"):
        choose_encoding(io.BytesIO(CSV.encode("cp1252")), 0, "utf-8", 1024 * 1024)
