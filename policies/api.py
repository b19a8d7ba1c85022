"""REST endpoints: policies (api.md §5.5). A session's audit trail is served by the sessions app
(sessions_app.policy_audit_api), which knows sessions."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from enigma_site.api import ApiView, object_body, ok
from enigma_site.serializers import SuccessMessageSerializer, validated

from . import selectors, services
from . import serializers as shapes


class PolicyListCreateApi(ApiView):
    @extend_schema(responses={200: shapes.PolicyListSerializer})
    def get(self, request: Request) -> Response:
        return ok(policies=[selectors.policy_body(p) for p in selectors.policy_list(team=self.principal.team)])

    @extend_schema(request=shapes.PolicyInputSerializer, responses={201: shapes.PolicyResponseSerializer})
    def post(self, request: Request) -> Response:
        fields = validated(shapes.PolicyInputSerializer(data=object_body(request.data), creating=True))
        policy = services.policy_create(team=self.principal.team, fields=fields)
        return ok(message="Policy created", policy=selectors.policy_body(policy), status=201)


class PolicyDetailApi(ApiView):
    @extend_schema(responses={200: shapes.PolicyResponseSerializer})
    def get(self, request: Request, policy_id: str) -> Response:
        policy = selectors.policy_get(team=self.principal.team, policy_id=policy_id)
        return ok(policy=selectors.policy_body(policy))

    @extend_schema(request=shapes.PolicyInputSerializer, responses={200: shapes.PolicyResponseSerializer})
    def put(self, request: Request, policy_id: str) -> Response:
        policy = selectors.policy_get(team=self.principal.team, policy_id=policy_id)
        fields = validated(shapes.PolicyInputSerializer(data=object_body(request.data), creating=False))
        policy = services.policy_update(policy=policy, fields=fields)
        return ok(policy=selectors.policy_body(policy))

    @extend_schema(responses={200: SuccessMessageSerializer})
    def delete(self, request: Request, policy_id: str) -> Response:
        policy = selectors.policy_get(team=self.principal.team, policy_id=policy_id)
        services.policy_delete(policy=policy)
        return ok(message="Policy deleted")
