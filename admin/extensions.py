"""Flask extensions as unbound module objects, bound per app with ``init_app``."""

from __future__ import annotations

from flask_login import LoginManager
from flask_sqlalchemy_lite import SQLAlchemy
from flask_wtf.csrf import CSRFProtect

db = SQLAlchemy()
login_manager = LoginManager()
csrf = CSRFProtect()  # every POST/PUT/PATCH/DELETE needs the token; token-authenticated APIs use csrf.exempt(bp)
