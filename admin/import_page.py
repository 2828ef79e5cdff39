"""The bulk import page: choose a file, see every problem by line, then confirm to start the task.

Nothing is created before the confirmation: the upload is validated in full (the same reader and
schemas the task uses) and kept server-side under a random token until the person confirms or
discards it. Staff import into their own branch only; admins choose or name one.
"""

from __future__ import annotations

from typing import Any

from flask import abort, current_app, flash, redirect, request, url_for
from flask_admin import expose
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from sqlalchemy import select
from werkzeug.wrappers import Response
from wtforms import IntegerField, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, NumberRange, Optional

from admin.auth import SecurePage, is_admin
from admin.extensions import db
from admin.uploads import UploadStore
from scholarise.config import Settings
from scholarise.errors import ScholariseError
from scholarise.models import Branch
from scholarise.schemas import FIELD_LABELS, USER_TYPES, field_names, required_fields

MAX_ERRORS_SHOWN = 500
ENCODINGS = [SelectChoice(value, label) for value, label in (
    ("", "Detect automatically"), ("utf-8", "UTF-8"), ("cp1252", "Windows (Western European, cp1252)"),
    ("latin-1", "Latin-1 (ISO-8859-1)"), ("cp1251", "Windows (Cyrillic, cp1251)"),
    ("cp1250", "Windows (Central European, cp1250)"), ("utf-16", "UTF-16"))]


class UploadForm(FlaskForm):  # type: ignore[misc]
    file = FileField("CSV file", validators=[FileRequired("Choose the CSV file to import.")])
    branch = StringField("Branch", validators=[Optional(), Length(max=120)])
    priority = IntegerField("Priority", default=5, validators=[
        DataRequired("Choose a priority from 1 to 10."),
        NumberRange(1, 10, "The priority is a whole number from 1 (runs first) to 10 (runs last).")])
    title = StringField("Task title", validators=[Optional(), Length(max=200)])
    encoding = SelectField("Text encoding", choices=ENCODINGS, default="")


def _settings() -> Settings:
    return current_app.extensions["scholarise_settings"]  # type: ignore[no-any-return]


def _store() -> UploadStore:
    return UploadStore(_settings().instance_path / "uploads")


class ImportPage(SecurePage):
    allow_staff = True

    @expose("/")
    def index(self) -> Any:
        return self.render("admin/import/index.html", user_types=USER_TYPES, columns=_columns())

    @expose("/<user_type>/template.csv")
    def template_csv(self, user_type: str) -> Response:
        if user_type not in USER_TYPES:
            abort(404)
        header = ",".join(field_names(user_type)) + "\r\n"
        return Response(header.encode("utf-8-sig"), mimetype="text/csv", headers={
            "Content-Disposition": f'attachment; filename="{user_type}s-template.csv"'})

    @expose("/<user_type>/", methods=("GET", "POST"))
    def upload(self, user_type: str) -> Any:
        if user_type not in USER_TYPES:
            abort(404)
        form = UploadForm()
        error = None
        if form.validate_on_submit():
            try:
                pending = self._save(form, user_type)
            except ScholariseError as exc:
                error = str(exc)
            else:
                error = self._check_readable(pending)
                if error is None:
                    return redirect(url_for(".preview", token=pending.token))
        from admin.errors import too_large_message

        status = 400 if request.method == "POST" else 200
        max_bytes = _settings().max_upload_bytes
        return self.render("admin/import/upload.html", form=form, user_type=user_type, error=error,
                           branches=self._branch_names(), columns=_columns()[user_type],
                           max_mb=max_bytes // (1024 * 1024), max_bytes=max_bytes,
                           too_large=too_large_message()), status

    @expose("/preview/<token>")
    def preview(self, token: str) -> Any:
        from scholarise.csvfile import open_csv
        from scholarise.tasks import build_report

        pending, path = self._pending(token)
        settings = _settings()
        try:
            with open_csv(path, pending.user_type, encoding=pending.encoding, max_bytes=settings.max_upload_bytes,
                          max_rows=settings.max_rows) as csv_file:
                report = build_report(csv_file)
                detected = csv_file.encoding_source == "detected"
                encoding = csv_file.encoding
        except ScholariseError as exc:
            _store().discard(token)
            flash(str(exc), "error")
            return redirect(url_for(".upload", user_type=pending.user_type))
        return self.render("admin/import/preview.html", pending=pending, report=report, detected=detected,
                           encoding=encoding, errors=report.invalid[:MAX_ERRORS_SHOWN],
                           fields=field_names(pending.user_type), labels=FIELD_LABELS)

    @expose("/preview/<token>/confirm", methods=("POST",))
    def confirm(self, token: str) -> Any:
        import actors
        from actors.imports import NotQueuedError
        from scholarise.csvfile import open_csv

        pending, path = self._pending(token)
        settings = _settings()
        payload = {"user_type": pending.user_type, "priority": pending.priority, "source": pending.filename,
                   "encoding": pending.encoding}
        payload.update({"branch_id": pending.branch_id} if pending.branch_id else {"branch": pending.branch})
        db.session.rollback()  # the task is created in its own transaction
        try:
            with open_csv(path, pending.user_type, encoding=pending.encoding, max_bytes=settings.max_upload_bytes,
                          max_rows=settings.max_rows) as csv_file:
                payload.update(encoding=csv_file.encoding, encoding_source=csv_file.encoding_source)
                task_id = actors.create_bulk_task(
                    "BULK_USER_CREATION", pending.title, f"{pending.user_type.title()}s from {pending.filename}",
                    payload, created_by=self.user.email, rows=csv_file)
        except NotQueuedError as exc:  # stored: confirming again would import the file twice
            _store().discard(token)
            flash(f"{exc}. There is no need to upload the file again.", "warning")
            return redirect(url_for("tasks.details_view", id=exc.task_id))
        except ScholariseError as exc:
            flash(f"The import was not started: {exc}", "error")
            return redirect(url_for(".preview", token=token))
        _store().discard(token)
        flash(f"Import started as task #{task_id}. Its progress shows here and under “Activity” at the top of "
              "every page.", "success")
        return redirect(url_for("tasks.details_view", id=task_id))

    @expose("/preview/<token>/discard", methods=("POST",))
    def discard(self, token: str) -> Any:
        pending, _path = self._pending(token)
        _store().discard(token)
        flash("The upload was discarded; nothing was imported.", "info")
        return redirect(url_for(".upload", user_type=pending.user_type))

    # -- helpers ---------------------------------------------------------------------------------

    def _save(self, form: UploadForm, user_type: str) -> Any:
        from scholarise.errors import InputError

        upload = form.file.data
        filename = (upload.filename or "upload.csv").replace("\\", "/").rsplit("/", 1)[-1][:200]
        if is_admin(self.user):
            branch_name = (form.branch.data or "").strip()
            if not branch_name:
                raise InputError("Choose the branch (campus) these people belong to, or type a new branch name.")
            branch, branch_id = branch_name, None
        else:
            branch, branch_id = self.user.branch_name, self.user.branch_id
        title = (form.title.data or "").strip() or f"Import {user_type}s from {filename}"
        return _store().save(upload.stream, max_bytes=_settings().max_upload_bytes, owner_id=self.user.id,
                             user_type=user_type, filename=filename, branch=branch, branch_id=branch_id,
                             priority=int(form.priority.data), title=title, encoding=form.encoding.data or None)

    def _check_readable(self, pending: Any) -> str | None:
        """Whole-file problems (binary, no header, missing column…) go back to the form, values kept."""
        from scholarise.csvfile import open_csv

        settings = _settings()
        try:
            with open_csv(_store().path(pending), pending.user_type, encoding=pending.encoding,
                          max_bytes=settings.max_upload_bytes, max_rows=settings.max_rows):
                return None
        except ScholariseError as exc:
            _store().discard(pending.token)
            return str(exc)

    def _pending(self, token: str) -> Any:
        try:
            pending = _store().load(token, self.user.id)
        except ScholariseError as exc:
            flash(str(exc), "error")
            abort(redirect(url_for(".index")))
        return pending, _store().path(pending)

    def _branch_names(self) -> list[str]:
        if not is_admin(self.user):
            return [self.user.branch_name or ""]
        return list(db.session.scalars(select(Branch.name).order_by(Branch.name)))


def _columns() -> dict[str, list[tuple[str, str, bool]]]:
    """Per user type: (column, label, required) in template order."""
    return {t: [(f, FIELD_LABELS.get(f, f), f in required_fields(t)) for f in field_names(t)] for t in USER_TYPES}
