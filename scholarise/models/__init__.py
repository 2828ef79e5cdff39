"""Database models (SQLAlchemy 2.x), one module per aggregate."""

from __future__ import annotations

from scholarise.models.api_token import ApiToken
from scholarise.models.auth import AdminUser, Role, SignInAttempt
from scholarise.models.base import Base, utcnow
from scholarise.models.email import EmailConfiguration, EmailNotification, NotificationStatus, Security
from scholarise.models.monitoring import CheckStatus, HealthCheck, HealthRun, ProcessRole, WorkerHeartbeat
from scholarise.models.people import PERSON_MODELS, Branch, Employee, LocalAccount, Student, Teacher
from scholarise.models.tasks import (
    BackgroundTask,
    ItemStatus,
    TaskExecutionLog,
    TaskItem,
    TaskStatus,
    TaskType,
)

__all__ = [
    "ApiToken",
    "AdminUser",
    "Role",
    "SignInAttempt",
    "PERSON_MODELS",
    "BackgroundTask",
    "Base",
    "Branch",
    "Employee",
    "ItemStatus",
    "LocalAccount",
    "Student",
    "TaskExecutionLog",
    "TaskItem",
    "TaskStatus",
    "TaskType",
    "Teacher",
    "utcnow",
    # Email
    "EmailConfiguration",
    "EmailNotification",
    "NotificationStatus",
    "Security",
    # Monitoring
    "CheckStatus",
    "HealthCheck",
    "HealthRun",
    "ProcessRole",
    "WorkerHeartbeat",
]
