"""``/api/tasks``: list, read, create (JSON items or a CSV upload), cancel, retry, delete, results.

Views parse (the schemas), check scope (``admin.auth`` rules: staff see their own branch; another
branch's task answers 404 so its existence does not leak), call one service, and shape the answer.
Work that must reach the workers (create, cancel, retry) goes through the ``actors`` Python API,
which rings the broker; reads use the site's database session.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Iterator
from typing import Any

from flask import Response, current_app, jsonify, url_for
from sqlalchemy import func, select
from werkzeug.datastructures import FileStorage

from admin.api.auth import Principal, current_principal, visible_branch
from admin.api.blueprint import UNSTORABLE, ApiBlueprint, unstorable_path
from admin.api.errors import ApiError
from admin.api.schemas import (
    MAX_ID,
    DryRunSchema,
    ResultsSchema,
    RetrySchema,
    TaskCreateSchema,
    TaskDetailSchema,
    TaskListQuery,
    TaskPageSchema,
    TaskUploadSchema,
)
from admin.auth import get_visible_task, is_admin
from admin.extensions import db
from scholarise import tasks as task_service
from scholarise.config import Settings
from scholarise.csvfile import ParsedRow, open_csv
from scholarise.errors import NotFoundError
from scholarise.models import BackgroundTask, Branch, TaskType
from scholarise.results import iter_results, write_results_csv
from scholarise.rows import parse_items

bp = ApiBlueprint("api_tasks", __name__, url_prefix="/api/tasks",
                  description="Bulk import tasks: list, inspect, create, cancel, retry, delete, results.")

FAILURES_SHOWN = 100
TASK = "/<int:task_id>"


class TaskDetail:
    """A task plus what its detail adds (row counts, first failures), for :class:`TaskDetailSchema`."""

    def __init__(self, task: BackgroundTask, counts: dict[str, int], failures: list[Any]) -> None:
        self.task, self.counts, self.failures = task, counts, failures
        self.source = (task.options or {}).get("source")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.task, name)


def _settings() -> Settings:
    return current_app.extensions["scholarise_settings"]


def _actors() -> Any:
    """The ``actors`` API, once this process has configured it (``GET /api/init`` or ``scholarise serve``)."""
    import actors
    from actors import runtime

    try:
        runtime.current()
    except RuntimeError:
        raise ApiError(503, "services_not_started", "The background services are not initialised in this process "
                       "yet; an administrator can start them with GET /api/init.") from None
    return actors


def visible_task(principal: Principal, task_id: int) -> BackgroundTask:
    """The task if the caller may see it; another branch's task is "not found", like a missing one.

    Raises:
        NotFoundError: no such task (ids beyond 32 bits included: they cannot exist).
    """
    if not 1 <= task_id <= MAX_ID:
        raise NotFoundError(f"There is no task #{task_id}.")
    return get_visible_task(db.session, principal, task_id)


def _detail(task: BackgroundTask) -> TaskDetail:
    return TaskDetail(task, task_service.item_counts(db.session, task.id),
                      task_service.failed_items(db.session, task.id, limit=FAILURES_SHOWN))


def _fresh_detail(task_id: int) -> TaskDetail:
    """The detail as the actors left it (they changed the task through their own session)."""
    db.session.rollback()  # forget what this session read before
    return _detail(task_service.get_task(db.session, task_id))


@bp.get("")
@bp.arguments(TaskListQuery, location="query", as_kwargs=True)
@bp.response(200, TaskPageSchema)
@bp.refusals(401, 403)
def list_tasks(page: int, per_page: int, status: str | None = None, type: str | None = None,  # noqa: A002
               user_type: str | None = None, branch_id: int | None = None) -> dict[str, Any]:
    """Tasks, newest first, filtered by status, type, user type and branch (staff: their own branch only)."""
    scope = visible_branch(current_principal())
    if scope is not None and branch_id is not None and branch_id != scope:
        raise ApiError(403, "forbidden", "Staff can only list the tasks of their own branch.")
    conditions = []
    for column, value in ((BackgroundTask.status, status), (BackgroundTask.type, type),
                          (BackgroundTask.user_type, user_type), (BackgroundTask.branch_id, branch_id or scope)):
        if value is not None:
            conditions.append(column == value)
    total = db.session.scalar(select(func.count(BackgroundTask.id)).where(*conditions)) or 0
    items = db.session.scalars(
        select(BackgroundTask).where(*conditions)
        .order_by(BackgroundTask.created_at.desc(), BackgroundTask.id.desc())
        .limit(per_page).offset((page - 1) * per_page)
    ).all()
    return {"items": items, "page": page, "per_page": per_page, "total": total,
            "pages": math.ceil(total / per_page)}


@bp.get(TASK)
@bp.response(200, TaskDetailSchema)
@bp.refusals(401, 404)
def get_task(task_id: int) -> TaskDetail:
    """One task with its row counts per status, its progress and its first failed rows."""
    return _detail(visible_task(current_principal(), task_id))


def _branch_payload(principal: Principal, data: dict[str, Any]) -> dict[str, Any]:
    """Where the task goes: staff into their own branch only; admins name one (created if new)."""
    name, branch_id = data.get("branch"), data.get("branch_id")
    scope = visible_branch(principal)
    if scope is None:
        if name is None and branch_id is None:
            raise ApiError(422, "invalid_input", "Say which branch the people belong to.",
                           errors={"branch": ["Give the branch name or branch_id."]})
        if branch_id is not None and db.session.get(Branch, branch_id) is None:
            raise ApiError(422, "invalid_input", f"There is no branch with id {branch_id}.",
                           errors={"branch_id": [f"There is no branch with id {branch_id}."]})
        return {"branch_id": branch_id} if branch_id is not None else {"branch": name.strip()}
    if scope == -1:
        raise ApiError(403, "forbidden", "Your account has no branch; ask an administrator to set one.")
    if name is not None:
        branch = db.session.scalar(select(Branch).where(Branch.name == name.strip()))
        branch_id = branch.id if branch else -1
    if branch_id is not None and branch_id != scope:
        raise ApiError(403, "forbidden", "Staff can only import into their own branch.")
    return {"branch_id": scope}


def _too_many(limit: int, what: str) -> ApiError:
    return ApiError(413, "too_many_rows", f"{what} more than {limit:,} rows; the limit is {limit:,}. "
                    "Split it into several tasks.")


def _dry_run(rows: Iterable[ParsedRow], encoding: str | None = None, source: str | None = None) -> Response:
    report = task_service.build_report(rows)
    report.encoding, report.encoding_source = encoding, source
    response = jsonify(DryRunSchema().dump({"dry_run": True, **report.to_dict()}))
    response.status_code = 200
    return response


def _created(task_id: int) -> tuple[TaskDetail, int, dict[str, str]]:
    return _fresh_detail(task_id), 201, {"Location": url_for("api_tasks.get_task", task_id=task_id)}


@bp.post("")
@bp.arguments(TaskCreateSchema)
@bp.response(201, TaskDetailSchema, description="The task was created and the workers were told")
@bp.alt_response(200, schema=DryRunSchema, description="dry_run: what would be imported; nothing was stored",
                 success=True)
@bp.refusals(400, 401, 403, 413, 415, 503)
def create_task(data: dict[str, Any]) -> Any:
    """Create a bulk task from JSON items (`dry_run`: validate and report only).

    Every item is validated like a CSV row; invalid items become failed rows with their reason.
    """
    principal = current_principal()
    branch = _branch_payload(principal, data)
    limit = _settings().max_rows
    if len(data["items"]) > limit:
        raise _too_many(limit, "The request has")
    if data["dry_run"]:
        return _dry_run(parse_items(data["items"], data["user_type"], max_rows=limit))
    payload = {"user_type": data["user_type"], "priority": data["priority"], "batch_size": data.get("batch_size"),
               "items": data["items"], "source": "api", **branch}
    task_id = _actors().create_bulk_task(data["type"], data["title"], data["description"], payload,
                                         created_by=principal.label)
    return _created(task_id)


def _bounded(rows: Iterable[ParsedRow], limit: int) -> Iterator[ParsedRow]:
    """The file's rows, refusing more than ``limit`` (413) and binary NUL bytes the database cannot store."""
    for count, row in enumerate(rows, start=1):
        if count > limit:
            raise _too_many(limit, "The file has")
        if unstorable_path(row.data):
            raise ApiError(422, "invalid_input", f"Line {row.line} contains a NUL byte, so this is not a plain text "
                           'CSV file. Save it from your spreadsheet as "CSV UTF-8" and upload it again.',
                           errors={"file": [f"Line {row.line} contains a NUL byte."]})
        yield row


def _checked_size(upload: FileStorage, limit: int) -> None:
    stream = upload.stream
    stream.seek(0, io.SEEK_END)
    size = stream.tell()
    stream.seek(0)
    if size > limit:
        raise ApiError(413, "too_large", f"The file is {size:,} bytes; the limit is {limit:,} bytes. "
                       "Split it into smaller files.", errors={"file": ["The file is too large."]})


@bp.post("/upload")
@bp.arguments(TaskUploadSchema, location="multipart")
@bp.response(201, TaskDetailSchema, description="The task was created and the workers were told")
@bp.alt_response(200, schema=DryRunSchema, description="dry_run: what would be imported; nothing was stored",
                 success=True)
@bp.refusals(401, 403, 413, 415, 503)
def upload_task(data: dict[str, Any]) -> Any:
    """Create a bulk task from an uploaded CSV file (`dry_run`: validate and report only)."""
    principal = current_principal()
    settings = _settings()
    branch = _branch_payload(principal, data)
    upload: FileStorage = data["file"]
    _checked_size(upload, settings.max_upload_bytes)
    name = UNSTORABLE.sub("", upload.filename or "").rsplit("/", 1)[-1].rsplit("\\", 1)[-1][:200]
    filename = name.strip() or "upload.csv"
    with open_csv(upload.stream, data["user_type"], encoding=data.get("encoding"),
                  max_bytes=settings.max_upload_bytes, max_rows=settings.max_rows + 1) as csv_file:
        rows = _bounded(csv_file, settings.max_rows)
        if data["dry_run"]:
            return _dry_run(rows, csv_file.encoding, csv_file.encoding_source)
        payload = {"user_type": data["user_type"], "priority": data["priority"],
                   "batch_size": data.get("batch_size"), "source": filename, "encoding": csv_file.encoding,
                   "encoding_source": csv_file.encoding_source, **branch}
        title = data.get("title") or f"Import {filename}"
        task_id = _actors().create_bulk_task(TaskType.BULK_USER_CREATION, title, data["description"], payload,
                                             created_by=principal.label, rows=rows)
    return _created(task_id)


@bp.post(f"{TASK}/cancel")
@bp.response(200, TaskDetailSchema)
@bp.refusals(401, 404, 409, 503)
def cancel_task(task_id: int) -> TaskDetail:
    """Cancel a pending or running task (the batch in progress finishes; 409 once it has finished)."""
    principal = current_principal()
    visible_task(principal, task_id)
    _actors().cancel_task(task_id, by=principal.label)
    return _fresh_detail(task_id)


@bp.post(f"{TASK}/retry")
@bp.response(200, RetrySchema)
@bp.refusals(401, 404, 409, 503)
def retry_task(task_id: int) -> dict[str, Any]:
    """Queue a finished task's failed rows again (rows that failed validation are not retried)."""
    principal = current_principal()
    visible_task(principal, task_id)
    queued = _actors().retry_failed_rows(task_id, by=principal.label)
    return {"queued": queued, "task": _fresh_detail(task_id)}


@bp.delete(TASK)
@bp.response(204, description="Deleted with its rows and log")
@bp.refusals(401, 403, 404, 409)
def delete_task(task_id: int) -> tuple[str, int]:
    """Delete a finished task (admins only; a pending or running task must be cancelled first: 409)."""
    principal = current_principal()
    visible_task(principal, task_id)
    if not is_admin(principal):
        raise ApiError(403, "forbidden", "Only administrators can delete tasks.")
    task_service.delete_task(db.session, task_id)
    db.session.commit()
    return "", 204


@bp.get(f"{TASK}/results")
@bp.response(200, ResultsSchema)
@bp.refusals(401, 404)
def results_json(task_id: int) -> dict[str, Any]:
    """Every row of the task in file order with its outcome."""
    task = visible_task(current_principal(), task_id)
    return {"task_id": task.id, "status": task.status, "rows": list(iter_results(db.session, task_id))}


@bp.get(f"{TASK}/results.csv")
@bp.alt_response(200, schema={"type": "string"}, content_type="text/csv", success=True,
                 description="UTF-8 CSV with a byte-order mark; cells are safe to open in a spreadsheet")
@bp.refusals(401, 404)
def results_csv(task_id: int) -> Response:
    """Every row of the task as CSV, the same file as `scholarise results`."""
    visible_task(current_principal(), task_id)
    buffer = io.StringIO()
    buffer.write("\ufeff")
    write_results_csv(db.session, task_id, buffer)
    return Response(buffer.getvalue(), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="results-{task_id}.csv"'})
