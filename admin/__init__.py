"""The web side: the Flask-Admin site for people and the JSON API for other apps."""

from __future__ import annotations

from flask import Flask

from scholarise.config import Settings


def create_app(settings: Settings | None = None) -> Flask:
    """Build the web app for ``settings`` (default: from the environment).

    Nothing is started here (no workers, no scheduler): ``admin.server`` does that for the
    embedded mode, and the Procfile's worker and clock processes do it in production.
    """
    settings = settings or Settings.from_env()
    app = Flask(__name__, template_folder=str(settings.templates_dir), instance_path=str(settings.instance_path),
                static_folder=None)
    app.config.from_mapping(settings.flask_config())
    app.config["SQLALCHEMY_ENGINES"] = {"default": _engine_options(settings)}
    app.extensions["scholarise_settings"] = settings

    from admin.api import register_api
    from admin.extensions import db
    from admin.site import init_site

    db.init_app(app)
    if settings.database_url.startswith("sqlite"):
        from scholarise.db import prepare_sqlite

        with app.app_context():
            prepare_sqlite(db.engine, immediate=False)
    if settings.trusted_proxies:
        from werkzeug.middleware.proxy_fix import ProxyFix

        n = settings.trusted_proxies  # client address for sign-in limits comes from X-Forwarded-For
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)  # type: ignore[method-assign]
    init_site(app)  # sign-in, CSRF, error pages, the Flask-Admin site
    register_api(app)  # /api: JSON API for other apps (after the site's error handlers and CSRF)
    return app


def _engine_options(settings: Settings) -> dict[str, object]:
    if settings.database_url.startswith("sqlite"):
        return {"url": settings.database_url, "connect_args": {"timeout": 30}}
    return {"url": settings.database_url, "pool_pre_ping": True}
