"""Automation policies: block a click and a navigation, pause on a guardrail, audit all of it."""

from __future__ import annotations

import time
from typing import Any

from policies.engine import PolicyInvalid, Target, action_target, evaluate, evaluate_action, validate_rules
from tests.conftest import Api
from tests.environments.helpers import new_task, start


def create_policy(api: Api, **body: Any) -> str:
    response = api.post("/policies", {"name": "guard", **body})
    assert response.status_code == 201, response.text
    return response.json()["policy"]["_id"]


def test_domain_patterns_and_precedence() -> None:
    rules = validate_rules(
        {
            "domainRules": {
                "mode": "blocklist",
                "entries": [
                    {"pattern": "example.com", "action": "block"},
                    {"pattern": "*.shop.com", "action": "guardrail"},
                    {"pattern": "*bad.com", "action": "block"},
                ],
            },
            "actionRules": [
                {"category": "click", "match": "buy", "action": "guardrail"},
                {"category": "click", "match": "buy now", "action": "block"},
            ],
        }
    )
    verdict = lambda url: evaluate(rules, category="navigation", url=url, target_url=url).action  # noqa: E731
    assert verdict("https://example.com/x") == "block"
    assert verdict("https://www.example.com/x") == "allow"
    assert verdict("https://a.b.shop.com/") == "guardrail" and verdict("https://shop.com/") == "allow"
    assert verdict("https://bad.com/") == verdict("https://x.bad.com/") == verdict("https://verybad.com/") == "block"
    click = evaluate(rules, category="click", url="https://ok.org/", target='button "Buy now"')
    assert click.action == "block" and "buy now" in click.rule
    allowlist = validate_rules({"domainRules": {"mode": "allowlist", "entries": [{"pattern": "ok.org"}]}})
    assert evaluate(allowlist, category="click", url="https://other.org/").action == "block"
    assert evaluate(allowlist, category="click", url="https://ok.org/").action == "allow"


def test_policy_crud_and_validation(api: Api) -> None:
    bad = api.post("/policies", {"name": "x", "actionRules": [{"category": "teleport", "action": "block"}]})
    assert bad.status_code == 400 and bad.json()["details"]["parameter"] == "actionRules[0].category"
    assert api.post("/policies", {"description": "no name"}).json()["message"] == "Policy name is required"
    policy_id = create_policy(
        api,
        defaultAction="allow",
        actionRules=[{"category": "navigation", "urlPattern": "*/admin/*", "action": "guardrail"}],
    )
    got = api.get(f"/policies/{policy_id}").json()["policy"]
    assert got["actionRules"][0]["urlPattern"] == "*/admin/*" and got["status"] == "active"
    updated = api.http.put(api.base + f"/policies/{policy_id}", json={"status": "draft"}, headers=api._headers(None))
    assert updated.json()["policy"]["status"] == "draft"
    draft = api.post("/start/start-session", {"policyId": policy_id})
    assert draft.status_code == 400 and draft.json()["details"]["parameter"] == "policyId"
    assert api.http.delete(api.base + f"/policies/{policy_id}", headers=api._headers(None)).status_code == 200
    assert api.get(f"/policies/{policy_id}").status_code == 404


def test_policy_blocks_a_matching_click_and_a_blocked_domain(api: Api, pages: str) -> None:
    policy_id = create_policy(
        api,
        domainRules={"mode": "blocklist", "entries": [{"pattern": "localhost", "action": "block"}]},
        actionRules=[
            {"category": "click", "scope": "target", "matchType": "regex", "match": "(?i)delete", "action": "block"}
        ],
    )
    session = start(api, policyId=policy_id)
    sid = session["sessionId"]
    blocked = new_task(api, sid, f"go to {pages}/policy.html then click Delete account")
    assert blocked["status"] == "failed" and blocked["code"] == "POLICY_BLOCKED", blocked
    allowed = new_task(api, sid, "click Save changes then wait 0.3 seconds then extract the title")
    assert allowed["data"]["message"] == "Changes saved", allowed  # and never "Account deleted"
    port = pages.rsplit(":", 1)[1]
    navigation = new_task(api, sid, f"go to http://localhost:{port}/hello.html")
    assert navigation["status"] == "failed" and navigation["code"] == "POLICY_BLOCKED", navigation
    # A manual click on the blocked button is refused too.
    assert api.message(sid, {"actionType": "interaction", "action": {"type": "CLICK", "x": 200, "y": 285}}).ok
    deadline = time.time() + 10
    entries: list[dict[str, Any]] = []
    while time.time() < deadline:
        entries = api.get(f"/sessions/{sid}/policy-audit").json()["entries"]
        if any(e["source"] == "human" for e in entries):
            break
        time.sleep(0.1)
    decisions = [(e["source"], e["action"], e["decision"]) for e in entries]
    assert ("agent", "click_element", "block") in decisions
    assert ("agent", "click_element", "allow") in decisions
    assert ("agent", "navigate", "block") in decisions
    assert ("human", "CLICK", "block") in decisions
    blocked_click = next(e for e in entries if e["decision"] == "block" and e["action"] == "click_element")
    assert "delete" in blocked_click["matchedRule"].lower() and blocked_click["policyId"] == policy_id
    title = new_task(api, sid, "extract the title")
    assert title["data"]["message"] == "Changes saved"


def test_guardrail_rule_pauses_the_task_until_approved(api: Api, pages: str) -> None:
    policy_id = create_policy(
        api,
        actionRules=[
            {"category": "click", "scope": "target", "matchType": "keyword", "match": "save", "action": "guardrail"}
        ],
    )
    session = start(api, policyId=policy_id)
    sid = session["sessionId"]
    response = api.message(
        sid,
        {
            "actionType": "newTask",
            "taskDetails": f"go to {pages}/policy.html then click "
            "Save changes then wait 0.3 seconds then extract the title",
        },
    )
    task_id = response.json()["taskId"]
    deadline = time.time() + 20
    polled: dict[str, Any] = {}
    while time.time() < deadline:
        polled = api.get(f"/task/{sid}/{task_id}").json()
        if polled.get("status") == "guardrail_trigger":
            break
        time.sleep(0.1)
    assert polled["type"] == "guardrail_trigger", polled
    assert "automation policy" in polled["data"]["value"]
    assert api.message(sid, {"actionType": "guardrail", "taskDetails": "yes, go ahead"}).ok
    done = api.wait_task(sid, task_id)
    assert done["data"]["message"] == "Changes saved", done
    entry = api.get(f"/sessions/{sid}/policy-audit").json()["entries"]
    guarded = next(e for e in entry if e["decision"] == "guardrail")
    assert guarded["response"] == "yes, go ahead" and guarded["taskId"] == task_id


def test_target_scope_matches_the_accessible_name_and_the_role_as_separate_fields() -> None:
    rules = validate_rules(
        {
            "actionRules": [
                {"category": "click", "scope": "target", "matchType": "regex", "match": "^Save", "action": "block"},
                {"category": "click", "role": "link", "action": "guardrail"},
                {
                    "category": "type",
                    "scope": "target",
                    "matchType": "regex",
                    "match": r"^\d{3}-\d{2}-\d{4}$",
                    "action": "block",
                },
            ]
        }
    )

    def verdict(**target: Any) -> str:
        return evaluate(rules, category="click", url="https://ok.org/", target=Target(**target)).action

    assert verdict(role="button", name="Save changes") == "block"
    assert verdict(role="button", name="Do not Save") == "allow"
    assert verdict(role="link", name="Help") == "guardrail"
    assert verdict(role="button", name="Help") == "allow"
    typed = evaluate_action(
        rules,
        name="type_text",
        args={"ref": "e3", "text": "123-45-6789"},
        url="https://ok.org/",
        target=action_target("type_text", {"text": "123-45-6789"}, {"role": "textbox", "name": "SSN"}),
    )
    assert typed.action == "block"
    assert action_target("click_element", {"text": "Save changes"}, None) == Target(name="Save changes")
    bad = {"actionRules": [{"category": "click", "role": "not a role!", "action": "block"}]}
    try:
        validate_rules(bad)
    except PolicyInvalid as exc:
        assert exc.parameter == "actionRules[0].role"
    else:
        raise AssertionError("a bad role was accepted")


def test_anchored_target_rules_and_role_rules_hold_in_a_real_session(api: Api, pages: str) -> None:
    policy_id = create_policy(
        api,
        actionRules=[
            {"category": "click", "scope": "target", "matchType": "regex", "match": "^Delete", "action": "block"},
            {
                "category": "click",
                "scope": "target",
                "role": "link",
                "matchType": "regex",
                "match": "^Help$",
                "action": "block",
            },
        ],
    )
    sid = start(api, policyId=policy_id)["sessionId"]
    blocked = new_task(api, sid, f"go to {pages}/policy.html then click Delete account")
    assert blocked["status"] == "failed" and blocked["code"] == "POLICY_BLOCKED", blocked
    link = new_task(api, sid, "click Help")
    assert link["status"] == "failed" and link["code"] == "POLICY_BLOCKED", link
    allowed = new_task(api, sid, "click Save changes then wait 0.3 seconds then extract the title")
    assert allowed["data"]["message"] == "Changes saved", allowed
    entries = api.get(f"/sessions/{sid}/policy-audit").json()["entries"]
    rules = [e["matchedRule"] for e in entries if e["decision"] == "block"]
    assert any("'^Delete'" in r for r in rules) and any("role link" in r for r in rules), rules
