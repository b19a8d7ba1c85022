"""Writes for sessions and tasks, called by the API, the sockets and the session runner."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from accounts.models import ApiKey, Team
from billing.services import balance_require_for_sessions, balance_require_positive
from enigma_site.errors import ApiError, InvalidParameter, ServiceUnavailable
from enigma_site.redis import get_redis
from environments import selectors as environment_selectors
from environments import services as environment_services
from environments.proxies import proxy_parse, proxy_store
from policies import selectors as policy_selectors

from . import registry, signals
from .commands import command_push, commands_delete
from .config import SessionConfig, TaskConfig, webhook_redacted
from .lifecycle import session_end
from .models import BrowserSession, Task
from .schema import Message, SessionInput, TaskInput
from .tasks import session_dispatch
from .webhook_address import url_block_reason

logger = logging.getLogger(__name__)


class SessionNotActive(ApiError):
    """A message for a session that has ended, with the codes of api.md §1.12 (see
    `session_ended_error`)."""

    status_code = 404
    code = "SESSION_NOT_FOUND"


def session_ended_error(session: BrowserSession) -> SessionNotActive:
    """The error a message to the ended `session` answers (api.md §1.12): 410 SESSION_EXPIRED
    when it ran out of time (inactivity, the lifetime cap); 404 SESSION_NOT_FOUND, the code for a
    session that is gone, for every other ending. `details` names the state and reason."""
    details = {"state": session.state, "reason": session.end_reason}
    if session.end_reason == "expired":
        return SessionNotActive(
            f"Session expired after {settings.ENIGMA_INACTIVITY_TIMEOUT_S:g} seconds of inactivity",
            code="SESSION_EXPIRED",
            status_code=410,
            details=details,
        )
    if session.end_reason == "max_lifetime":
        return SessionNotActive(
            f"Session expired after its maximum lifetime of {settings.ENIGMA_SESSION_MAX_LIFETIME_S:g} seconds",
            code="SESSION_EXPIRED",
            status_code=410,
            details=details,
        )
    return SessionNotActive(
        f"Session {session.pk} has ended ({session.end_reason or session.state}); start a new session", details=details
    )


class SessionLimitReached(ApiError):
    status_code = 429
    code = "SESSION_LIMIT_REACHED"


class NoGuardrailPending(ApiError):
    status_code = 409
    code = "NO_GUARDRAIL_PENDING"
    default_message = "No task in this session is waiting for human input"


def _unsupported(
    team: Team, session_input: SessionInput, task: TaskInput
) -> tuple[dict[str, Any] | None, dict[str, str] | None]:
    """Reject unknown ids and unavailable features (400 naming the field) instead of ignoring them.
    Returns the session proxy parsed (public config, browser settings), or (None, None)."""
    if session_input.environment_id and not environment_selectors.environment_exists(
        team=team, environment_id=session_input.environment_id
    ):
        raise InvalidParameter(
            "environmentId", f"Environment {session_input.environment_id} not found", value=session_input.environment_id
        )
    if session_input.policy_id and not policy_selectors.policy_active_exists(
        team=team, policy_id=session_input.policy_id
    ):
        raise InvalidParameter(
            "policyId", f"Policy {session_input.policy_id} not found (or not active)", value=session_input.policy_id
        )
    proxy: tuple[dict[str, Any] | None, dict[str, str] | None] = (None, None)
    if session_input.proxy is not None:
        proxy = proxy_parse(session_input.proxy)
    _unsupported_task(team, task, session_input.task_prefix)
    return proxy


def _unsupported_task(team: Team | int, task: TaskInput, prefix: str) -> None:
    missing = environment_selectors.files_missing(team=team, file_ids=task.files) if task.files else []
    if missing:
        raise InvalidParameter(f"{prefix}files", f"File {missing[0]} not found", value=missing[0])
    if task.webhook is not None:
        reason = url_block_reason(
            task.webhook["url"], allowed_hosts=settings.ENIGMA_ALLOWED_PRIVATE_HOSTS, resolve=False
        )
        if reason is not None:
            raise InvalidParameter(
                f"{prefix}webhook.url",
                f"Invalid parameter '{prefix}webhook.url': this address may not receive webhooks ({reason})",
                value=task.webhook["url"],
            )


def _environment_attach(session: BrowserSession, task_input: TaskInput, *, first: bool) -> None:
    """Count the environment's use and keep the task's orphan files in it (api.md §5.2)."""
    environment_id = SessionConfig.from_json(session.config).environment_id
    if not environment_id:
        return
    if first:
        environment_services.environment_mark_used(environment_id=environment_id)
    if task_input.files:
        environment_services.files_promote(
            team_id=session.team_id, file_ids=task_input.files, environment_id=environment_id
        )


def _admit(team: Team) -> None:
    """Refuse a new session above the team's limit of live sessions (429) or when the balance
    does not cover one metering interval for each live session of the team, this one included
    (402). Call it in the transaction that creates the session: the row lock on the team admits
    concurrent starts of one team one at a time (also on SQLite, whose transactions here are
    IMMEDIATE)."""
    locked = Team.objects.select_for_update().only("pk", "session_limit", "balance_micros").get(pk=team.pk)
    live = BrowserSession.objects.filter(team_id=team.pk, state__in=BrowserSession.LIVE_STATES).count()
    limit = locked.live_session_limit
    if live >= limit:
        raise SessionLimitReached(
            f"Maximum concurrent sessions reached (limit: {limit})", details={"current": live, "limit": limit}
        )
    balance_require_for_sessions(team=team.pk, sessions=live + 1, balance=locked.balance_micros)


def _require_capacity(*, warm_usable: bool) -> str:
    """The host the new session goes to (sessions_app.registry.placement_choose); 503 when the
    fleet's slots are taken (pending, active and orphaned sessions, wherever they run) or no
    host that takes new sessions has a free one."""
    hosts = registry.live_hosts()  # the fleet is read before the database (see live_hosts)
    capacity = sum(h.capacity for h in hosts)  # a draining host offers none
    used = BrowserSession.objects.filter(state__in=BrowserSession.LIVE_STATES).count()
    host = registry.placement_pick(hosts, warm_usable=warm_usable) if used < capacity else None
    if host is None:
        raise ServiceUnavailable("No available instances.", details={"capacity": capacity, "inUse": used})
    return host


def _task_command(task: Task, task_input: TaskInput) -> dict[str, Any]:
    return {"taskId": task.pk, "secrets": task_input.secrets}


def _task_config(task_input: TaskInput) -> TaskConfig:
    """What is stored on the task row: everything but the secret values."""
    return TaskConfig(
        starting_url=task_input.starting_url,
        max_duration_ms=task_input.max_duration_ms,
        max_input_tokens=task_input.max_input_tokens,
        max_output_tokens=task_input.max_output_tokens,
        avoid_domains=task_input.avoid_domains,
        terminate_on_completion=task_input.terminate_on_completion,
        output_type=task_input.output_type,
        output_schema=task_input.output_schema,
        files=task_input.files,
        webhook=webhook_redacted(task_input.webhook),
        secret_matches=[s["match"] for s in task_input.secrets],
    )


def _create_task(session: BrowserSession, task_input: TaskInput) -> Task:
    seq = (session.tasks.aggregate(m=Max("seq"))["m"] or 0) + 1
    task = Task.objects.create(
        session=session, seq=seq, prompt=task_input.prompt, config=_task_config(task_input).to_json()
    )
    signals.task_created.send(sender=Task, task=task, webhook=task_input.webhook)  # webhooks record it
    return task


def session_start(
    *, team: Team, api_key: ApiKey | None, spec: SessionInput, base_url: str = ""
) -> tuple[BrowserSession, Task | None]:
    """Create a session (and its first task when there is a prompt) and hand it to a worker.
    `base_url` is where the client reached us (the base of the links the worker writes).

    Raises 429 above the team's limit of live sessions, 402 before any work when the balance
    does not cover them (see _admit) and 503 when no browser slot is free.
    """
    proxy_public, proxy_browser = _unsupported(team, spec, spec.task)
    task_input = spec.task
    config = SessionConfig(
        mode=spec.mode,
        reach_out_mode=spec.reach_out_mode,
        max_duration_ms=task_input.max_duration_ms,
        max_input_tokens=task_input.max_input_tokens,
        max_output_tokens=task_input.max_output_tokens,
        avoid_domains=task_input.avoid_domains,
        starting_url=task_input.starting_url,
        terminate_on_completion=task_input.terminate_on_completion,
        initial_prompt=task_input.prompt,
        environment_id=spec.environment_id,
        proxy=proxy_public,
        policy_id=spec.policy_id,
        recording=spec.recording,
        cdp=spec.cdp,
    )
    # One lock around the count and the insert so two requests cannot take the last slot twice.
    with get_redis().lock("enigma:lock:capacity", timeout=10, blocking_timeout=10), transaction.atomic():
        _admit(team)
        host = _require_capacity(warm_usable=not spec.environment_id)  # warm contexts hold no saved state
        session = BrowserSession.objects.create(
            team=team, api_key=api_key, config=config.to_json(), base_url=base_url[:300]
        )
        task = _create_task(session, task_input) if task_input.prompt else None
        if spec.environment_id:  # one live session per environment, else 409 ENVIRONMENT_IN_USE
            environment_services.environment_claim(environment_id=spec.environment_id, session_id=session.pk)
        registry.host_reserve(host, session.pk)  # the next start's placement counts it
    _environment_attach(session, task_input, first=True)
    if proxy_browser is not None:
        proxy_store(session_id=session.pk, browser=proxy_browser)
    if task is not None:
        command_push(session=session, kind="newTask", data=_task_command(task, task_input))
    session_dispatch(session_id=session.pk, host=host)
    return session, task


def _touch(session: BrowserSession) -> None:
    BrowserSession.objects.filter(pk=session.pk).update(last_activity_at=timezone.now())


def _require_live(session: BrowserSession) -> None:
    if not session.is_live:
        raise session_ended_error(session)


def task_submit(*, session: BrowserSession, task_input: TaskInput, prefix: str = "message.") -> Task:
    """Queue a new task; it runs after the tasks before it (never rejected for being busy).
    Without its own maxDuration it gets the session's (spec README §3)."""
    _require_live(session)
    session_max_duration = SessionConfig.from_json(session.config).max_duration_ms
    if "maxDuration" not in task_input.given and session_max_duration:
        task_input.max_duration_ms = session_max_duration
    _unsupported_task(session.team_id, task_input, prefix)
    balance_require_positive(team=session.team_id)
    for attempt in range(5):
        try:
            with transaction.atomic():
                task = _create_task(session, task_input)
            break
        except IntegrityError:  # a concurrent submit took the same seq; take the next one
            if attempt == 4:
                raise
    _touch(session)
    _environment_attach(session, task_input, first=False)
    command_push(session=session, kind="newTask", data=_task_command(task, task_input))
    if not BrowserSession.objects.filter(pk=session.pk, state__in=BrowserSession.LIVE_STATES).exists():
        commands_delete(session.pk)  # it ended meanwhile: the task's secrets go with the stream
    return task


def session_message(*, session: BrowserSession, message: Message) -> Task | None:
    """Apply a send-message `message`; returns the task for newTask."""
    if message.action_type == "newTask":
        assert message.task is not None
        return task_submit(session=session, task_input=message.task)
    _require_live(session)
    if message.action_type == "state" and message.new_state == "terminate":
        _touch(session)
        command_push(session=session, kind="state", data={"newState": "terminate"})
        if session.state == BrowserSession.State.ORPHANED or session.worker_id == "":
            # No runner is holding the browser: end it here (which deletes the stream); a runner
            # that claims it later stops.
            session_end(session_id=session.pk, state=BrowserSession.State.TERMINATED, reason="terminated")
        return None
    if message.action_type == "guardrail":
        if not session.tasks.filter(state=Task.State.GUARDRAIL).exists():
            raise NoGuardrailPending()
        command_push(session=session, kind="guardrail", data={"newState": message.new_state, "answer": message.answer})
    elif message.action_type == "state":
        command_push(session=session, kind="state", data={"newState": message.new_state})
    else:
        command_push(session=session, kind="interaction", data=message.interaction or {})
    _touch(session)
    return None


def sessions_heartbeat(*, worker_id: str, hosted: dict[str, int]) -> set[str]:
    """Heart-beat all sessions a worker hosts in one write; returns the ids still ours."""
    query = BrowserSession.objects.filter(
        pk__in=list(hosted), worker_id=worker_id, state__in=BrowserSession.LIVE_STATES
    )
    query.update(heartbeat_at=timezone.now())
    return {pk for pk, generation in query.values_list("pk", "generation") if hosted.get(pk) == generation}
