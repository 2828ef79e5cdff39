"""Dramatiq actors and the public Python API for submitting background work.

Usage::

    import actors
    from scholarise.config import Settings

    actors.configure(Settings.from_env())
    task_id = actors.create_bulk_task("BULK_USER_CREATION", "Import teachers", "", {
        "type": "teacher", "branch": "Main Campus",
        "items": [{"first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.org"}],
    })
"""

from __future__ import annotations

from actors.api import (
    cancel_task,
    create_bulk_task,
    get_all_tasks,
    get_task,
    live_worker_count,
    resume_task,
    retry_failed_rows,
    wait_for_task,
)
from actors.broker import configure
from actors.health import recover_work, run_health_probe
from actors.imports import process_batch, ring
from actors.notifications import send_email
from actors.services import get_service_status, initialize, restart_services, shutdown

__all__ = [
    # Setup and services
    "configure",
    "get_service_status",
    "initialize",
    "restart_services",
    "shutdown",
    # Python API
    "cancel_task",
    "create_bulk_task",
    "get_all_tasks",
    "get_task",
    "live_worker_count",
    "resume_task",
    "retry_failed_rows",
    "wait_for_task",
    # Actors
    "process_batch",
    "recover_work",
    "ring",
    "run_health_probe",
    "send_email",
]
