"""Per-row results of a task as CSV, safe to open in a spreadsheet."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from typing import IO, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from scholarise.models import TaskItem

COLUMNS = ["line", "status", "email", "first_name", "last_name", "external_user_id", "error_code", "error_message"]
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> str:
    """A cell a spreadsheet will not run as a formula (OWASP CSV injection advice: prefix a quote)."""
    text = "" if value is None else str(value)
    if text.startswith(_FORMULA_STARTS):
        return "'" + text
    return text


def iter_results(session: Session, task_id: int, *, chunk: int = 2000) -> Iterator[dict[str, Any]]:
    """Every row of the task in file order, streamed in chunks (memory stays flat for big tasks)."""
    last = -1
    columns = (TaskItem.row_number, TaskItem.status, TaskItem.email, TaskItem.data, TaskItem.external_user_id,
               TaskItem.error_code, TaskItem.error_message)
    while True:
        rows = session.execute(
            select(*columns)
            .where(TaskItem.task_id == task_id, TaskItem.row_number > last)
            .order_by(TaskItem.row_number)
            .limit(chunk)
        ).all()
        if not rows:
            return
        for line, status, email, data, external_id, code, message in rows:
            data = data or {}
            yield {
                "line": line,
                "status": status,
                "email": email or data.get("email"),
                "first_name": data.get("first_name"),
                "last_name": data.get("last_name"),
                "external_user_id": external_id,
                "error_code": code,
                "error_message": message,
            }
        last = rows[-1][0]


def write_results_csv(session: Session, task_id: int, stream: IO[str]) -> int:
    """Write the results CSV to a text stream; returns the number of data rows written."""
    writer = csv.writer(stream, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    count = 0
    for row in iter_results(session, task_id):
        writer.writerow([safe_cell(row[c]) for c in COLUMNS])
        count += 1
    return count
