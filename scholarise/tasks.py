"""The task service: create bulk tasks, guard every status change, cancel, retry, delete, log.

Callers own the transaction (services flush, never commit), so creating a task from a bad file
rolls back whole: no task is ever half-created.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.orm import Session

from scholarise.errors import InputError, InvalidTransitionError, NotFoundError
from scholarise.models import (
    BackgroundTask,
    Branch,
    ItemStatus,
    TaskExecutionLog,
    TaskItem,
    TaskStatus,
    TaskType,
    utcnow,
)
from scholarise.rows import ParsedRow, parse_items
from scholarise.schemas import USER_TYPES

logger = logging.getLogger(__name__)

INSERT_CHUNK = 1000
PRIORITY_RANGE = range(1, 11)


def external_id_for(email: str) -> str:
    """The stable external id of a person: the same email always maps to the same id."""
    digest = hashlib.sha256(email.strip().lower().encode()).hexdigest()
    return f"sch_{digest[:32]}"


@dataclass
class ImportReport:
    """What a file or item list would import: the dry-run answer, and the summary of a created task."""

    total: int = 0
    valid: int = 0
    invalid: list[ParsedRow] = field(default_factory=list)
    preview: list[ParsedRow] = field(default_factory=list)
    encoding: str | None = None
    encoding_source: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "valid": self.valid,
            "invalid": len(self.invalid),
            "errors": [{"line": r.line, "errors": r.errors} for r in self.invalid],
            "encoding": self.encoding,
            "encoding_source": self.encoding_source,
            "preview": [{"line": r.line, "data": r.data, "errors": r.errors} for r in self.preview],
        }


def get_or_create_branch(session: Session, name: str) -> Branch:
    """The branch called ``name`` (trimmed), created if new.

    Raises:
        InputError: the name is empty or too long.
    """
    clean = (name or "").strip()
    if not clean or len(clean) > 120:
        raise InputError("A branch name is required (1 to 120 characters).")
    branch = session.scalar(select(Branch).where(Branch.name == clean))
    if branch is None:
        branch = Branch(name=clean)
        session.add(branch)
        session.flush()
    return branch


def check_priority(priority: Any) -> int:
    """Priority as an int from 1 (highest) to 10 (lowest).

    Raises:
        InputError: not a whole number in range.
    """
    try:
        value = int(priority)
    except (TypeError, ValueError):
        raise InputError(
            f"Priority must be a whole number from 1 (highest) to 10 (lowest), not {priority!r}.") from None
    if value not in PRIORITY_RANGE or str(value) != str(priority).strip():
        raise InputError(f"Priority must be a whole number from 1 (highest) to 10 (lowest), not {priority!r}.")
    return value


def check_user_type(user_type: Any) -> str:
    """Raises InputError unless ``user_type`` is teacher, employee or student."""
    value = str(user_type or "").strip().lower()
    if value not in USER_TYPES:
        raise InputError(f"User type must be one of {', '.join(USER_TYPES)} (got {user_type!r}).")
    return value


def build_report(rows: Iterable[ParsedRow], *, preview_size: int = 10) -> ImportReport:
    """Validate every row without storing anything (the dry run)."""
    report = ImportReport()
    for row in rows:
        report.total += 1
        if row.errors:
            report.invalid.append(row)
        else:
            report.valid += 1
        if len(report.preview) < preview_size:
            report.preview.append(row)
    if report.total == 0:
        raise InputError("There are no rows to import.")
    return report


def create_bulk_task(
    session: Session,
    task_type: str,
    title: str,
    description: str,
    payload: Mapping[str, Any],
    *,
    created_by: str | None = None,
    rows: Iterable[ParsedRow] | None = None,
    max_rows: int = 100_000,
) -> BackgroundTask:
    """Store a task and one TaskItem per row; invalid rows become failed items with their reason.

    Args:
        task_type: only ``BULK_USER_CREATION`` today.
        payload: ``user_type`` (or ``type``), ``branch`` (name) or ``branch_id``, optional
            ``priority`` (1-10), ``batch_size``, ``items`` (list of dicts) unless ``rows`` is given,
            and ``source`` (e.g. the file name, kept in the task options).
        rows: already parsed rows (a streamed CSV file); streamed into the table in chunks.

    Raises:
        InputError: the payload cannot be used at all (nothing is stored; the caller rolls back).
    """
    if task_type != TaskType.BULK_USER_CREATION:
        raise InputError(f"Unknown task type {task_type!r}; expected {TaskType.BULK_USER_CREATION}.")
    user_type = check_user_type(payload.get("user_type") or payload.get("type"))
    title = (title or "").strip()
    if not title or len(title) > 200:
        raise InputError("A task title is required (1 to 200 characters).")
    branch = _resolve_branch(session, payload)
    priority = check_priority(payload.get("priority", 5))
    options: dict[str, Any] = {}
    if payload.get("batch_size") is not None:
        size = payload["batch_size"]
        if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= 500:
            raise InputError(f"Batch size must be a whole number from 1 to 500, not {size!r}.")
        options["batch_size"] = size
    for key in ("source", "encoding", "encoding_source"):
        if payload.get(key):
            options[key] = str(payload[key])
    if rows is None:
        items = payload.get("items")
        if not isinstance(items, list):
            raise InputError("The payload needs 'items': a list of people to create.")
        rows = parse_items(items, user_type, max_rows=max_rows)

    task = BackgroundTask(
        type=task_type,
        user_type=user_type,
        title=title,
        description=(description or "").strip(),
        priority=priority,
        branch_id=branch.id,
        created_by=created_by,
        options=options,
    )
    session.add(task)
    session.flush()
    total = failed = 0
    for chunk in _chunks(_item_values(task.id, rows), INSERT_CHUNK):
        session.execute(insert(TaskItem), chunk)
        total += len(chunk)
        failed += sum(1 for v in chunk if v["status"] == ItemStatus.FAILED)
    if total == 0:
        raise InputError("There are no rows to import.")
    task.total = total
    task.failed_count = failed
    task.processed = failed
    task.progress = round(100.0 * failed / total, 1)
    log(session, task.id, f"Task created with {total} rows ({failed} invalid) by {created_by or 'system'}.",
        details={"total": total, "invalid": failed, "branch": branch.name, "priority": priority})
    session.flush()
    return task


def _resolve_branch(session: Session, payload: Mapping[str, Any]) -> Branch:
    if payload.get("branch_id") is not None:
        branch = session.get(Branch, payload["branch_id"])
        if branch is None:
            raise InputError(f"No branch with id {payload['branch_id']!r}.")
        return branch
    return get_or_create_branch(session, str(payload.get("branch") or payload.get("branchId") or ""))


def _storable(value: Any) -> Any:
    """Invalid rows are kept as written, minus what no database can store (NUL, lone surrogates)."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, dict):
        return {_storable(k): _storable(v) for k, v in value.items()}
    return value


def _item_values(task_id: int, rows: Iterable[ParsedRow]) -> Iterator[dict[str, Any]]:
    for row in rows:
        invalid = bool(row.errors)
        yield {
            "task_id": task_id,
            "row_number": row.line,
            "email": _storable(row.email)[:254] if row.email else None,
            "data": _storable(row.data) if invalid else row.data,
            "status": ItemStatus.FAILED if invalid else ItemStatus.PENDING,
            "error_code": "invalid_row" if invalid else None,
            "error_message": "; ".join(row.errors) if invalid else None,
            "attempts": 0,
            "finished_at": utcnow() if invalid else None,
        }


def _chunks(values: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    for value in values:
        chunk.append(value)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def log(session: Session, task_id: int, message: str, *, level: str = "INFO",
        details: Mapping[str, Any] | None = None) -> None:
    """Append one line to the task's execution log (and to the process log)."""
    session.add(TaskExecutionLog(task_id=task_id, level=level, message=message, details=dict(details or {})))
    logger.info("task %s: %s", task_id, message)


def transition(session: Session, task_id: int, from_states: Iterable[str], to_state: str, **values: Any) -> bool:
    """Compare-and-set the task's status; True only for the one caller whose update won."""
    result = session.execute(
        update(BackgroundTask)
        .where(BackgroundTask.id == task_id, BackgroundTask.status.in_(list(from_states)))
        .values(status=to_state, **values)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def get_task(session: Session, task_id: int) -> BackgroundTask:
    """Raises NotFoundError when there is no such task."""
    task = session.get(BackgroundTask, task_id)
    if task is None:
        raise NotFoundError(f"There is no task #{task_id}.")
    return task


def status_words(status: str) -> str:
    """A task status as words for messages: ``COMPLETED_WITH_ERRORS`` -> "completed with errors"."""
    return status.lower().replace("_", " ")


def item_counts(session: Session, task_id: int) -> dict[str, int]:
    """Rows per item status (one indexed GROUP BY)."""
    rows = session.execute(
        select(TaskItem.status, func.count()).where(TaskItem.task_id == task_id).group_by(TaskItem.status)
    )
    return {status: count for status, count in rows}


def refresh_counters(session: Session, task: BackgroundTask, counts: Mapping[str, int] | None = None) -> None:
    """Write the task's counters and progress from its items."""
    counts = item_counts(session, task.id) if counts is None else counts
    for name, value in counter_values(counts).items():
        setattr(task, name, value)
    task.progress_at = utcnow()


def counter_values(counts: Mapping[str, int]) -> dict[str, Any]:
    """The task's counter columns from its rows per status.

    ``processed`` counts rows that were worked (created, existing, failed): rows a cancel stopped are
    counted apart, so a task cancelled at 6 % shows 6 %, not 100 %.
    """
    total = sum(counts.values())
    processed = sum(counts.get(s, 0) for s in (ItemStatus.CREATED, ItemStatus.EXISTING, ItemStatus.FAILED))
    return {
        "total": total,
        "processed": processed,
        "created_count": counts.get(ItemStatus.CREATED, 0),
        "existing_count": counts.get(ItemStatus.EXISTING, 0),
        "failed_count": counts.get(ItemStatus.FAILED, 0),
        "cancelled_count": counts.get(ItemStatus.CANCELLED, 0),
        "progress": round(100.0 * processed / total, 1) if total else 100.0,
    }


def cancel_task(session: Session, task_id: int, *, by: str | None = None) -> BackgroundTask:
    """Cancel a pending or running task; rows not yet started are marked cancelled.

    A batch already being processed finishes (cancel is honoured between batches).

    Raises:
        NotFoundError: no such task.
        InvalidTransitionError: the task has already finished.
    """
    task = get_task(session, task_id)
    if not transition(session, task_id, TaskStatus.ACTIVE, TaskStatus.CANCELLED, finished_at=utcnow()):
        raise InvalidTransitionError(f"Task #{task_id} is {status_words(task.status)} and can no longer be cancelled.")
    session.execute(
        update(TaskItem)
        .where(TaskItem.task_id == task_id, TaskItem.status == ItemStatus.PENDING)
        .values(status=ItemStatus.CANCELLED, error_code="cancelled", error_message="Cancelled before processing.",
                finished_at=utcnow())
    )
    log(session, task_id, f"Cancelled by {by or 'system'}.", level="WARNING")
    session.refresh(task)
    refresh_counters(session, task)
    return task


def _retryable(task_id: int) -> Any:
    """Failed provider rows and cancelled rows; not rows that failed validation (they would fail again)."""
    return (
        (TaskItem.task_id == task_id)
        & TaskItem.status.in_([ItemStatus.FAILED, ItemStatus.CANCELLED])
        & (func.coalesce(TaskItem.error_code, "") != "invalid_row")
    )


def retryable_count(session: Session, task_id: int) -> int:
    """How many rows "retry failed rows" would queue again (0 while the task is still active)."""
    task = session.get(BackgroundTask, task_id)
    if task is None or task.status not in TaskStatus.FINISHED:
        return 0
    return session.scalar(select(func.count()).select_from(TaskItem).where(_retryable(task_id))) or 0


def retry_failed_rows(session: Session, task_id: int, *, by: str | None = None) -> int:
    """Put a finished task's failed provider rows (and cancelled rows) back to pending.

    Rows that failed validation are not retried: they would fail again; fix the file instead.

    Returns:
        How many rows were queued again.

    Raises:
        NotFoundError: no such task.
        InvalidTransitionError: the task is still running, or has nothing to retry.
    """
    task = get_task(session, task_id)
    if task.status not in TaskStatus.FINISHED:
        raise InvalidTransitionError(
            f"Task #{task_id} is still {status_words(task.status)}; retry once it has finished.")
    result = session.execute(
        update(TaskItem).where(_retryable(task_id)).values(
            status=ItemStatus.PENDING, error_code=None, error_message=None, claim_token=None, finished_at=None
        )
    )
    count = result.rowcount or 0
    if count == 0:
        invalid = session.scalar(select(func.count()).select_from(TaskItem).where(
            TaskItem.task_id == task_id, TaskItem.status == ItemStatus.FAILED,
            TaskItem.error_code == "invalid_row"))
        if invalid:
            raise InvalidTransitionError(f"Task #{task_id} has nothing to retry: its {invalid} failed row(s) failed "
                                         "validation and would fail again. Fix them in the file and import it again.")
        raise InvalidTransitionError(f"Task #{task_id} has no failed rows that can be retried.")
    transition(session, task_id, TaskStatus.FINISHED, TaskStatus.PENDING, finished_at=None, error_summary=None)
    log(session, task_id, f"{count} rows queued again by {by or 'system'}.")
    session.refresh(task)
    refresh_counters(session, task)
    return count


def delete_task(session: Session, task_id: int) -> None:
    """Delete a finished task with its rows and log.

    Raises:
        NotFoundError: no such task.
        InvalidTransitionError: the task is still pending or running (cancel it first).
    """
    task = get_task(session, task_id)
    if task.status not in TaskStatus.FINISHED:
        raise InvalidTransitionError(f"Task #{task_id} is {status_words(task.status)}; cancel it before deleting it.")
    session.execute(delete(TaskItem).where(TaskItem.task_id == task_id))
    session.execute(delete(TaskExecutionLog).where(TaskExecutionLog.task_id == task_id))
    session.delete(task)
    session.flush()


def summary(task: BackgroundTask, failures: Iterable[TaskItem] = ()) -> dict[str, Any]:
    """The JSON-ready summary scripts and notifications use."""
    return {
        "task_id": task.id,
        "title": task.title,
        "status": task.status,
        "user_type": task.user_type,
        "branch": task.branch.name if task.branch else None,
        "priority": task.priority,
        "total": task.total,
        "processed": task.processed,
        "created": task.created_count,
        "existing": task.existing_count,
        "failed": task.failed_count,
        "cancelled": task.cancelled_count,
        "progress": task.progress,
        "duration_seconds": task.duration_seconds,
        "error_summary": task.error_summary,
        "failures": [
            {"line": i.row_number, "email": i.email, "code": i.error_code, "reason": i.error_message}
            for i in failures
        ],
    }


def failed_items(session: Session, task_id: int, *, limit: int | None = None) -> list[TaskItem]:
    """The task's failed rows in file order."""
    query = (
        select(TaskItem)
        .where(TaskItem.task_id == task_id, TaskItem.status == ItemStatus.FAILED)
        .order_by(TaskItem.row_number)
    )
    if limit is not None:
        query = query.limit(limit)
    return list(session.scalars(query))
