"""Entry module for ``dramatiq actors.worker``: configures the broker from the environment.

This is the one module with an import-time side effect, because Dramatiq's CLI imports a module
to find its broker; everything else configures explicitly.
"""

from __future__ import annotations

from actors.broker import configure
from scholarise.config import Settings
from scholarise.db import upgrade

settings = Settings.from_env()
upgrade(settings)  # idempotent and locked: safe when every process of a deployment starts at once
broker = configure(settings)
