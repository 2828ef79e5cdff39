"""Scholarise background services: the plain library (no Flask, no Dramatiq).

Config, models, CSV reading and validation, identity providers, the task service and batch
processing. ``actors`` (Dramatiq) and ``admin`` (Flask) build on it; it imports neither.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
