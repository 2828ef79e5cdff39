"""The Flask-Admin site: built per app, views registered in one place."""

from __future__ import annotations

from flask import Flask, redirect, url_for
from flask_admin import Admin

from admin.extensions import db
from admin.views import register_views


def build_admin(app: Flask) -> Admin:
    """Create the Admin site for ``app`` with every view."""
    site = Admin(app, name="Scholarise", url="/admin")
    register_views(site, db)

    @app.route("/")
    def index():  # type: ignore[no-untyped-def]
        return redirect(url_for("admin.index"))

    return site
