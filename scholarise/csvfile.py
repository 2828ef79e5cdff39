"""Streaming reader for the CSV files schools really export.

Spreadsheets save CSV in many shapes: UTF-8 with or without a byte-order mark, UTF-16, the
Windows code page of the office PC, commas or semicolons or tabs, quoted values with line
breaks, Excel's ``sep=;`` first line, trailing blank rows. This module turns all of them into
:class:`ParsedRow` objects with exact physical line numbers, so every problem can be reported
as "line 12: ...", and it reads the file in a single forward pass per iteration, so memory does
not grow with the file (apart from the email index used to catch duplicates).

Problems with the file as a whole (empty, binary, too big, missing columns) raise
:class:`~scholarise.errors.InputError`; problems with a row are reported on the row. The text
encoding is worked out by :mod:`scholarise.textencoding`.
"""

from __future__ import annotations

import csv
import io
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import IO, Any, BinaryIO

from scholarise.errors import InputError
from scholarise.schemas import field_names, match_columns, validate_row
from scholarise.textencoding import CHUNK, EMPTY, MB, Window, choose_encoding, size_message

_DELIMITERS = (",", ";", "\t", "|")
_DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "vertical bar"}
HEADER_ONLY = "The file has a header but no data rows."
_LINE_BREAK = re.compile(r"\r\n|\r|\n")  # what splits lines when reading with newline=""


@dataclass(slots=True)
class ParsedRow:
    """One data row of the file, judged on its own and against earlier rows (duplicates)."""

    line: int  # physical line where the record starts; the header is line 1
    data: dict[str, Any]  # validated canonical values, or the raw canonical-keyed cells when invalid
    errors: list[str] = field(default_factory=list)  # empty means the row can be imported
    email: str | None = None  # trimmed, lower-cased email when the row has one


def _detect_delimiter(line: str) -> str:
    """Pick the delimiter used most often in the header line outside quotes (ties go to the comma)."""
    counts = dict.fromkeys(_DELIMITERS, 0)
    quoted = False
    for char in line:
        if char == '"':
            quoted = not quoted
        elif not quoted and char in counts:
            counts[char] += 1
    best = max(_DELIMITERS, key=counts.__getitem__)
    return best if counts[best] else ","


def _is_blank(record: list[str]) -> bool:
    return not "".join(record).strip()


def _is_sep_line(record: list[str]) -> bool:
    text = "".join(record).strip().lower()
    return text.startswith("sep=") and len(text) <= 5


class _LineTap:
    """Hands lines to ``csv.reader`` and keeps those of the record being read (one record's worth)."""

    def __init__(self, lines: Iterator[str]) -> None:
        self._lines = lines
        self._taken: list[str] = []

    def __iter__(self) -> _LineTap:
        return self

    def __next__(self) -> str:
        line = next(self._lines)
        self._taken.append(line)
        return line

    def take(self) -> list[str]:
        taken, self._taken = self._taken, []
        return taken


def _ends_inside_quotes(lines: list[str], delimiter: str) -> bool:
    """Whether a record's lines end inside a quoted value (the lenient reader just closes it at the end)."""
    try:
        for _record in csv.reader(lines, delimiter=delimiter, skipinitialspace=True, strict=True):
            pass
    except csv.Error as exc:
        return "unexpected end of data" in str(exc)
    return False


def _unclosed_quote(last_line: int, value: str) -> str:
    """Say where the quote opened that runs to the end of the file (``value`` is everything after it)."""
    breaks = len(_LINE_BREAK.findall(value))
    spanned = breaks if value.endswith(("\n", "\r")) else breaks + 1  # lines the value runs over
    return (f"Line {last_line - spanned + 1}: a quote opened here is never closed, so the rest of the file was "
            'read as one value. Add the closing quote (a quote inside a quoted value is written twice: "").')


def _open_binary(source: str | os.PathLike[str] | BinaryIO, max_bytes: int) -> tuple[IO[bytes], int, bool]:
    """Return (seekable handle, start offset, whether we own it), rejecting oversize input early."""
    if isinstance(source, (str, os.PathLike)):
        try:
            size = os.path.getsize(source)
            if size > max_bytes:
                raise InputError(size_message(size, max_bytes))
            return open(source, "rb"), 0, True  # noqa: SIM115 - closed by CsvFile.close()
        except OSError as exc:
            raise InputError(f"Cannot open {os.fspath(source)!r}: {exc.strerror or exc}.") from None
    if isinstance(source, io.TextIOBase):
        raise TypeError("open_csv() needs a binary stream (open the file with 'rb').")
    try:
        start = source.tell() if source.seekable() else -1
        size = source.seek(0, io.SEEK_END) - start if start >= 0 else -1
    except (AttributeError, OSError, ValueError):
        start = size = -1
    if start >= 0:
        source.seek(start)
        if size > max_bytes:
            raise InputError(size_message(size, max_bytes))
        return source, start, False
    # A pipe or upload stream: copy it once (to disk past 1 MB) so previews can re-read it.
    spool = tempfile.SpooledTemporaryFile(max_size=MB)  # noqa: SIM115 - closed by CsvFile.close()
    copied = 0
    while chunk := source.read(CHUNK):
        copied += len(chunk)
        if copied > max_bytes:
            spool.close()
            raise InputError(size_message(None, max_bytes))
        spool.write(chunk)
    spool.seek(0)
    return spool, 0, True


class CsvFile:
    """An opened, checked CSV file; iterate it for :class:`ParsedRow` objects.

    Every ``iter()`` reads the file again from the top in one streaming pass, so iterating twice
    (or previewing while iterating) is safe. Use it as a context manager to release the file.

    Attributes:
        encoding: the Python codec used to decode the file.
        encoding_source: "bom", "utf-8", "given" or "detected"; "detected" is a guess that the
            caller should show to a person (with a preview of decoded names) before importing.
        delimiter: the field separator found in the header line.
        columns: canonical field name -> the header as written in the file.
        user_type: the user type rows are validated as.
    """

    def __init__(
        self, handle: IO[bytes], start: int, owned: bool, user_type: str, *,
        encoding: str | None, max_bytes: int, max_rows: int,
    ) -> None:
        self._handle, self._start, self._owned = handle, start, owned
        self._max_bytes, self._max_rows = max_bytes, max_rows
        self.user_type = user_type
        self.encoding, self.encoding_source = choose_encoding(handle, start, encoding, max_bytes)
        self.delimiter = self._sniff_delimiter()
        header_line, header = self._header()
        self._width = len(header)
        positions = match_columns(user_type, header)
        self._index = sorted((position, name) for name, position in positions.items())
        self.columns = {name: header[position].strip() for name, position in positions.items()}
        self._last_index = max(positions.values())
        self.header_line = header_line
        first = self._data_records()
        try:
            if next(first, None) is None:
                raise InputError(HEADER_ONLY)
        finally:
            first.close()

    def __enter__(self) -> CsvFile:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the file if this object opened it (a caller's stream is left open)."""
        if self._owned:
            self._handle.close()

    def __iter__(self) -> Iterator[ParsedRow]:
        return self._parse()

    def preview(self, n: int = 5) -> list[ParsedRow]:
        """The first ``n`` data rows, read in a separate pass that leaves any iteration untouched."""
        rows = self._parse()
        try:
            return list(islice(rows, n))
        finally:
            rows.close()

    # -- passes over the file -------------------------------------------------------------

    def _text(self) -> io.TextIOWrapper:
        window = Window(self._handle, self._start, self._max_bytes)
        return io.TextIOWrapper(io.BufferedReader(window, CHUNK), encoding=self.encoding, newline="")

    def _sniff_delimiter(self) -> str:
        """Excel's ``sep=;`` line names the delimiter; otherwise count candidates in the header line."""
        with self._text() as text:
            for line in text:
                content = line.rstrip("\r\n")
                if content.lower().startswith("sep=") and len(content) == 5 and content[4] in _DELIMITERS:
                    return content[4]
                if content.strip(" \t\"',;|"):
                    return _detect_delimiter(content)
        raise InputError(EMPTY)

    def _records(self) -> Iterator[tuple[int, list[str]]]:
        """Yield (first physical line, cells) for every record, blank ones included."""
        text = self._text()
        tap = _LineTap(text)
        last = 0
        try:
            reader = csv.reader(tap, delimiter=self.delimiter, skipinitialspace=True)
            record: list[str] = []
            lines: list[str] = []
            for record in reader:
                lines = tap.take()
                yield last + 1, record
                last = reader.line_num
            if record and _ends_inside_quotes(lines, self.delimiter):
                raise InputError(_unclosed_quote(last, record[-1]))
        except csv.Error as exc:
            if "field limit" in str(exc):
                raise InputError(
                    f"Line {last + 1}: a value runs on for more than {csv.field_size_limit():,} characters; "
                    "a double quote there is probably never closed."
                ) from None
            raise InputError(f"Line {last + 1} cannot be read as CSV ({exc}). Check its quotes.") from None
        except UnicodeDecodeError:
            raise InputError(f"The file is not valid {self.encoding} text near line {last + 1}.") from None
        finally:
            text.close()

    def _header(self) -> tuple[int, list[str]]:
        records = self._records()
        try:
            for line, record in records:
                if not _is_blank(record) and not _is_sep_line(record):
                    return line, record
        finally:
            records.close()
        raise InputError(EMPTY)

    def _data_records(self) -> Iterator[tuple[int, list[str]]]:
        records = self._records()
        try:
            for line, _record in records:
                if line == self.header_line:
                    break
            for line, record in records:
                if not _is_blank(record):
                    yield line, record
        finally:
            records.close()

    def _parse(self) -> Iterator[ParsedRow]:
        seen: dict[str, int] = {}
        count = 0
        for line, record in self._data_records():
            count += 1
            if count > self._max_rows:
                raise InputError(
                    f"The file has more than {self._max_rows:,} data rows; the limit is {self._max_rows:,}. "
                    "Split it into smaller files."
                )
            yield self._row(line, record, seen)
        if count == 0:
            raise InputError(HEADER_ONLY)

    # -- one row ------------------------------------------------------------------------

    def _row(self, line: int, record: list[str], seen: dict[str, int]) -> ParsedRow:
        if len(record) > self._last_index:
            raw = {name: record[index] for index, name in self._index}
        else:  # a short row: the columns it stops before are simply not given
            raw = {name: record[index] for index, name in self._index if index < len(record)}
        if len(record) > self._width and not _is_blank(record[self._width :]):
            name = _DELIMITER_NAMES[self.delimiter]
            clean, errors = {}, [
                f"this row has {len(record)} values but the header has {self._width} columns "
                f"(a value that contains a {name} must be in double quotes)"
            ]
        else:
            clean, errors = validate_row(self.user_type, raw)
        email = clean.get("email")
        if email is None and isinstance(raw.get("email"), str):
            email = raw["email"].strip().lower() or None
        if email is not None:
            first = seen.setdefault(email, line)
            if first != line:
                errors.append(f"duplicate of line {first} in this file")
        return ParsedRow(line=line, data=raw if errors else clean, errors=errors, email=email)


def open_csv(
    source: str | os.PathLike[str] | BinaryIO,
    user_type: str,
    *,
    encoding: str | None = None,
    max_bytes: int = 10 * MB,
    max_rows: int = 100_000,
) -> CsvFile:
    """Open and check a CSV file of people, ready to iterate.

    Everything that makes the whole file unusable is found here, before any row is stored:
    size, emptiness, binary content, encoding, delimiter, header and required columns, and the
    absence of data rows. Row-level problems are left to iteration, which reports them per row.

    Args:
        source: a path, or a binary stream (left open; read from its current position).
        user_type: "teacher", "employee" or "student".
        encoding: the codec to use when the file has no byte-order mark; detected when omitted.
        max_bytes: the largest accepted file.
        max_rows: the most data rows accepted; iteration raises when a file has more.

    Returns:
        The opened :class:`CsvFile`; close it (or use ``with``) when done.

    Raises:
        InputError: the file cannot be used at all; the message says why and what to do.
    """
    field_names(user_type)  # unknown user type -> InputError before touching the file
    handle, start, owned = _open_binary(source, max_bytes)
    try:
        return CsvFile(handle, start, owned, user_type, encoding=encoding, max_bytes=max_bytes, max_rows=max_rows)
    except BaseException:
        if owned:
            handle.close()
        raise
