"""The JSON the header task dropdown polls: active tasks with live progress, recently finished ones."""

from __future__ import annotations

from typing import Any

from flask import jsonify
from flask_admin import expose

from admin.auth import SecurePage, branch_scope
from admin.extensions import db
from admin.task_views import task_json
from scholarise import activity

RECENT = 5


class TaskFeed(SecurePage):
    """Not a page of its own (hidden from the menu); every page's header script polls it."""

    allow_staff = True

    def is_visible(self) -> bool:
        return False

    @expose("/")
    def index(self) -> Any:
        scope = branch_scope(self.user)
        active = activity.active_tasks(db.session, branch_id=scope)
        recent = activity.recent_finished_tasks(db.session, branch_id=scope, limit=RECENT)
        return jsonify(active=[task_json(t, self.user) for t in active],
                       recent=[task_json(t, self.user) for t in recent])
