"""The Flask-Admin site and what every page relies on: sign-in, CSRF, error pages, assets."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Flask, redirect, url_for
from flask_admin import Admin, expose
from flask_admin.theme import Bootstrap4Theme

from admin.auth import SecureIndexView, branch_scope, init_auth
from admin.extensions import csrf, db
from admin.views import register_views

assets = Blueprint("assets", __name__, static_folder=str(Path(__file__).with_name("static")),
                   static_url_path="/assets")


class HomeView(SecureIndexView):
    """The landing page: what is running, what finished lately, and the import buttons."""

    @expose("/")
    def index(self):  # type: ignore[no-untyped-def]
        from scholarise import activity

        scope = branch_scope(self.user)
        return self.render("admin/home.html", active=activity.active_tasks(db.session, branch_id=scope, limit=10),
                           recent=activity.recent_finished_tasks(db.session, branch_id=scope, limit=10))


def init_site(app: Flask) -> Admin:
    """Bind sign-in and CSRF, error pages and headers, then build the admin site with every view."""
    from admin.errors import register_error_handlers
    from admin.formatting import register_filters
    from admin.signin import bp as signin_bp

    app.config.setdefault("SESSION_COOKIE_SAMESITE", "Lax")
    app.config.setdefault("SESSION_COOKIE_SECURE", app.extensions["scholarise_settings"].public_url.startswith("https"))
    app.config.setdefault("WTF_CSRF_TIME_LIMIT", 12 * 3600)
    csrf.init_app(app)
    init_auth(app)
    app.register_blueprint(signin_bp)
    app.register_blueprint(assets)
    register_error_handlers(app)
    register_filters(app)
    with app.app_context():  # Flask-Admin probes the session handle while views are built
        return build_admin(app)


def build_admin(app: Flask) -> Admin:
    """Create the Admin site for ``app`` with every view."""
    theme = Bootstrap4Theme(base_template="admin/scholarise_base.html", fluid=True)
    site = Admin(app, name="Scholarise", url="/admin", theme=theme,
                 index_view=HomeView(name="Home", url="/admin", endpoint="admin"))
    register_views(site, db)

    @app.route("/")
    def index():  # type: ignore[no-untyped-def]
        return redirect(url_for("admin.index"))

    return site
