"""The plain JSON websocket of the live view: /ws/view/<viewer token>/.

Used by the viewer page (templates/viewer.html), also inside the dashboard. Server to client:
`{"type": "hello", control, humanControl, state, url, title}`, `{"type": "frame", data, url, title,
timestamp, sentAt}`, `{"type": "event", name, data, eventId}`, `{"type": "error", error, code,
details}`, `{"type": "end_session", reason}`; never the session id. Client to server: a
send-message `message` of actionType "interaction" (only with a control token).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from channels.generic.websocket import AsyncJsonWebsocketConsumer

from enigma_site.errors import ApiError

from ..events import group_name
from ..frames import FrameFeed, frames_watch
from .access import error_payload, socket_db, viewer_grant_read, viewer_message_apply, without_session_id
from .sio import RUNNER_STARTED
from .viewers import ViewerLease

logger = logging.getLogger(__name__)

CLOSE_INVALID_TOKEN = 4403
CLOSE_SESSION_ENDED = 4410


class ViewerConsumer(AsyncJsonWebsocketConsumer):
    session_id = ""
    control = False
    lease: ViewerLease | None = None
    frames: FrameFeed | None = None
    frames_task: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        token = self.scope["url_route"]["kwargs"]["token"]
        try:
            session, self.control = await socket_db(viewer_grant_read)(token)
        except ApiError:
            await self.close(code=CLOSE_INVALID_TOKEN)
            return
        self.session_id = session.pk
        await self.accept()
        if not session.is_live:
            await self.send_json({"type": "end_session", "reason": session.end_reason or session.state})
            await self.close(code=CLOSE_SESSION_ENDED)
            return
        await self.channel_layer.group_add(group_name(self.session_id), self.channel_name)
        self.frames = await frames_watch(self.session_id)
        await self.send_json(
            self.shown(
                {
                    "type": "hello",
                    "control": self.control,
                    "humanControl": session.human_control,
                    "state": session.state,
                    "url": session.current_url,
                    "title": session.current_title,
                }
            )
        )
        self.frames_task = asyncio.create_task(self._pump_frames(self.frames))
        self.lease = ViewerLease(self.session_id)
        await self.lease.start()

    async def disconnect(self, code: int) -> None:
        if self.frames_task is not None:
            self.frames_task.cancel()
            await asyncio.gather(self.frames_task, return_exceptions=True)  # a send to a gone client
        if self.frames is not None:
            self.frames.close()
        if self.lease is not None:
            await self.lease.stop()
        if self.session_id:
            await self.channel_layer.group_discard(group_name(self.session_id), self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        try:
            await socket_db(viewer_message_apply)(session_id=self.session_id, control=self.control, raw=content)
        except ApiError as exc:
            await self.send_json(self.shown(error_payload(exc)))
        except Exception:
            logger.exception("viewer message of session %s failed", self.session_id)
            await self.send_json(
                {"type": "error", "error": "Internal server error", "code": "INTERNAL_ERROR", "details": {}}
            )

    def shown(self, payload: dict[str, Any]) -> dict[str, Any]:
        """What a viewer may see: never the session id (the page may be someone else's)."""
        return without_session_id(payload, self.session_id)

    async def _pump_frames(self, frames: FrameFeed) -> None:
        while True:
            frame = await frames.next()
            await self.send_json(self.shown({**frame, "type": "frame"}))

    async def session_event(self, message: dict[str, Any]) -> None:
        payload = message["payload"]
        await self.send_json(
            self.shown({"type": "event", "name": message["name"], "data": payload, "eventId": message["id"]})
        )
        if message["name"] == "end_session":
            await self.send_json({"type": "end_session", "reason": payload.get("reason", "")})
            await self.close(code=CLOSE_SESSION_ENDED)
        elif self.lease is not None and (payload.get("type") in RUNNER_STARTED or message["name"] in RUNNER_STARTED):
            await self.lease.nudge()
