"""The email configuration page (``/settings/email-config``): global and per-branch SMTP and preferences.

Validation and storage are :mod:`scholarise.email_settings` (the same rules as the JSON API); the
checks are :mod:`scholarise.smtp_check`. The password is write-only: the page only ever says
whether one is stored, and an empty password field keeps it.
"""

from __future__ import annotations

from typing import Any

from flask import abort, current_app, flash, redirect, request, url_for
from flask_admin import expose
from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms import BooleanField, EmailField, IntegerField, PasswordField, SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import NumberRange, Optional

from admin.auth import SecurePage
from admin.extensions import db
from scholarise.config import Settings
from scholarise.errors import ScholariseError
from scholarise.models import Branch, EmailConfiguration

SECURITY_CHOICES = [SelectChoice("starttls", "STARTTLS (usually port 587)"),
                    SelectChoice("ssl", "SSL / implicit TLS (usually port 465)"),
                    SelectChoice("none", "No encryption (port 25; only inside a trusted network)")]
FLAGS = ("enabled", "notify_on_success", "notify_on_failure", "include_task_details", "include_error_log")


class EmailForm(FlaskForm):  # type: ignore[misc]
    host = StringField("SMTP server", validators=[Optional()])
    port = IntegerField("Port", validators=[Optional(), NumberRange(1, 65535, "A port is a number from 1 to 65535.")])
    security = SelectField("Security", choices=SECURITY_CHOICES, default="starttls")
    username = StringField("User name", validators=[Optional()])
    password = PasswordField("Password", validators=[Optional()])
    clear_password = BooleanField("Remove the stored password")
    from_address = EmailField("From address", validators=[Optional()])
    from_name = StringField("From name", validators=[Optional()])
    recipients = TextAreaField("Admin recipients", validators=[Optional()])
    enabled = BooleanField("Send notification emails", default=True)
    notify_on_success = BooleanField("When a task completes", default=True)
    notify_on_failure = BooleanField("When a task fails or completes with errors", default=True)
    include_task_details = BooleanField("Include the task details", default=True)
    include_error_log = BooleanField("Include the error log (first failed rows)", default=True)


class TestForm(FlaskForm):  # type: ignore[misc]
    to = StringField("Send the test email to", validators=[Optional()])


def _settings() -> Settings:
    return current_app.extensions["scholarise_settings"]  # type: ignore[no-any-return]


class EmailConfigPage(SecurePage):
    """Admins only."""

    @expose("/", methods=("GET", "POST"))
    def index(self) -> Any:
        from scholarise.email_settings import EmailSettingsError, get_configuration, save_configuration

        branch_id, branch = self._scope()
        row = get_configuration(db.session, branch_id)
        form = EmailForm(obj=_FormValues(row))
        status = 200
        if form.validate_on_submit() and _recipients_ok(form):
            try:
                save_configuration(db.session, branch_id, _payload(form), settings=_settings(),
                                   updated_by=self.user.email)
                db.session.commit()
                flash(f"Email settings for {_scope_name(branch)} saved.", "success")
                return redirect(url_for(".index", branch=_scope_arg(branch_id)))
            except EmailSettingsError as exc:
                db.session.rollback()
                _attach_errors(form, exc.errors)
                status = 400
            except ScholariseError as exc:
                db.session.rollback()
                form.form_errors.append(str(exc))
                status = 400
        elif request.method == "POST":
            status = 400
        return self._page(form, branch_id, branch, row), status

    @expose("/test-connection", methods=("POST",))
    def test_connection(self) -> Any:
        from scholarise.smtp_check import test_connection

        branch_id, branch = self._scope()
        result = test_connection(db.session, branch_id=branch_id, settings=_settings())
        flash(("Test connection: " if result.ok else "Test connection failed: ") + result.message,
              "success" if result.ok else "error")
        return redirect(url_for(".index", branch=_scope_arg(branch_id)))

    @expose("/send-test", methods=("POST",))
    def send_test(self) -> Any:
        from scholarise.smtp_check import send_test_email

        branch_id, branch = self._scope()
        form = TestForm()
        try:
            result = send_test_email(db.session, branch_id=branch_id, settings=_settings(),
                                     to=(form.to.data or "").strip() or None)
            flash(("Test email: " if result.ok else "Test email failed: ") + result.message,
                  "success" if result.ok else "error")
        except ScholariseError as exc:
            flash(f"Test email not sent: {exc}", "error")
        return redirect(url_for(".index", branch=_scope_arg(branch_id)))

    @expose("/remove", methods=("POST",))
    def remove(self) -> Any:
        from scholarise.email_settings import delete_configuration

        branch_id, branch = self._scope()
        if branch_id is None:
            abort(400)
        if delete_configuration(db.session, branch_id):
            db.session.commit()
            flash(f"Branch {branch.name} now uses the global email settings.", "success")
        return redirect(url_for(".index", branch=_scope_arg(branch_id)))

    # -- helpers ---------------------------------------------------------------------------

    def _scope(self) -> tuple[int | None, Branch | None]:
        raw = request.args.get("branch", "global")
        if raw == "global":
            return None, None
        branch = db.session.get(Branch, int(raw)) if raw.isdigit() else None
        if branch is None:
            abort(404)
        return branch.id, branch

    def _page(self, form: EmailForm, branch_id: int | None, branch: Branch | None,
              row: EmailConfiguration | None) -> str:
        from scholarise.email_settings import describe

        branches = list(db.session.scalars(select(Branch).order_by(Branch.name)))
        configured = set(db.session.scalars(select(EmailConfiguration.branch_id)))
        return self.render("admin/email/config.html", form=form, test_form=TestForm(), branch=branch,
                           branch_arg=_scope_arg(branch_id), scope_name=_scope_name(branch), branches=branches,
                           configured=configured, row=row, has_password=bool(row and row.has_password),
                           effective=describe(db.session, branch_id, settings=_settings())["effective"])


class _FormValues:
    """The stored row as form defaults (never the password)."""

    def __init__(self, row: EmailConfiguration | None) -> None:
        self.host = row.host if row else None
        self.port = row.port if row else None
        self.security = row.security if row else "starttls"
        self.username = row.username if row else None
        self.from_address = row.from_address if row else None
        self.from_name = row.from_name if row else None
        self.recipients = "\n".join(row.recipients or []) if row else ""
        for flag in FLAGS:
            setattr(self, flag, getattr(row, flag) if row else True)


def _payload(form: EmailForm) -> dict[str, Any]:
    data: dict[str, Any] = {
        "host": form.host.data or "", "port": form.port.data, "security": form.security.data,
        "username": form.username.data or "", "from_address": form.from_address.data or "",
        "from_name": form.from_name.data or "", "recipients": form.recipients.data or "",
        "clear_password": bool(form.clear_password.data),
    }
    data.update({flag: bool(getattr(form, flag).data) for flag in FLAGS})
    if form.password.data:
        data["password"] = form.password.data
    return data


def _recipients_ok(form: EmailForm) -> bool:
    """Name each address that is not one (the service's list errors only give positions)."""
    from scholarise.mail_config import is_address, split_addresses

    bad = [a for a in split_addresses(form.recipients.data or "") if not is_address(a)]
    if bad:
        verb = "is not an email address" if len(bad) == 1 else "are not email addresses"
        form.recipients.errors = [f"{', '.join(repr(a) for a in bad)} {verb}."]
    return not bad


def _attach_errors(form: EmailForm, errors: dict[str, list[str]]) -> None:
    for name, messages in errors.items():
        field = getattr(form, name.split(".")[0], None)
        if field is not None and hasattr(field, "errors"):
            field.errors = list(field.errors) + [_sentence(m) for m in messages]
        else:
            form.form_errors.extend(_sentence(m) for m in messages)


def _sentence(message: Any) -> str:
    if isinstance(message, dict):  # per-item errors of a list (recipients)
        return "; ".join(f"entry {int(k) + 1}: {' '.join(map(str, v))}" for k, v in message.items())
    return str(message)


def _scope_arg(branch_id: int | None) -> str:
    return "global" if branch_id is None else str(branch_id)


def _scope_name(branch: Branch | None) -> str:
    return "all branches (global)" if branch is None else f"branch {branch.name}"
