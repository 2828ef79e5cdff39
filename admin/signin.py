"""Sign in and sign out (the ``signin`` blueprint): ``/login`` and ``/logout``."""

from __future__ import annotations

import math
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, session, url_for
from flask_login import login_user, logout_user
from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField
from wtforms.validators import DataRequired, Length

from admin.auth import CurrentUser, signed_in
from admin.extensions import db
from admin.navigation import safe_next

bp = Blueprint("signin", __name__)


class SignInForm(FlaskForm):  # type: ignore[misc]
    email = EmailField("Email", validators=[DataRequired("Enter the email address of your account."),
                                            Length(max=254)])
    password = PasswordField("Password", validators=[DataRequired("Enter your password."), Length(max=1024)])


@bp.route("/login", methods=("GET", "POST"))
def login() -> Any:
    """Show the form; on a right answer start a fresh session and go where the person was heading."""
    from scholarise.users import authenticate, has_admin

    target = safe_next(request.values.get("next"), url_for("admin.index"))
    if signed_in() is not None:
        return redirect(target)
    form = SignInForm()
    status, message = 200, None
    headers: dict[str, str] = {}
    if form.validate_on_submit():
        result = authenticate(db.session, form.email.data or "", form.password.data or "",
                              request.remote_addr or "unknown")
        user = CurrentUser.from_model(result.user) if result.user is not None else None
        db.session.commit()  # the attempt counts whether or not it succeeded
        if user is not None:
            session.clear()  # a new session (and CSRF token) for the signed-in person
            login_user(user)
            return redirect(target)
        message = result.message
        status = 429 if result.retry_after else 401
        if result.retry_after:
            headers["Retry-After"] = str(max(1, math.ceil(result.retry_after)))
    elif request.method == "POST":
        status = 400
    return render_template("pages/login.html", form=form, message=message, next=target,
                           no_admin=not has_admin(db.session)), status, headers


@bp.route("/logout", methods=("POST",))
def logout() -> Any:
    logout_user()
    session.clear()
    flash("You are signed out.", "info")
    return redirect(url_for("signin.login"))
