"""Marshmallow schemas of the task endpoints: they validate every input and generate the OpenAPI description.

Task-level values (title, user type, branch, priority, batch size) are checked here; each *row* of
an import is judged later by ``scholarise.schemas`` exactly like a CSV row, so a bad row becomes a
failed item with its reason instead of refusing the whole request.
"""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask_smorest.fields import Upload
from marshmallow import fields, validate, validates_schema
from werkzeug.datastructures import FileStorage

from scholarise.models import ItemStatus, TaskStatus, TaskType
from scholarise.schemas import USER_TYPES

MAX_PER_PAGE = 200
MAX_ID = 2**31 - 1  # ids are 32-bit integers in the database
ID = validate.Range(min=1, max=MAX_ID)


class TaskListQuery(ma.Schema):
    status = fields.String(validate=validate.OneOf(TaskStatus.ALL))
    type = fields.String(validate=validate.OneOf([TaskType.BULK_USER_CREATION]),
                         metadata={"description": "Task type"})
    user_type = fields.String(validate=validate.OneOf(USER_TYPES))
    branch_id = fields.Integer(validate=ID, metadata={"description": "Only this branch's tasks"})
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=100_000))
    per_page = fields.Integer(load_default=50, validate=validate.Range(min=1, max=MAX_PER_PAGE))


class TaskSchema(ma.Schema):
    """A task as listed: identity, state and counters."""

    id = fields.Integer(required=True)
    type = fields.String(required=True)
    user_type = fields.String(required=True)
    title = fields.String(required=True)
    status = fields.String(required=True, validate=validate.OneOf(TaskStatus.ALL))
    priority = fields.Integer(required=True, metadata={"description": "1 (first) to 10 (last)"})
    branch_id = fields.Integer(required=True)
    branch = fields.String(attribute="branch.name", required=True)
    created_by = fields.String(allow_none=True, required=True)
    total = fields.Integer(required=True)
    processed = fields.Integer(required=True)
    created = fields.Integer(attribute="created_count", required=True)
    existing = fields.Integer(attribute="existing_count", required=True)
    failed = fields.Integer(attribute="failed_count", required=True)
    cancelled = fields.Integer(attribute="cancelled_count", required=True,
                               metadata={"description": "Rows a cancel stopped before they were worked"})
    progress = fields.Float(required=True,
                            metadata={"description": "Percent of rows worked (created, existing or failed), 0-100"})
    created_at = fields.DateTime(required=True)
    started_at = fields.DateTime(allow_none=True, required=True)
    finished_at = fields.DateTime(allow_none=True, required=True)


class TaskPageSchema(ma.Schema):
    items = fields.List(fields.Nested(TaskSchema), required=True)
    page = fields.Integer(required=True)
    per_page = fields.Integer(required=True)
    total = fields.Integer(required=True, metadata={"description": "Tasks matching the filters"})
    pages = fields.Integer(required=True)


class FailureSchema(ma.Schema):
    line = fields.Integer(required=True, attribute="row_number")
    email = fields.String(allow_none=True, required=True)
    code = fields.String(allow_none=True, required=True, attribute="error_code")
    reason = fields.String(allow_none=True, required=True, attribute="error_message")


class TaskDetailSchema(TaskSchema):
    """One task with its row counts per status and its first failed rows."""

    description = fields.String(required=True)
    duration_seconds = fields.Float(allow_none=True, required=True)
    error_summary = fields.String(allow_none=True, required=True)
    heartbeat_at = fields.DateTime(allow_none=True, required=True)
    source = fields.String(allow_none=True, required=True, metadata={"description": "The uploaded file's name"})
    counts = fields.Dict(keys=fields.String(validate=validate.OneOf(ItemStatus.OPEN + ItemStatus.DONE)),
                         values=fields.Integer(), required=True, metadata={"description": "Rows per row status"})
    failures = fields.List(fields.Nested(FailureSchema), required=True,
                           metadata={"description": "The first failed rows in file order (all: results)"})


class TaskInputSchema(ma.Schema):
    """What both ways of creating a task share (JSON items, CSV upload)."""

    title = fields.String(validate=validate.Length(min=1, max=200))
    description = fields.String(load_default="", validate=validate.Length(max=5000))
    user_type = fields.String(required=True, validate=validate.OneOf(USER_TYPES))
    branch = fields.String(validate=validate.Length(min=1, max=120),
                           metadata={"description": "Branch name (created if new); staff: their own"})
    branch_id = fields.Integer(validate=ID, metadata={"description": "Or the branch's id"})
    priority = fields.Integer(load_default=5, validate=validate.Range(min=1, max=10))
    batch_size = fields.Integer(validate=validate.Range(min=1, max=500))
    dry_run = fields.Boolean(load_default=False, metadata={"description": "Validate and report; create nothing"})

    @validates_schema
    def _one_branch(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data.get("branch") is not None and data.get("branch_id") is not None:
            raise ma.ValidationError("Give the branch name or branch_id, not both.", "branch")
        if data.get("branch") is not None and not data["branch"].strip():
            raise ma.ValidationError("The branch name cannot be blank.", "branch")


class TaskCreateSchema(TaskInputSchema):
    title = fields.String(required=True, validate=validate.Length(min=1, max=200))
    type = fields.String(load_default=TaskType.BULK_USER_CREATION,
                         validate=validate.OneOf([TaskType.BULK_USER_CREATION]))
    priority = fields.Integer(strict=True, load_default=5, validate=validate.Range(min=1, max=10))
    batch_size = fields.Integer(strict=True, validate=validate.Range(min=1, max=500))
    branch_id = fields.Integer(strict=True, validate=ID)
    items = fields.List(
        fields.Dict(keys=fields.String(), values=fields.Raw(allow_none=True)), required=True,
        validate=validate.Length(min=1),
        metadata={"description": "People to create: first_name, last_name, email and the user type's optional "
                                 "fields (same names as the CSV template). Invalid rows become failed rows."},
    )


class UploadField(Upload):
    """A file part of a multipart body (documented as a binary string)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> FileStorage:
        if not isinstance(value, FileStorage):
            raise ma.ValidationError("Attach the CSV file as a file part named 'file'.")
        return value


class TaskUploadSchema(TaskInputSchema):
    file = UploadField(required=True, metadata={"description": "The CSV file (UTF-8, UTF-16 or a Windows code page)"})
    encoding = fields.String(validate=validate.Length(min=1, max=40),
                             metadata={"description": "The file's encoding when it has no byte-order mark"})


class ReportRowSchema(ma.Schema):
    line = fields.Integer(required=True)
    data = fields.Dict(required=True)
    errors = fields.List(fields.String(), required=True)


class ReportErrorSchema(ma.Schema):
    line = fields.Integer(required=True)
    errors = fields.List(fields.String(), required=True)


class DryRunSchema(ma.Schema):
    """What would be imported; nothing was stored."""

    dry_run = fields.Boolean(required=True)
    total = fields.Integer(required=True)
    valid = fields.Integer(required=True)
    invalid = fields.Integer(required=True)
    errors = fields.List(fields.Nested(ReportErrorSchema), required=True)
    encoding = fields.String(allow_none=True, required=True)
    encoding_source = fields.String(allow_none=True, required=True)
    preview = fields.List(fields.Nested(ReportRowSchema), required=True)


class RetrySchema(ma.Schema):
    queued = fields.Integer(required=True, metadata={"description": "Rows queued again"})
    task = fields.Nested(TaskDetailSchema, required=True)


class ResultRowSchema(ma.Schema):
    line = fields.Integer(required=True)
    status = fields.String(required=True, validate=validate.OneOf(ItemStatus.OPEN + ItemStatus.DONE))
    email = fields.String(allow_none=True, required=True)
    first_name = fields.String(allow_none=True, required=True)
    last_name = fields.String(allow_none=True, required=True)
    external_user_id = fields.String(allow_none=True, required=True)
    error_code = fields.String(allow_none=True, required=True)
    error_message = fields.String(allow_none=True, required=True)


class ResultsSchema(ma.Schema):
    task_id = fields.Integer(required=True)
    status = fields.String(required=True)
    rows = fields.List(fields.Nested(ResultRowSchema), required=True)
