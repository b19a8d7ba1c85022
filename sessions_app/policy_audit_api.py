"""GET /sessions/<id>/policy-audit: a session's policy decisions (api.md §5.5)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from enigma_site.api import ApiView, ok
from policies import selectors as policy_selectors
from policies.serializers import SessionPolicyAuditSerializer

from .selectors import session_get


class SessionPolicyAuditApi(ApiView):
    @extend_schema(responses={200: SessionPolicyAuditSerializer})
    def get(self, request: Request, session_id: str) -> Response:
        session = session_get(team=self.principal.team, session_id=session_id)
        entries = policy_selectors.session_policy_audit(team=self.principal.team, session_id=session.pk)
        return ok(
            sessionId=session.pk,
            policyId=session.config.get("policyId"),
            entries=[policy_selectors.audit_body(e) for e in entries],
        )
