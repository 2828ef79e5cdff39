"""Streaming reader for the CSV files schools really export.

Spreadsheets save CSV in many shapes: UTF-8 with or without a byte-order mark, UTF-16, the
Windows code page of the office PC, commas or semicolons or tabs, quoted values with line
breaks, Excel's ``sep=;`` first line, trailing blank rows. This module turns all of them into
:class:`ParsedRow` objects with exact physical line numbers, so every problem can be reported
as "line 12: ...", and it reads the file in a single forward pass per iteration, so memory does
not grow with the file (apart from the email index used to catch duplicates).

Problems with the file as a whole (empty, binary, too big, missing columns) raise
:class:`~scholarise.errors.InputError`; problems with a row are reported on the row.
"""

from __future__ import annotations

import codecs
import csv
import io
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import IO, Any, BinaryIO

from charset_normalizer import from_bytes

from scholarise.errors import InputError
from scholarise.schemas import field_names, match_columns, validate_row

MB = 1024 * 1024
_CHUNK = 1024 * 1024
_SAMPLE = 64 * 1024
_DELIMITERS = (",", ";", "\t", "|")
_DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "vertical bar"}
# UTF-32 first: its little-endian mark starts with the UTF-16 one.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# Office PCs export in these code pages; charset-normalizer scores several 8-bit code pages as
# equally likely for Latin text, so when one of these scores as well as its pick we prefer it.
_PREFERRED_CODEPAGES = ("cp1252", "cp1251", "cp1250")
_CHAOS_TOLERANCE = 0.05
_SAVE_AS_UTF8 = 'Save it from your spreadsheet as "CSV UTF-8" and upload it again.'
NOT_CSV = "This does not look like a CSV text file"
EMPTY = "The file is empty."
HEADER_ONLY = "The file has a header but no data rows."


@dataclass(slots=True)
class ParsedRow:
    """One data row of the file, judged on its own and against earlier rows (duplicates)."""

    line: int  # physical line where the record starts; the header is line 1
    data: dict[str, Any]  # validated canonical values, or the raw canonical-keyed cells when invalid
    errors: list[str] = field(default_factory=list)  # empty means the row can be imported
    email: str | None = None  # trimmed, lower-cased email when the row has one


def _human_size(size: int) -> str:
    if size >= MB:
        return f"{size / MB:.1f} MB"
    if size >= 1024:
        return f"{size / 1024:.1f} KB"
    return f"{size:,} bytes"


def _size_message(size: int | None, limit: int) -> str:
    if size is None:
        text = f"The file is larger than the {_human_size(limit)} limit."
    elif _human_size(size) == _human_size(limit):
        text = f"The file is {size:,} bytes; the limit is {limit:,} bytes."
    else:
        text = f"The file is {_human_size(size)}; the limit is {_human_size(limit)}."
    return f"{text} Split it into smaller files."


class _Window(io.RawIOBase):
    """Reads a shared binary handle from its own position and counts the bytes it hands out.

    Several passes (the main iteration, a preview) can interleave on one handle because each
    seeks to its own position first; closing a window never closes the handle.
    """

    def __init__(self, handle: IO[bytes], start: int, max_bytes: int) -> None:
        self._handle = handle
        self._pos = start
        self._count = 0
        self._max_bytes = max_bytes

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        self._handle.seek(self._pos)
        data = self._handle.read(len(buffer))
        size = len(data)
        buffer[:size] = data
        self._pos += size
        self._count += size
        if self._count > self._max_bytes:
            raise InputError(_size_message(None, self._max_bytes))
        return size


def _read_at(handle: IO[bytes], offset: int, size: int) -> bytes:
    handle.seek(offset)
    return handle.read(size)


def _first_bad_line(handle: IO[bytes], start: int, encoding: str, max_bytes: int) -> tuple[int, int] | None:
    """Decode the whole file once; return (byte offset, line) of the first undecodable byte, if any."""
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    window = _Window(handle, start, max_bytes)
    offset = lines = 0
    while chunk := window.read(_CHUNK):
        try:
            decoder.decode(chunk)
        except UnicodeDecodeError as exc:
            at = max(exc.start, 0)
            return offset + at, lines + chunk[:at].count(b"\n") + 1
        offset += len(chunk)
        lines += chunk.count(b"\n")
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return offset, lines + 1
    return None


def _detection_sample(handle: IO[bytes], start: int, bad_offset: int) -> bytes:
    head = _read_at(handle, start, _SAMPLE)
    if bad_offset < len(head) - 1024:
        return head
    # The first non-UTF-8 byte lies past the head: add the text around it, cut at line ends.
    window = _read_at(handle, start + max(0, bad_offset - _SAMPLE // 4), _SAMPLE // 2)
    window = window[window.find(b"\n") + 1 :]
    head = head[: head.rfind(b"\n", 0, _SAMPLE // 2) + 1]
    return head + window[: window.rfind(b"\n") + 1 or len(window)]


def _candidates(sample: bytes) -> list[str]:
    results = from_bytes(sample)
    best = results.best()
    names: list[str] = []
    for codepage in _PREFERRED_CODEPAGES:
        match = from_bytes(sample, cp_isolation=[codepage]).best()
        if match is not None and (best is None or match.chaos <= best.chaos + _CHAOS_TOLERANCE):
            names.append(match.encoding)
    names.extend(match.encoding for match in results)
    return list(dict.fromkeys(names))


def _utf16_without_bom(head: bytes) -> str | None:
    """Guess UTF-16 without a byte-order mark from where the zero bytes of Latin text fall."""
    even, odd = head[0 : len(head) - 1 : 2], head[1::2]
    if len(odd) < 8:
        return None
    if odd.count(0) > 0.4 * len(odd) and even.count(0) == 0:
        return "utf-16-le"
    if even.count(0) > 0.4 * len(even) and odd.count(0) == 0:
        return "utf-16-be"
    return None


def _choose_encoding(handle: IO[bytes], start: int, given: str | None, max_bytes: int) -> tuple[str, str]:
    """Pick how to decode the file and say why: "bom", "given", "utf-8" or "detected"."""
    head = _read_at(handle, start, _SAMPLE)
    if not head:
        raise InputError(EMPTY)
    if head.startswith((b"PK\x03\x04", b"\xd0\xcf\x11\xe0")):
        raise InputError(f'{NOT_CSV}: it looks like an Excel workbook. In Excel choose Save As, "CSV UTF-8".')
    for bom, name in _BOMS:
        if head.startswith(bom):
            if len(head) == len(bom):
                raise InputError(EMPTY)
            return _verified(handle, start, name, "bom", max_bytes)
    if given:
        try:
            name = codecs.lookup(given).name
        except LookupError:
            raise InputError(
                f"Unknown text encoding {given!r}; use a name such as utf-8, cp1252, latin-1 or utf-16."
            ) from None
        if b"\x00" in head and not name.startswith(("utf-16", "utf-32")):
            raise InputError(f"{NOT_CSV} (it contains binary data). {_SAVE_AS_UTF8}")
        return _verified(handle, start, name, "given", max_bytes)
    if b"\x00" in head:
        utf16 = _utf16_without_bom(head)
        if utf16 and _first_bad_line(handle, start, utf16, max_bytes) is None:
            return utf16, "detected"
        raise InputError(f"{NOT_CSV} (it contains binary data). {_SAVE_AS_UTF8}")
    bad = _first_bad_line(handle, start, "utf-8", max_bytes)
    if bad is None:
        return "utf-8", "utf-8"
    for name in _candidates(_detection_sample(handle, start, bad[0])):
        if name not in ("ascii", "utf_8") and _first_bad_line(handle, start, name, max_bytes) is None:
            return codecs.lookup(name).name, "detected"
    raise InputError(f"{NOT_CSV}: its text encoding could not be recognised. {_SAVE_AS_UTF8}")


def _verified(handle: IO[bytes], start: int, encoding: str, source: str, max_bytes: int) -> tuple[str, str]:
    bad = _first_bad_line(handle, start, encoding, max_bytes)
    if bad is not None:
        shown = "UTF-8" if encoding == "utf-8-sig" else encoding
        raise InputError(
            f"The file cannot be read as {shown}: line {bad[1]} contains bytes that are not valid in that "
            f"encoding. Choose the encoding the file was saved in, or {_SAVE_AS_UTF8[0].lower()}{_SAVE_AS_UTF8[1:]}"
        )
    return encoding, source


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


def _open_binary(source: str | os.PathLike[str] | BinaryIO, max_bytes: int) -> tuple[IO[bytes], int, bool]:
    """Return (seekable handle, start offset, whether we own it), rejecting oversize input early."""
    if isinstance(source, (str, os.PathLike)):
        try:
            size = os.path.getsize(source)
            if size > max_bytes:
                raise InputError(_size_message(size, max_bytes))
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
            raise InputError(_size_message(size, max_bytes))
        return source, start, False
    # A pipe or upload stream: copy it once (to disk past 1 MB) so previews can re-read it.
    spool = tempfile.SpooledTemporaryFile(max_size=MB)  # noqa: SIM115 - closed by CsvFile.close()
    copied = 0
    while chunk := source.read(_CHUNK):
        copied += len(chunk)
        if copied > max_bytes:
            spool.close()
            raise InputError(_size_message(None, max_bytes))
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
        self.encoding, self.encoding_source = _choose_encoding(handle, start, encoding, max_bytes)
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
        window = _Window(self._handle, self._start, self._max_bytes)
        return io.TextIOWrapper(io.BufferedReader(window, _CHUNK), encoding=self.encoding, newline="")

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
        last = 0
        try:
            reader = csv.reader(text, delimiter=self.delimiter, skipinitialspace=True)
            for record in reader:
                yield last + 1, record
                last = reader.line_num
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
