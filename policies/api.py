"""REST endpoints: policies (api.md §5.5). A session's audit trail is served by the sessions app
(sessions_app.policy_audit_api), which knows sessions."""

from __future__ import annotations

from typing import Any

from rest_framework.request import Request
from rest_framework.response import Response

from enigma_site.api import ApiView, object_body, ok
from enigma_site.errors import InvalidParameter

from . import selectors, services

POLICY_FIELDS = {"name", "description", "llmRole", "status", "defaultAction", "domainRules", "actionRules"}


def _policy_input(data: Any) -> dict[str, Any]:
    body = object_body(data)
    for key in body:
        if key not in POLICY_FIELDS:
            raise InvalidParameter(key, f"Unknown field '{key}'")
    return body


class PolicyListCreateApi(ApiView):
    def get(self, request: Request) -> Response:
        return ok(policies=[selectors.policy_body(p) for p in selectors.policy_list(team=self.principal.team)])

    def post(self, request: Request) -> Response:
        policy = services.policy_create(team=self.principal.team, data=_policy_input(request.data))
        return ok(message="Policy created", policy=selectors.policy_body(policy), status=201)


class PolicyDetailApi(ApiView):
    def get(self, request: Request, policy_id: str) -> Response:
        policy = selectors.policy_get(team=self.principal.team, policy_id=policy_id)
        return ok(policy=selectors.policy_body(policy))

    def put(self, request: Request, policy_id: str) -> Response:
        policy = selectors.policy_get(team=self.principal.team, policy_id=policy_id)
        policy = services.policy_update(policy=policy, data=_policy_input(request.data))
        return ok(policy=selectors.policy_body(policy))

    def delete(self, request: Request, policy_id: str) -> Response:
        policy = selectors.policy_get(team=self.principal.team, policy_id=policy_id)
        services.policy_delete(policy=policy)
        return ok(message="Policy deleted")
