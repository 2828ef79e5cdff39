"""Rows given as JSON items (the API and the Python API), validated like CSV rows."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from scholarise.csvfile import ParsedRow
from scholarise.errors import InputError
from scholarise.schemas import validate_row

__all__ = ["ParsedRow", "parse_items"]


def parse_items(items: Sequence[Any], user_type: str, *, max_rows: int = 100_000) -> Iterator[ParsedRow]:
    """Validate each item; the ``line`` of an item is its 1-based position in the list.

    Raises:
        InputError: more than ``max_rows`` items (raised before anything is yielded).
    """
    if len(items) > max_rows:
        raise InputError(f"There are {len(items)} items; at most {max_rows} can be imported in one task.")
    first_seen: dict[str, int] = {}
    for position, raw in enumerate(items, start=1):
        if not isinstance(raw, Mapping):
            yield ParsedRow(line=position, data={}, errors=["each item must be an object with named fields"],
                            email=None)
            continue
        data, errors = validate_row(user_type, dict(raw))
        email = str(raw.get("email") or "").strip().lower() or None
        if email and email in first_seen:
            errors = [*errors, f"duplicate of item {first_seen[email]} in this request"]
        elif email:
            first_seen[email] = position
        yield ParsedRow(line=position, data=data if not errors else {**dict(raw), **data}, errors=errors, email=email)
