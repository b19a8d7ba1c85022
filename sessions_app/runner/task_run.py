"""Runs one task through the agent: its spec, its time budget (maxDuration counts only time not
spent paused, under takeover or waiting for a human), its outcome, its settlement
(sessions_app.lifecycle)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from django.db.models import F

from agents.browser import BlockedNavigation
from agents.loop import run_agent
from agents.types import AgentError, AgentResult, SecretEntry, TaskSpec, TaskStopped
from environments import selectors as environment_selectors

from .. import lifecycle
from ..config import TaskConfig
from ..models import BrowserSession, Task
from .support import db

if TYPE_CHECKING:
    from .session import SessionRunner

logger = logging.getLogger(__name__)

BUDGET_TICK_S = 0.5


class TaskCallbacks:
    """AgentCallbacks for one task: events, usage, pause/stop checkpoints, guardrails."""

    def __init__(self, runner: SessionRunner, task: Task) -> None:
        self.runner = runner
        self.task = task

    async def event(self, kind: str, payload: dict[str, Any]) -> None:
        body: dict[str, Any]
        if kind == "agent":
            body = {"type": "agent", "content": str(payload.get("content", "")), "taskId": self.task.pk}
        elif kind == "action":
            body = {
                "type": "action",
                "data": {"name": payload.get("name"), "target": payload.get("target")},
                "taskId": self.task.pk,
            }
        else:
            body = {
                "type": "response_update",
                "data": {"message": str(payload.get("message", ""))},
                "taskId": self.task.pk,
            }
        await self.runner.emit("message", body, task_id=self.task.pk)

    async def usage(self, input_tokens: int, output_tokens: int) -> None:
        task = self.task
        task.input_tokens += input_tokens
        task.output_tokens += output_tokens
        await db(Task.objects.filter(pk=task.pk).update)(
            input_tokens=F("input_tokens") + input_tokens, output_tokens=F("output_tokens") + output_tokens
        )
        await db(BrowserSession.objects.filter(pk=self.runner.session_id).update)(
            input_tokens=F("input_tokens") + input_tokens, output_tokens=F("output_tokens") + output_tokens
        )

    async def checkpoint(self) -> None:
        runner = self.runner
        while True:
            if runner.stop_requested:
                raise TaskStopped()
            if not (runner.paused or runner.human_control):
                return
            runner.resumed.clear()
            await runner.resumed.wait()

    async def ask_human(self, question: str) -> str:
        return await self.runner.raise_guardrail(self.task, question)


async def task_run(runner: SessionRunner, task: Task, config: TaskConfig) -> None:
    """Run the claimed `task` to its outcome and settle it (lifecycle.task_finish)."""
    assert runner.browser is not None and runner.policy is not None and runner.session is not None
    await db(task.refresh_from_db)()
    runner.current_task, runner.stop_requested, runner.blocked_hosts = task, False, set()
    runner.policy.avoid_domains = sorted(set(runner.config.avoid_domains) | set(config.avoid_domains))
    await runner.gate.reload()
    spec = TaskSpec(
        prompt=task.prompt,
        max_input_tokens=config.max_input_tokens,
        max_output_tokens=config.max_output_tokens,
        output_type=config.output_type,
        output_schema=config.output_schema,
        secrets=tuple(
            SecretEntry(match=s["match"], fields=s["fields"]) for s in runner.commands.secrets.pop(task.pk, [])
        ),
        files=tuple(await db(environment_selectors.file_paths)(team=runner.session.team_id, file_ids=config.files)),
        role=await runner.gate.role(),
    )
    outcome: dict[str, Any]
    try:
        result = await _supervise(runner, task, spec, config)
        extra = result.extra or {}
        outcome = {
            "state": Task.State.COMPLETED,
            "result_message": result.message,
            "result_data": {k: extra[k] for k in ("files", "network") if extra.get(k)},
        }
    except TaskStopped:
        outcome = {"state": Task.State.STOPPED, "error": "Task was stopped", "code": "TASK_STOPPED"}
    except TimeoutError:
        outcome = {
            "state": Task.State.FAILED,
            "code": "TASK_TIMEOUT",
            "error": f"Task exceeded maximum duration of {config.max_duration_ms}ms",
        }
    except AgentError as exc:
        outcome = {"state": Task.State.FAILED, "code": exc.code, "error": exc.message, "error_details": exc.details}
    except BlockedNavigation as exc:
        outcome = {
            "state": Task.State.FAILED,
            "code": "NAVIGATION_BLOCKED",
            "error": f"Navigation to {exc.url} was blocked: {exc.reason}",
            "error_details": {"url": exc.url, "reason": exc.reason},
        }
    except asyncio.CancelledError:
        if not runner.stop_requested:
            raise
        outcome = {"state": Task.State.STOPPED, "error": "Task was stopped", "code": "TASK_STOPPED"}
    except Exception as exc:  # the boundary of the agent's run (the page, the model provider, the agent)
        logger.exception("task %s crashed", task.pk)
        code = "PAGE_CRASH" if "crash" in str(exc).lower() or "closed" in str(exc).lower() else "INTERNAL_ERROR"
        outcome = {
            "state": Task.State.FAILED,
            "code": code,
            "error": "Browser page crashed during execution" if code == "PAGE_CRASH" else lifecycle.INTERNAL_ERROR,
        }
    finally:
        runner.current_task = None
        runner.agent_task = None
    files = await runner.downloads.collect(task)
    if files and outcome["state"] == Task.State.COMPLETED:
        outcome["result_data"]["files"] = files
    outcome = runner.vault.scrub_obj(outcome)  # page text, URLs: clean, and no secret value
    await runner.commands.forget_task(task.pk)
    if await db(lifecycle.task_finish)(session_id=runner.session_id, task_id=task.pk, **outcome):
        await runner.checkpoint_browser()


async def _supervise(runner: SessionRunner, task: Task, spec: TaskSpec, config: TaskConfig) -> AgentResult:
    """Run the agent; raise TimeoutError when its budget (maxDuration) is used up."""
    assert runner.browser is not None
    if config.starting_url:
        await runner.browser.goto(config.starting_url)
    agent = runner.agent_task = asyncio.create_task(
        run_agent(
            runner.browser.page,
            spec,
            TaskCallbacks(runner, task),
            provider=runner.runtime.provider,
            gate=runner.gate.agent_gate(task),
        )
    )
    budget = config.max_duration_ms / 1000
    used = 0.0
    while True:
        started = time.monotonic()
        done, _ = await asyncio.wait({agent}, timeout=min(BUDGET_TICK_S, max(0.01, budget - used)))
        if done:
            return agent.result()
        if not (runner.paused or runner.human_control or runner.waiting_human):
            used += time.monotonic() - started
        if used >= budget:
            agent.cancel()
            await asyncio.gather(agent, return_exceptions=True)
            raise TimeoutError()
