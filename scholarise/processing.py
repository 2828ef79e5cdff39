"""Working a task: claim a batch atomically, resolve its rows with the provider, commit, finish.

The database is the source of truth. A batch is claimed with a compare-and-set on its rows (and
``SKIP LOCKED`` on PostgreSQL), worked with no transaction open, and committed guarded by the
claim token. A worker that dies leaves its rows claimed; once the claim's lease expires (or
``resume_task`` releases it) any worker takes them again, and the provider look-up that starts
every batch links what the dead worker had already created, so nothing is created twice.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, TypeVar

from sqlalchemy import bindparam, exists, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from scholarise import tasks as task_service
from scholarise.claims import Claim, ClaimedRow, claim_batch, release_claim
from scholarise.config import Settings
from scholarise.db import session_scope
from scholarise.errors import ProviderFatalError, ProviderRetryableError, ProviderUnavailableError
from scholarise.models import PERSON_MODELS, BackgroundTask, ItemStatus, TaskItem, TaskStatus, utcnow
from scholarise.providers.base import Account, AlreadyExistsError, IdentityProvider, NewUser, RowRejectedError

logger = logging.getLogger(__name__)

T = TypeVar("T")
FinishHook = Callable[[Session, BackgroundTask], None]
MAX_RATE_LIMIT_WAIT = 600.0


@dataclass
class WorkContext:
    """What a worker needs to process batches; built once per worker thread or process."""

    session_factory: sessionmaker[Session]
    provider: IdentityProvider
    settings: Settings
    worker_id: str
    sleep: Callable[[float], None] = time.sleep
    backoff_base: float = 0.5
    on_task_finished: list[FinishHook] = field(default_factory=list)


@dataclass(frozen=True)
class RowOutcome:
    item_id: int
    status: str
    external_user_id: str | None = None
    code: str | None = None
    message: str | None = None


@dataclass(frozen=True)
class BatchResult:
    task_id: int | None
    rows: int
    more_work: bool


def process_next_batch(ctx: WorkContext) -> BatchResult:
    """Claim, resolve and commit one batch. Raises ProviderUnavailableError after releasing the batch."""
    with session_scope(ctx.session_factory) as session:
        finish_idle_tasks(ctx, session)
        claim = claim_batch(session, worker_id=ctx.worker_id, batch_size=ctx.settings.batch_size,
                            lease_seconds=ctx.settings.batch_lease_seconds)
    if claim is None:
        return BatchResult(None, 0, more_work=False)
    outcomes: list[RowOutcome] = []
    try:
        resolve_batch(ctx, claim, outcomes)
    except ProviderFatalError as exc:
        with session_scope(ctx.session_factory) as session:
            write_outcomes(session, claim, outcomes)  # rows decided before the refusal keep their result
            stop_task(ctx, session, claim.task_id, str(exc))
        return BatchResult(claim.task_id, len(outcomes), more_work=True)
    except ProviderUnavailableError as exc:
        with session_scope(ctx.session_factory) as session:
            write_outcomes(session, claim, outcomes)
            release_claim(session, claim, str(exc))
        raise
    except BaseException as exc:  # shutdown, time limit, bug: hand the rows back at once, then re-raise
        with session_scope(ctx.session_factory) as session:
            release_claim(session, claim, f"the worker was interrupted ({type(exc).__name__})")
        raise
    with session_scope(ctx.session_factory) as session:
        write_outcomes(session, claim, outcomes)
        after_batch(ctx, session, claim.task_id)
    return BatchResult(claim.task_id, len(outcomes), more_work=True)


# --- talking to the provider -------------------------------------------------------------------


def resolve_batch(ctx: WorkContext, claim: Claim, outcomes: list[RowOutcome] | None = None) -> list[RowOutcome]:
    """Decide every row of the batch: link what exists, create the rest. No database transaction is open.

    Outcomes are appended to ``outcomes`` as they are decided, so a caller that catches a provider
    error still knows (and records) the rows settled before it.
    """
    outcomes = [] if outcomes is None else outcomes
    provider = ctx.provider
    ext_ids = [task_service.external_id_for(r.email) for r in claim.rows]
    # Creating is safe without asking first: the provider refuses a taken email or external id, and
    # that refusal is resolved by a look-up. Asking first pays off only where accounts probably exist:
    # rows tried before (a crash or hand-back may have created them) and tasks already finding accounts.
    ask = [(r, x) for r, x in zip(claim.rows, ext_ids, strict=True) if claim.expect_existing or r.attempts > 1]
    found: list[Account] = []
    if ask:
        emails, ask_ids = [r.email for r, _ in ask], [x for _, x in ask]
        found = _with_retries(ctx, lambda: provider.find_users(emails=emails, external_ids=ask_ids), "look-up")
    by_ext = {a.external_id: a for a in found if a.external_id}
    by_email = {a.email.lower(): a for a in found}
    for row, ext_id in zip(claim.rows, ext_ids, strict=True):
        account = by_ext.get(ext_id) or by_email.get(row.email)
        if account is not None:
            outcomes.append(_linked(row, account, claim.task_id))
        else:
            outcomes.append(_create(ctx, claim, row, ext_id))
    return outcomes


def _linked(row: ClaimedRow, account: Account, task_id: int) -> RowOutcome:
    # An account carrying this task's id in its metadata was created by an earlier attempt of this task.
    ours = account.private_metadata.get("scholarise_task") == task_id
    return RowOutcome(row.id, ItemStatus.CREATED if ours else ItemStatus.EXISTING, account.id)


def _create(ctx: WorkContext, claim: Claim, row: ClaimedRow, ext_id: str) -> RowOutcome:
    provider = ctx.provider
    user = NewUser(
        email=row.email,
        first_name=str(row.data.get("first_name") or ""),
        last_name=str(row.data.get("last_name") or ""),
        external_id=ext_id,
        private_metadata={"scholarise_task": claim.task_id, "scholarise_row": row.line, "user_type": claim.user_type},
    )

    def lookup() -> Account | None:
        for account in provider.find_users(emails=[row.email], external_ids=[ext_id]):
            if account.external_id == ext_id or account.email.lower() == row.email:
                return account
        return None

    def reconcile() -> Account | None:
        try:
            return lookup()
        except ProviderRetryableError:
            return None

    try:
        account = _with_retries(ctx, lambda: provider.create_user(user), "create", reconcile=reconcile)
        return _linked(row, account, claim.task_id)
    except AlreadyExistsError as exc:
        account = _with_retries(ctx, lookup, "look-up")
        if account is not None:
            return _linked(row, account, claim.task_id)
        taken = ", ".join(exc.params) or "an identifier"
        return RowOutcome(row.id, ItemStatus.FAILED, None, "identifier_exists",
                          f"The provider says {taken} is already taken by another account: {exc}")
    except RowRejectedError as exc:
        return RowOutcome(row.id, ItemStatus.FAILED, None, exc.code, str(exc))


def _with_retries(ctx: WorkContext, call: Callable[[], T], what: str, *,
                  reconcile: Callable[[], T | None] | None = None) -> T:
    """Run ``call``; wait out 429s (not counted as attempts), back off exponentially on other transient errors.

    After an ambiguous failure (the request may have taken effect) ``reconcile`` is asked first.

    Raises:
        ProviderUnavailableError: transient failures outlasted ``provider_max_attempts`` (or 429s
            kept us waiting longer than ten minutes).
    """
    attempts = 0
    waited = 0.0
    while True:
        try:
            return call()
        except ProviderRetryableError as exc:
            if exc.retry_after is not None:
                delay = max(0.05, float(exc.retry_after))
                waited += delay
                if waited > MAX_RATE_LIMIT_WAIT:
                    raise ProviderUnavailableError(
                        f"The provider kept rate-limiting the {what} for {waited:.0f} s.") from exc
            else:
                attempts += 1
                if attempts >= ctx.settings.provider_max_attempts:
                    raise ProviderUnavailableError(
                        f"The provider failed the {what} {attempts} times in a row; last error: {exc}") from exc
                delay = min(30.0, ctx.backoff_base * 2 ** (attempts - 1)) * random.uniform(0.8, 1.2)
            logger.info("provider %s failed transiently (%s); retrying in %.2f s", what, exc, delay)
            ctx.sleep(delay)
            if exc.ambiguous and reconcile is not None:
                found = reconcile()
                if found is not None:
                    return found


# --- writing results -----------------------------------------------------------------------------


def write_outcomes(session: Session, claim: Claim, outcomes: list[RowOutcome]) -> None:
    """Store each row's result, guarded by the claim token (a row re-claimed elsewhere is left to that worker).

    One SELECT finds the rows this claim still holds (locked on PostgreSQL; SQLite holds the write
    lock already), then one executemany UPDATE and one INSERT of new people: a few statements per
    batch instead of several per row.
    """
    if not outcomes:
        return
    held_query = select(TaskItem.id).where(TaskItem.claim_token == claim.token,
                                           TaskItem.status == ItemStatus.PROCESSING)
    if session.get_bind().dialect.name == "postgresql":
        held_query = held_query.with_for_update()
    held = set(session.scalars(held_query))
    mine = [o for o in outcomes if o.item_id in held]
    if not mine:
        return
    now = utcnow()
    table = TaskItem.__table__
    session.execute(
        table.update().where(table.c.id == bindparam("item_id")).values(
            status=bindparam("new_status"), external_user_id=bindparam("account"), error_code=bindparam("code"),
            error_message=bindparam("message"), finished_at=now, claim_token=None),
        [{"item_id": o.item_id, "new_status": o.status, "account": o.external_user_id, "code": o.code,
          "message": o.message} for o in mine],
    )
    rows = {r.id: r for r in claim.rows}
    linked = [(rows[o.item_id], o.external_user_id) for o in mine
              if o.status in (ItemStatus.CREATED, ItemStatus.EXISTING)]
    if linked:
        _record_people(session, claim, linked)


_DATE_FIELDS = {"date_of_joining", "date_of_birth"}


def _person_values(model: Any, claim: Claim, row: ClaimedRow, external_user_id: str | None) -> dict[str, Any]:
    columns = set(model.__table__.columns.keys())
    values: dict[str, Any] = {k: v for k, v in row.data.items() if k in columns and v not in (None, "")}
    for key in _DATE_FIELDS & values.keys():
        values[key] = date.fromisoformat(str(values[key]))
    values.update(email=row.email, branch_id=claim.branch_id, external_user_id=external_user_id)
    values.setdefault("last_name", "")
    return values


def _record_people(session: Session, claim: Claim, linked: list[tuple[ClaimedRow, str | None]]) -> None:
    """Insert the local Teacher/Employee/Student records of linked rows; people already recorded keep theirs."""
    model = PERSON_MODELS[claim.user_type]
    known = dict(session.execute(
        select(model.email, model.external_user_id).where(model.email.in_([r.email for r, _ in linked]))
    ).all())
    missing_link = [(r.email, acct) for r, acct in linked if r.email in known and not known[r.email] and acct]
    for email, account in missing_link:
        session.execute(update(model).where(model.email == email).values(external_user_id=account))
    new = [_person_values(model, claim, r, acct) for r, acct in linked if r.email not in known]
    if not new:
        return
    try:
        with session.begin_nested():
            session.execute(insert(model), new)
    except IntegrityError:  # a concurrent task recorded one of them a moment ago: go one by one
        for values in new:
            try:
                with session.begin_nested():
                    session.execute(insert(model), [values])
            except IntegrityError:
                logger.info("person %s already recorded by a concurrent task", values["email"])


def after_batch(ctx: WorkContext, session: Session, task_id: int) -> None:
    """Finish the task if this was its last open row, else write progress at most once per interval."""
    if session.get_bind().dialect.name == "postgresql":
        # Serialise the "was that the last batch?" check so two workers finishing together cannot both miss it.
        session.execute(select(BackgroundTask.id).where(BackgroundTask.id == task_id).with_for_update())
    open_rows = exists().where(TaskItem.task_id == task_id, TaskItem.status.in_(ItemStatus.OPEN))
    open_left = session.scalar(select(open_rows))
    if not open_left:
        finish_task(ctx, session, task_id)
        return
    now = utcnow()
    progress_at = session.scalar(select(BackgroundTask.progress_at).where(BackgroundTask.id == task_id))
    if progress_at is not None and (now - progress_at).total_seconds() < ctx.settings.progress_interval:
        return
    write_progress(session, task_id, worker_id=ctx.worker_id, now=now)


def write_progress(session: Session, task_id: int, *, worker_id: str | None = None,
                   now: datetime | None = None) -> None:
    """One UPDATE of the task's counters, progress and heartbeat from its rows."""
    now = now or utcnow()
    values = task_service.counter_values(task_service.item_counts(session, task_id))
    extra = {"worker_id": worker_id} if worker_id else {}
    session.execute(
        update(BackgroundTask).where(BackgroundTask.id == task_id)
        .values(**values, progress_at=now, heartbeat_at=now, **extra)
        .execution_options(synchronize_session=False)
    )



def finish_idle_tasks(ctx: WorkContext, session: Session) -> int:
    """Finish active tasks that have no open row left (every row invalid, or a finisher that crashed)."""
    open_rows = exists().where(TaskItem.task_id == BackgroundTask.id, TaskItem.status.in_(ItemStatus.OPEN))
    idle = session.scalars(
        select(BackgroundTask.id).where(BackgroundTask.status.in_(TaskStatus.ACTIVE), ~open_rows)
    ).all()
    return sum(1 for task_id in idle if finish_task(ctx, session, task_id))


def finish_task(ctx: WorkContext, session: Session, task_id: int) -> bool:
    """Write the final status and summary once (compare-and-set), then run the finish hooks in this transaction."""
    values = task_service.counter_values(task_service.item_counts(session, task_id))
    now = utcnow()
    failed, total = values["failed_count"], values["total"]
    if failed == 0:
        status, summary = TaskStatus.COMPLETED, None
    elif failed < total:
        status, summary = TaskStatus.COMPLETED_WITH_ERRORS, f"{failed} of {total} rows failed."
    else:
        status, summary = TaskStatus.FAILED, f"No row could be imported: all {total} rows failed."
    won = task_service.transition(session, task_id, TaskStatus.ACTIVE, status, finished_at=now, progress_at=now,
                                  error_summary=summary, **values)
    if not won:  # cancelled meanwhile: keep its status, but leave exact counters
        session.execute(update(BackgroundTask).where(BackgroundTask.id == task_id).values(**values, progress_at=now)
                        .execution_options(synchronize_session=False))
        return False
    task_service.log(session, task_id,
                     f"Finished: {task_service.status_words(status)} — {values['created_count']} created, "
                     f"{values['existing_count']} already existed, {failed} failed.",
                     level="INFO" if status == TaskStatus.COMPLETED else "WARNING", details=values)
    _run_finish_hooks(ctx, session, task_id)
    return True


def _run_finish_hooks(ctx: WorkContext, session: Session, task_id: int) -> None:
    if not ctx.on_task_finished:
        return
    session.flush()
    task = session.get(BackgroundTask, task_id)
    assert task is not None
    session.refresh(task)
    for hook in ctx.on_task_finished:
        hook(session, task)


def stop_task(ctx: WorkContext, session: Session, task_id: int, reason: str) -> None:
    """The provider refuses all work: fail the task at once with the reason; open rows are marked not attempted."""
    session.execute(
        update(TaskItem)
        .where(TaskItem.task_id == task_id, TaskItem.status.in_(ItemStatus.OPEN))
        .values(status=ItemStatus.FAILED, error_code="not_attempted", error_message=f"Not attempted: {reason}",
                claim_token=None, finished_at=utcnow())
    )
    values = task_service.counter_values(task_service.item_counts(session, task_id))
    if task_service.transition(session, task_id, TaskStatus.ACTIVE, TaskStatus.FAILED, finished_at=utcnow(),
                               error_summary=reason, progress_at=utcnow(), **values):
        task_service.log(session, task_id, f"Stopped: {reason}", level="ERROR")
        _run_finish_hooks(ctx, session, task_id)


def tasks_with_work(session: Session) -> list[int]:
    """Ids of active tasks, most urgent first (what a recovery re-rings the bell for)."""
    return list(session.scalars(
        select(BackgroundTask.id).where(BackgroundTask.status.in_(TaskStatus.ACTIVE))
        .order_by(BackgroundTask.priority, BackgroundTask.created_at)
    ))




def waiting_tasks(session: Session) -> list[int]:
    """Ids of PENDING tasks (not started yet, or retried), most urgent first."""
    return list(session.scalars(
        select(BackgroundTask.id).where(BackgroundTask.status == TaskStatus.PENDING)
        .order_by(BackgroundTask.priority, BackgroundTask.created_at)
    ))
