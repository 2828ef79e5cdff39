"""Work out which text encoding an uploaded CSV file uses.

Schools' exports come from spreadsheets on office PCs: UTF-8 with or without a byte-order mark,
UTF-16, or Excel's "ANSI" Windows code page (cp1252, cp1251, cp1250, ...), which the file itself
does not name. :func:`choose_encoding` decides how to decode a file and always says how it
decided, so a detected (guessed) encoding is reported to a person, never applied silently.
Every candidate is checked against the whole file before it is accepted.

It also holds the bounded binary :class:`Window` that every pass over an upload reads through.
"""

from __future__ import annotations

import codecs
import io
from typing import IO, Any

from charset_normalizer import from_bytes

from scholarise.errors import InputError

MB = 1024 * 1024
CHUNK = 1024 * 1024
_SAMPLE = 64 * 1024
# UTF-32 first: its little-endian mark starts with the UTF-16 one.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# Python's plain "utf-16"/"utf-32" decoders refuse a stream without a byte-order mark.
_NEEDS_BOM = ("utf-16", "utf-32")
# Office PCs export in these code pages; charset-normalizer scores several 8-bit code pages as
# equally likely for Latin text, so when one of these scores as well as its pick we prefer it.
_PREFERRED_CODEPAGES = ("cp1252", "cp1251", "cp1250")
_CHAOS_TOLERANCE = 0.05
_SAVE_AS_UTF8 = 'Save it from your spreadsheet as "CSV UTF-8" and upload it again.'
NOT_CSV = "This does not look like a CSV text file"
EMPTY = "The file is empty."


def _human_size(size: int) -> str:
    if size >= MB:
        return f"{size / MB:.1f} MB"
    if size >= 1024:
        return f"{size / 1024:.1f} KB"
    return f"{size:,} bytes"


def size_message(size: int | None, limit: int) -> str:
    """Say that a file of ``size`` bytes (``None``: not known) is over ``limit`` and what to do."""
    if size is None:
        text = f"The file is larger than the {_human_size(limit)} limit."
    elif _human_size(size) == _human_size(limit):
        text = f"The file is {size:,} bytes; the limit is {limit:,} bytes."
    else:
        text = f"The file is {_human_size(size)}; the limit is {_human_size(limit)}."
    return f"{text} Split it into smaller files."


class Window(io.RawIOBase):
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
            raise InputError(size_message(None, self._max_bytes))
        return size


def _read_at(handle: IO[bytes], offset: int, size: int) -> bytes:
    handle.seek(offset)
    return handle.read(size)


def _first_bad_line(handle: IO[bytes], start: int, encoding: str, max_bytes: int) -> tuple[int, int] | None:
    """Decode the whole file once; return (byte offset, line) of the first undecodable byte, if any."""
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    window = Window(handle, start, max_bytes)
    offset = lines = 0
    while chunk := window.read(CHUNK):
        try:
            decoder.decode(chunk)
        except UnicodeDecodeError as exc:
            at = max(exc.start, 0)
            return offset + at, lines + chunk[:at].count(b"\n") + 1
        except UnicodeError:  # e.g. "UTF-16 stream does not start with BOM": no position to point at
            return offset, lines + 1
        offset += len(chunk)
        lines += chunk.count(b"\n")
    try:
        decoder.decode(b"", final=True)
    except UnicodeError:
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


def choose_encoding(handle: IO[bytes], start: int, given: str | None, max_bytes: int) -> tuple[str, str]:
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
    if source == "given" and encoding in _NEEDS_BOM:  # a file with the mark was taken by its BOM already
        raise InputError(
            f"The file cannot be read as {encoding}: it does not start with the byte-order mark that {encoding} "
            f"needs. If it is {encoding} without one, choose {encoding}-le or {encoding}-be; otherwise choose the "
            f"encoding the file was saved in, or {_SAVE_AS_UTF8[0].lower()}{_SAVE_AS_UTF8[1:]}"
        )
    bad = _first_bad_line(handle, start, encoding, max_bytes)
    if bad is not None:
        shown = "UTF-8" if encoding == "utf-8-sig" else encoding
        raise InputError(
            f"The file cannot be read as {shown}: line {bad[1]} contains bytes that are not valid in that "
            f"encoding. Choose the encoding the file was saved in, or {_SAVE_AS_UTF8[0].lower()}{_SAVE_AS_UTF8[1:]}"
        )
    return encoding, source
