"""Entry module for ``dramatiq actors.worker``: configures the broker from the environment.

This is the one module with an import-time side effect, because Dramatiq's CLI imports a module
to find its broker; everything else configures explicitly.
"""

from __future__ import annotations

from actors.broker import configure
from scholarise.config import Settings

broker = configure(Settings.from_env())
