"""REST additions of raw CDP access (issue 16): mint and revoke a session's CDP tokens, list the
files its browser downloaded."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from enigma_site.api import ApiView, ok, public_base_url
from enigma_site.errors import ApiError
from enigma_site.serializers import validated
from environments.models import StoredFile
from environments.selectors import file_body

from . import selectors
from . import serializers as shapes
from .cdp import cdp_token_create, cdp_tokens_revoke, connect_url, token_ttl_s
from .models import BrowserSession
from .services import session_ended_error


class CdpNotEnabled(ApiError):
    status_code = 409
    code = "CDP_NOT_ENABLED"
    default_message = 'This session was started without "cdp": true'


class CdpTokensApi(ApiView):
    """POST: a new connectUrl (body {ttlSeconds?}); DELETE: revoke every token of the session
    (clients connected with one are closed; the API-key header way stays open)."""

    rate_scope = "start-session"

    def _session(self, session_id: str) -> BrowserSession:
        session = selectors.session_get(team=self.principal.team, session_id=session_id)
        if not session.config.get("cdp"):
            raise CdpNotEnabled()
        return session

    @extend_schema(request=shapes.CdpTokenSerializer, responses={200: shapes.CdpTokenResponseSerializer})
    def post(self, request: Request, session_id: str) -> Response:
        session = self._session(session_id)
        if not session.is_live:
            raise session_ended_error(session)
        body = validated(shapes.CdpTokenSerializer(data=request.data if isinstance(request.data, dict) else {}))
        token, ttl = cdp_token_create(session_id=session.pk, ttl_s=body.get("ttlSeconds", token_ttl_s()))
        return ok(connectUrl=connect_url(base_url=public_base_url(request), token=token), expiresIn=ttl * 1000)

    @extend_schema(responses={200: shapes.CdpRevokeResponseSerializer})
    def delete(self, request: Request, session_id: str) -> Response:
        session = self._session(session_id)
        return ok(revoked=cdp_tokens_revoke(session.pk))


class SessionFilesApi(ApiView):
    """The files the session's browser downloaded (by a task or a CDP client)."""

    @extend_schema(responses={200: shapes.SessionFilesSerializer})
    def get(self, request: Request, session_id: str) -> Response:
        session = selectors.session_get(team=self.principal.team, session_id=session_id)
        base = public_base_url(request)
        rows = StoredFile.objects.filter(
            team_id=session.team_id, session_id=session.pk, kind=StoredFile.Kind.DOWNLOAD
        ).order_by("created_at")
        return ok(
            files=[
                {
                    **file_body(f),
                    "taskId": f.task_id or None,
                    "sourceUrl": f.source_url,
                    "downloadUrl": f"{base}/files/{f.pk}/download",
                }
                for f in rows
            ]
        )


cdp_tokens = CdpTokensApi.as_view()
session_files = SessionFilesApi.as_view()
