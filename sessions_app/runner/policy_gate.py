"""The automation policy of one session (policies.engine): every agent action, every
navigation the page makes and every manual action is judged, audited, and allowed, refused or
held for a human's approval. Domain rules are applied by the egress gate
(WorkerRuntime.bind_policy_rules), which reads `rules` here at each judgement."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from playwright.async_api import Error as PlaywrightError

from policies import engine as policy_engine
from policies import selectors as policy_selectors
from policies import services as policy_services

from ..models import Task
from ..schema import CHROME_HEIGHT
from .support import db

if TYPE_CHECKING:
    from .session import SessionRunner

Gate = Callable[[dict[str, Any]], Awaitable[str | None]]


class PolicyGate:
    def __init__(self, runner: SessionRunner, policy_id: str | None) -> None:
        self.runner = runner
        self.policy_id = policy_id
        self.rules: dict[str, Any] | None = None

    async def load(self) -> None:
        """Read the policy's rules; a navigation URL rule makes the context route its documents
        through `route` (the gate sees only host:port of HTTPS; an interception costs every
        request of the context, so only then)."""
        if not self.policy_id:
            return
        runner = self.runner
        assert runner.browser is not None
        self.rules = await db(policy_selectors.policy_rules)(policy_id=self.policy_id)
        if self.rules and (
            self.rules.get("defaultAction") == "block"
            or any(r.get("category") == "navigation" for r in self.rules.get("actionRules", []))
        ):
            await runner.browser.context.route("**/*", self.route)
        runner.runtime.bind_policy_rules(runner)

    async def reload(self) -> None:
        """Edits to the policy apply from the next task; changed rules cut the gate's open
        connections (WorkerRuntime.bind_policy_rules)."""
        if not self.policy_id:
            return
        self.rules = await db(policy_selectors.policy_rules)(policy_id=self.policy_id) or self.rules
        self.runner.runtime.bind_policy_rules(self.runner)

    async def role(self) -> str:
        """The role the policy gives the agent (part of its system prompt)."""
        if not self.policy_id:
            return ""
        return str(await db(policy_selectors.policy_role)(policy_id=self.policy_id))

    async def audit(
        self, *, source: str, name: str, target: str, url: str, decision: policy_engine.Decision, response: str = ""
    ) -> None:
        runner = self.runner
        assert runner.session is not None
        vault = runner.vault
        task_id = runner.current_task.pk if runner.current_task else ""
        await db(policy_services.policy_audit_record)(
            team_id=runner.session.team_id,
            session_id=runner.session_id,
            task_id=task_id,
            policy_id=self.policy_id or "",
            source=source,
            action=name,
            category=",".join(policy_engine.categories_for(name, {})) or "",
            target=vault.scrub(target),
            url=vault.scrub(url),
            rule=decision.rule,
            decision=decision.action,
            response=vault.scrub(response),
        )

    def agent_gate(self, task: Task) -> Gate | None:
        """Checks every agent action: block refuses it, guardrail pauses the task for a human."""
        if self.rules is None:
            return None

        async def gate(action: dict[str, Any]) -> str | None:
            assert self.rules is not None
            runner = self.runner
            name, args = action["name"], action["args"]
            target_url = str(args.get("url", "")) if name == "navigate" else ""
            target = action["target"]
            if name == "type_text" and args.get("text"):
                target = f"{target} {args['text']}"
            decision = policy_engine.evaluate_action(
                self.rules,
                name=name,
                args=args,
                url=action["url"],
                target=policy_engine.action_target(name, args, action.get("element")),
                target_url=target_url,
                page_text=action["pageText"],
            )
            answer = ""
            if decision.action == "guardrail":
                answer = await runner.raise_guardrail(
                    task,
                    f"The automation policy asks for approval before {name} {action['target']} "
                    f"({decision.rule}). Reply yes to proceed, or say what to do instead.",
                )
                if target_url and policy_engine.APPROVAL_RE.match(answer):
                    runner.runtime.approve_host(runner.policy, target_url)
            await self.audit(
                source="agent",
                name=name,
                target=target,
                url=target_url or action["url"],
                decision=decision,
                response=answer,
            )
            if decision.action == "block":
                return (
                    f"Blocked by the automation policy ({decision.rule}). Do not retry this action; "
                    "find another way or report that it is not allowed."
                )
            if decision.action == "guardrail" and not policy_engine.APPROVAL_RE.match(answer):
                return f"The human did not approve this action ({decision.rule}). They said: {answer}"
            return None

        return gate

    async def route(self, route: Any) -> None:
        """Network layer: navigations (from links, scripts, redirects) to blocked targets fail."""
        request = route.request
        rules = self.rules
        try:
            if rules is not None and request.resource_type == "document" and request.is_navigation_request():
                decision = policy_engine.evaluate(rules, category="navigation", url=request.url, target_url=request.url)
                if decision.action == "block":
                    await self.audit(
                        source="network", name="navigate", target=request.url, url=request.url, decision=decision
                    )
                    await route.abort("blockedbyclient")
                    return
            await route.fallback()
        except PlaywrightError:  # the page or its request went away meanwhile
            return

    async def allows_manual(self, action: dict[str, Any]) -> bool:
        """Manual actions pass the same rules; one needing approval is refused (the human acts)."""
        runner = self.runner
        if self.rules is None or runner.browser is None:
            return True
        kind = action["type"]
        match_text = target = ""
        if kind in ("CLICK", "DOUBLE_CLICK"):
            try:
                target = str(
                    await runner.browser.page.evaluate(
                        "([x, y]) => { const el = document.elementFromPoint(x, y); return el ? "
                        "(el.innerText || el.value || el.getAttribute('aria-label') || el.tagName).slice(0, 200) : ''; }",
                        [action["x"], action["y"] - CHROME_HEIGHT],
                    )
                )
            except PlaywrightError:
                target = ""
            match_text = target
        elif kind == "TYPE":
            match_text, target = action["text"], f"{len(action['text'])} characters"
        else:
            match_text = target = action.get("key", "")
        url = runner.browser.page.url
        decision = policy_engine.evaluate_action(self.rules, name=kind, args=action, url=url, target=match_text)
        await self.audit(source="human", name=kind, target=target, url=url, decision=decision)
        if decision.action == "allow":
            return True
        await runner.emit(
            "message",
            {
                "type": "error",
                "code": "POLICY_BLOCKED",
                "source": "human",
                "error": f"The automation policy does not allow this action ({decision.rule})",
            },
        )
        return False
