"""CSV reading: the shapes schools export, exact line numbers, file-level errors, streaming memory."""

from __future__ import annotations

import csv
import io
import re
import sys
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scholarise import csvfile
from scholarise.csvfile import CsvFile, ParsedRow, open_csv
from scholarise.errors import InputError

DEMO = Path(__file__).parents[2] / "demo"
TEACHER_HEADER = "first_name,last_name,email,phone,subject,employee_code,date_of_joining"


def read(data: bytes | str, user_type: str = "teacher", **kwargs: Any) -> tuple[CsvFile, list[ParsedRow]]:
    payload = data.encode("utf-8") if isinstance(data, str) else data
    with open_csv(io.BytesIO(payload), user_type, **kwargs) as parsed:
        return parsed, list(parsed)


def input_error(data: bytes | str, user_type: str = "teacher", **kwargs: Any) -> str:
    with pytest.raises(InputError) as excinfo:
        read(data, user_type, **kwargs)
    return str(excinfo.value)


# -- the samples ------------------------------------------------------------------------------


def test_teachers_with_errors_matches_the_documented_outcome() -> None:
    with open_csv(DEMO / "teachers_with_errors.csv", "teacher") as parsed:
        rows = list(parsed)
    assert len(rows) == 40
    assert [row.line for row in rows] == list(range(2, 42))  # line 42 (all-empty) is ignored
    failed = {row.line: row.errors for row in rows if row.errors}
    assert failed == {
        4: ["email: 'not-an-email' is not a valid email address"],
        8: ["first name is required"],
        12: ["duplicate of line 6 in this file"],
        20: ["date of joining: '31/02/2021' is not a valid date (use YYYY-MM-DD or DD/MM/YYYY)"],
    }
    by_line = {row.line: row for row in rows}
    assert by_line[16].errors == [] and by_line[16].data["email"] == "kwame.alsayed14@example.org"
    assert by_line[24].errors == []
    assert by_line[24].data == {"first_name": "Fatima", "last_name": "Tanaka", "email": "fatima.tanaka22@example.org"}
    assert by_line[12].email == "lea.sharma4@example.org"
    assert by_line[2].data["date_of_joining"] == "2014-02-03"
    assert by_line[4].data["email"] == "not-an-email"  # invalid rows keep the cells as written


@pytest.mark.parametrize(("name", "user_type", "count"), [("teachers", "teacher", 200), ("employees", "employee", 120),
                                                          ("students", "student", 500)])
def test_clean_samples_are_all_valid(name: str, user_type: str, count: int) -> None:
    with open_csv(DEMO / f"{name}.csv", user_type) as parsed:
        rows = list(parsed)
        assert (parsed.encoding, parsed.encoding_source, parsed.delimiter) == ("utf-8", "utf-8", ",")
    assert len(rows) == count
    assert not [row for row in rows if row.errors]
    if user_type == "student":
        assert parsed.columns["class_name"] == "class"
        assert rows[0].data["class_name"] == "10"


def test_preview_does_not_consume_the_iteration() -> None:
    with open_csv(DEMO / "teachers.csv", "teacher") as parsed:
        rows = iter(parsed)
        first = next(rows)
        preview = parsed.preview(3)
        assert [row.line for row in preview] == [2, 3, 4]
        assert next(rows).line == first.line + 1
        assert sum(1 for _ in rows) == 198


def test_a_callers_stream_is_read_from_its_position_and_left_open() -> None:
    stream = io.BytesIO(b"junk before\n" + (DEMO / "teachers.csv").read_bytes())
    stream.seek(len(b"junk before\n"))
    with open_csv(stream, "teacher") as parsed:
        assert len(list(parsed)) == 200
    assert not stream.closed


def test_a_non_seekable_stream_is_spooled() -> None:
    pipe = io.BufferedReader(_Unseekable(io.BytesIO((DEMO / "teachers.csv").read_bytes())))
    assert not pipe.seekable()
    with open_csv(pipe, "teacher") as parsed:
        assert len(parsed.preview(2)) == 2
        assert len(list(parsed)) == 200


class _Unseekable(io.RawIOBase):
    def __init__(self, inner: io.BytesIO) -> None:
        self.inner = inner

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.inner.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


# -- encodings --------------------------------------------------------------------------------


NAMES_CSV = "First Name,Last Name,Email\r\nJosé,Lefèvre,jose@example.org\r\nFrançois,Müller,francois@example.org\r\n"


def test_utf8_with_bom() -> None:
    parsed, rows = read(b"\xef\xbb\xbf" + NAMES_CSV.encode())
    assert (parsed.encoding_source, parsed.columns["first_name"]) == ("bom", "First Name")
    assert [row.data["first_name"] for row in rows] == ["José", "François"]


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-be"])
def test_utf16_with_bom(codec: str) -> None:
    data = NAMES_CSV.encode(codec) if codec == "utf-16" else b"\xfe\xff" + NAMES_CSV.encode(codec)
    parsed, rows = read(data)
    assert parsed.encoding_source == "bom"
    assert [row.data["last_name"] for row in rows] == ["Lefèvre", "Müller"]
    assert [row.line for row in rows] == [2, 3]


def test_utf16_le_with_bom_sample() -> None:
    data = (DEMO / "teachers.csv").read_text(encoding="utf-8").encode("utf-16-le")
    parsed, rows = read(b"\xff\xfe" + data)
    assert parsed.encoding_source == "bom"
    assert len(rows) == 200 and not [row for row in rows if row.errors]


def test_cp1252_is_detected_and_names_decode_correctly() -> None:
    parsed, rows = read(NAMES_CSV.encode("cp1252"))
    assert (parsed.encoding, parsed.encoding_source) == ("cp1252", "detected")
    assert [(row.data["first_name"], row.data["last_name"]) for row in rows] == [
        ("José", "Lefèvre"),
        ("François", "Müller"),
    ]


def test_detection_looks_past_an_ascii_start() -> None:
    lines = "".join(f"Name{i},name{i}@example.org\n" for i in range(3000))
    parsed, rows = read(f"first_name,email\n{lines}José,jose@example.org\n".encode("cp1252"))
    assert parsed.encoding_source == "detected"
    assert rows[-1].data["first_name"] == "José"


def test_explicit_encoding_is_used_and_named_on_failure() -> None:
    parsed, rows = read(NAMES_CSV.encode("latin-1"), encoding="latin-1")
    assert parsed.encoding_source == "given"
    assert rows[0].data["first_name"] == "José"
    message = input_error(NAMES_CSV.encode("latin-1"), encoding="utf-8")
    assert message.startswith("The file cannot be read as utf-8: line 2 contains bytes that are not valid")
    assert input_error(NAMES_CSV, encoding="klingon").startswith("Unknown text encoding 'klingon'")


# -- shapes -----------------------------------------------------------------------------------


@pytest.mark.parametrize("delimiter", [";", "\t", "|"])
def test_other_delimiters(delimiter: str) -> None:
    text = (DEMO / "teachers.csv").read_text(encoding="utf-8").replace(",", delimiter)
    parsed, rows = read(text)
    assert parsed.delimiter == delimiter
    assert len(rows) == 200 and not [row for row in rows if row.errors]


def test_semicolons_with_commas_inside_quoted_header_cells() -> None:
    parsed, rows = read('"First Name";"Email";"Notes, misc"\nAnn;ann@example.org;"a, b, c"\n')
    assert parsed.delimiter == ";"
    assert rows[0].data == {"first_name": "Ann", "email": "ann@example.org"}


def test_excel_sep_line() -> None:
    parsed, rows = read("sep=;\nfirst_name;email\nAnn;ann@example.org\n")
    assert parsed.delimiter == ";"
    assert [(row.line, row.errors) for row in rows] == [(3, [])]


def test_quoted_newlines_keep_line_numbers_exact() -> None:
    text = (
        "first_name,last_name,email\n"
        '"Ann","Multi\nLine\nSurname",ann@example.org\n'
        "\n"
        "Bob,Smith,not-an-email\n"
        "Cy,Young,cy@example.org\n"
    )
    _, rows = read(text)
    assert [row.line for row in rows] == [2, 6, 7]
    assert rows[0].data["last_name"] == "Multi\nLine\nSurname"
    assert rows[1].errors == ["email: 'not-an-email' is not a valid email address"]


def test_crlf_and_blank_lines_are_not_counted() -> None:
    text = "\r\n\r\nfirst_name,email\r\n\r\nAnn,ann@example.org\r\n ,  \r\n\r\nBob,bob@example.org\r\n\r\n"
    parsed, rows = read(text)
    assert [(row.line, row.data["first_name"]) for row in rows] == [(5, "Ann"), (8, "Bob")]
    assert parsed.columns == {"first_name": "first_name", "email": "email"}


def test_header_aliases_are_matched() -> None:
    text = (
        "Given Name,Family name,E-mail,Mobile,Class,Section,DOB,Admission No,Guardian,Parent Phone,Roll No\n"
        "Ann,Lee,ANN@example.org,1,10,B,01.02.2012,A1,Mo Lee,2,17\n"
    )
    parsed, rows = read(text, "student")
    assert parsed.columns["class_name"] == "Class" and parsed.columns["date_of_birth"] == "DOB"
    assert rows[0].data == {
        "first_name": "Ann", "last_name": "Lee", "email": "ann@example.org", "phone": "1", "class_name": "10",
        "section": "B", "date_of_birth": "2012-02-01", "admission_number": "A1", "guardian_name": "Mo Lee",
        "guardian_phone": "2",
    }


def test_short_rows_are_fine_and_long_rows_are_not() -> None:
    text = (
        "first_name,last_name,email,phone\n"
        "Ann,Lee,ann@example.org\n"
        "Bob,Ray,bob@example.org,1,oops\n"
        "Cy,,cy@example.org,2,,\n"
    )
    _, rows = read(text)
    assert rows[0].errors == []
    assert rows[1].errors == [
        "this row has 5 values but the header has 4 columns (a value that contains a comma must be in double quotes)"
    ]
    assert rows[2].errors == []  # trailing empty cells from a spreadsheet are harmless


def test_duplicates_are_trimmed_and_case_insensitive() -> None:
    text = "first_name,email\nAnn,ann@example.org\nBob,bob@example.org\nAnn2, ANN@Example.org \n"
    _, rows = read(text)
    assert rows[2].errors == ["duplicate of line 2 in this file"]
    assert rows[2].email == "ann@example.org"


# -- file-level errors ------------------------------------------------------------------------


def test_missing_required_column_is_named_in_words() -> None:
    message = input_error("Name,Mail Box,Phone\nAnn,ann@example.org,1\n")
    assert message.startswith(
        "The file has no first name and email columns, which are required for teachers. "
        "Columns found: 'Name', 'Mail Box', 'Phone'."
    )


@pytest.mark.parametrize("data", [b"", b"\xef\xbb\xbf", b"\r\n\r\n  \r\n"])
def test_empty_file(data: bytes) -> None:
    assert input_error(data) == "The file is empty."


def test_header_only() -> None:
    assert input_error(TEACHER_HEADER + "\r\n,,,,,,\r\n\r\n") == "The file has a header but no data rows."


@pytest.mark.parametrize("data", [b"\x00\x01\x02\x03garbage\xff" * 50, b"PK\x03\x04" + bytes(200)])
def test_binary_files(data: bytes) -> None:
    assert input_error(data).startswith("This does not look like a CSV text file")


def test_oversize_is_checked_up_front(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    with path.open("wb") as handle:  # sparse: 50 MB on paper, nothing on disk
        handle.write(TEACHER_HEADER.encode())
        handle.truncate(50 * 1024 * 1024)
    with pytest.raises(InputError) as excinfo:
        open_csv(path, "teacher")
    assert str(excinfo.value) == "The file is 50.0 MB; the limit is 10.0 MB. Split it into smaller files."


def test_oversize_stream_of_unknown_size() -> None:
    data = (DEMO / "teachers.csv").read_bytes()
    with pytest.raises(InputError, match="larger than the 1.0 KB limit"):
        open_csv(io.BufferedReader(_Unseekable(io.BytesIO(data))), "teacher", max_bytes=1024)


def test_too_many_rows_raises_when_exceeded() -> None:
    with open_csv(DEMO / "teachers.csv", "teacher", max_rows=150) as parsed:
        seen = []
        with pytest.raises(InputError, match="more than 150 data rows; the limit is 150"):
            for row in parsed:
                seen.append(row)
    assert len(seen) == 150
    with open_csv(DEMO / "teachers.csv", "teacher", max_rows=200) as parsed:
        assert len(list(parsed)) == 200


def test_an_unclosed_quote_is_reported_not_raised_as_csv_error() -> None:
    data = 'first_name,email\n"Ann,ann@example.org\n' + "Bob,bob@example.org\n" * 20_000
    assert input_error(data) == (
        "Line 2: a value runs on for more than 131,072 characters; a double quote there is probably never closed."
    )


@pytest.mark.parametrize(
    ("data", "line"),
    [
        ('first_name,email\nAnn,ann@example.org\n"Bob,bob@example.org\nCy,cy@example.org\n', 3),
        ('first_name,email\r\n"Ann\r\nLee",ann@example.org\r\nBob,"bob@example.org', 4),  # no final newline
        ('first_name,email\nAnn,ann@example.org\nBob,"', 3),  # the quote is the last character
    ],
    ids=["swallows-the-next-line", "after-a-quoted-line-break", "at-the-very-end"],
)
def test_a_small_file_that_ends_inside_a_quote_names_the_line_where_it_opened(data: str, line: int) -> None:
    assert input_error(data).startswith(f"Line {line}: a quote opened here is never closed")


def test_quotes_that_close_or_sit_inside_a_value_are_still_read_as_before() -> None:
    _parsed, rows = read('first_name,last_name,email\r\nAl,5" tall,al@example.org\r\n'
                         'Bo,"say ""hi""",bo@example.org\r\n"Cy\r\nDe",Ng,cy@example.org')
    assert [(row.line, row.data["last_name"]) for row in rows] == [(2, '5" tall'), (3, 'say "hi"'), (4, "Ng")]
    assert rows[2].data["first_name"] == "Cy\r\nDe"


def test_missing_path_and_unknown_type() -> None:
    with pytest.raises(InputError, match="Cannot open"):
        open_csv(DEMO / "nope.csv", "teacher")
    with pytest.raises(InputError, match="Unknown user type"):
        open_csv(DEMO / "teachers.csv", "parent")


# -- properties -------------------------------------------------------------------------------

_text = st.text(st.characters(exclude_categories=("Cs", "Cc")) | st.sampled_from(',;\t|"\n\r '), max_size=30)
_name = _text.filter(lambda value: value.strip() and len(value.strip()) <= 100)
_row = st.tuples(_name, _text.filter(lambda value: len(value.strip()) <= 100))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(_row, min_size=1, max_size=15),
    delimiter=st.sampled_from([",", ";", "\t", "|"]),
    codec=st.sampled_from(["utf-8", "utf-8-sig", "utf-16"]),
    blank_every=st.integers(min_value=0, max_value=4),
)
def test_written_rows_round_trip(rows: list[tuple[str, str]], delimiter: str, codec: str, blank_every: int) -> None:
    out = io.StringIO(newline="")
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\r\n")
    writer.writerow(["First Name", "Last Name", "Email"])
    expected_lines = []
    for index, (first, last) in enumerate(rows):
        if blank_every and index % blank_every == 0:
            out.write("\r\n")
        expected_lines.append(len(re.findall(r"\r\n|\r|\n", out.getvalue())) + 1)
        writer.writerow([first, last, f"Person{index}@Example.org"])
    parsed, result = read(out.getvalue().encode(codec))
    assert parsed.delimiter == delimiter
    assert [row.line for row in result] == expected_lines
    for index, ((first, last), row) in enumerate(zip(rows, result, strict=True)):
        assert row.errors == []
        expected = {"first_name": first.strip(), "email": f"person{index}@example.org"}
        if last.strip():
            expected["last_name"] = last.strip()
        assert row.data == expected


# -- streaming --------------------------------------------------------------------------------


def test_reading_a_200k_row_file_streams(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Beyond the email index kept for duplicate detection, reading holds a few MB, whatever the file size.

    Not timed. Validation is stubbed: marshmallow costs ~50 us a row (10 s here, far more under
    tracemalloc) and keeps nothing between rows, while this test is about what the reader keeps.
    """
    path = tmp_path / "big.csv"
    emails = [f"person{i}@example.org" for i in range(200_000)]
    with path.open("w", encoding="utf-8", newline="") as handle:
        handle.write("first_name,last_name,email\r\n")
        for start in range(0, len(emails), 10_000):
            handle.write("".join(f"Name{i},Surname{i},{emails[i]}\r\n" for i in range(start, start + 10_000)))
    index = {email: line for line, email in enumerate(emails, start=2)}  # what the reader must keep
    index_size = sys.getsizeof(index) + sum(sys.getsizeof(key) + sys.getsizeof(value) for key, value in index.items())
    del index
    del emails

    def validate(user_type: str, raw: dict[str, str]) -> tuple[dict[str, str], list[str]]:
        return {"email": raw["email"]}, []

    monkeypatch.setattr(csvfile, "validate_row", validate)
    tracemalloc.start()
    try:
        with open_csv(path, "teacher", max_bytes=64 * 1024 * 1024, max_rows=250_000) as parsed:
            count = sum(1 for row in parsed if not row.errors)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 200_000
    assert peak < 60 * 1024 * 1024, f"peak traced memory {peak / 1e6:.1f} MB"
    reader_only = peak - index_size
    assert reader_only < 8 * 1024 * 1024, f"reader holds {reader_only / 1e6:.1f} MB besides the email index"
    assert path.stat().st_size > 9_000_000  # so holding the file's text would fail the line above
