"""Flask extensions as unbound module objects, bound per app with ``init_app``."""

from __future__ import annotations

from flask_sqlalchemy_lite import SQLAlchemy

db = SQLAlchemy()
