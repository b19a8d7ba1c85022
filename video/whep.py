"""The WHEP live stream behind `streaming.webRTCURL` (api.md §5.10), on the web tier.

Frames cross processes the way the JPEG live view's do: the worker that hosts the session
publishes screencast JPEGs (sessions_app.frames) while someone watches (a viewer lease,
sessions_app/realtime/viewers.py). The web process that answered a WHEP offer holds one
`SessionStream` per watched session: it takes a lease, takes the session's frame feed,
draws the chrome above each frame (video/compose.py) and encodes it once with libx264 for every
H.264 peer of the session in this process (a browser that offers only VP8 gets the frames and
aiortc's own VP8 encoder). A frame is encoded when the page changed and, when it did not, again
every KEEPALIVE_S so players do not stall. A DELETE of a peer's `Location` may reach another web
process: it is passed on over the channel layer to the one holding the peer.

aiortc owns WebRTC itself (ICE, DTLS, SRTP, RTP packetisation); see the README for why.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fractions
import json
import logging
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aioice.ice
import av
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.exceptions import OperationError
from channels.layers import get_channel_layer
from django.conf import settings

from enigma_site.redis import get_async_redis
from sessions_app.events import group_name
from sessions_app.frames import FrameFeed, frames_watch
from sessions_app.realtime.viewers import ViewerLease

from .compose import HEIGHT, WIDTH, FrameComposer, FrameError

logger = logging.getLogger(__name__)

KEEPALIVE_S = 1.0
KEYFRAME_EVERY_S = 3.0
PEER_QUEUE_MAX = 90  # packets a peer may lag behind before it skips to the next keyframe
VIDEO_CLOCK = fractions.Fraction(1, 90_000)
RUNNER_STARTED = {"session_active", "instance:reconnected"}
_RESOURCE_KEY = "enigma:whep:{}"
_RTPMAP = re.compile(r"^a=rtpmap:(\d+) ([A-Za-z0-9-]+)/", re.MULTILINE)

_aioice_host_addresses = aioice.ice.get_host_addresses


def _host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    """The addresses offered as ICE host candidates: ENIGMA_WEBRTC_ICE_HOSTS when set (e.g. the
    public address in front of a NAT), else the machine's own, loopback included (aioice leaves
    it out), so a browser on the same machine connects without leaving it."""
    configured = list(settings.ENIGMA_WEBRTC_ICE_HOSTS)
    if configured:
        return configured
    return (["127.0.0.1"] if use_ipv4 else []) + _aioice_host_addresses(use_ipv4, use_ipv6)


# aiortc has no setting for the host candidates it gathers; aioice looks this function up on
# every gathering, so replacing it is the one place to decide.
aioice.ice.get_host_addresses = _host_addresses


class WhepError(Exception):
    """An offer we cannot answer (no video section, no codec in common)."""


# ----- encoding ------------------------------------------------------------------------------


class _H264:
    """One libx264 encoder: constrained baseline, level 3.1, no B-frames or lookahead (what a
    WebRTC receiver decodes with the least delay), SPS/PPS repeated before each keyframe."""

    def __init__(self) -> None:
        codec = av.CodecContext.create("libx264", "w")
        codec.width, codec.height, codec.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        codec.time_base = VIDEO_CLOCK
        codec.framerate = fractions.Fraction(30, 1)
        codec.bit_rate = settings.ENIGMA_WEBRTC_BITRATE
        codec.profile = "Baseline"
        codec.options = {
            "preset": "veryfast",
            "tune": "zerolatency",
            "level": "31",
            "threads": "1",
            "keyint": "600",
            "sc_threshold": "0",
        }
        self.codec = codec

    def encode(self, frame: av.VideoFrame, *, keyframe: bool) -> list[av.Packet]:
        frame.pict_type = av.video.frame.PictureType.I if keyframe else av.video.frame.PictureType.NONE
        return list(self.codec.encode(frame))


class StreamTrack(MediaStreamTrack):
    """The video track of one peer: encoded H.264 packets from the session's shared encoder, or
    raw frames for aiortc to encode (VP8)."""

    kind = "video"

    def __init__(self, *, encoded: bool) -> None:
        super().__init__()
        self.encoded = encoded
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.waiting_keyframe = encoded

    def put_packets(self, packets: list[av.Packet]) -> bool:
        """Queue packets; return False when the peer lags and needs a keyframe to go on."""
        for packet in packets:
            if self.waiting_keyframe:
                if not packet.is_keyframe:
                    continue
                self.waiting_keyframe = False
            self.queue.put_nowait(packet)
        if self.queue.qsize() > PEER_QUEUE_MAX:
            while not self.queue.empty():
                self.queue.get_nowait()
            self.waiting_keyframe = True
        return not self.waiting_keyframe

    def put_frame(self, frame: av.VideoFrame) -> None:
        while not self.queue.empty():  # only the newest frame matters to a raw-frame encoder
            self.queue.get_nowait()
        self.queue.put_nowait(frame)

    async def recv(self) -> Any:
        if self.readyState != "live":
            raise _media_ended()
        return await self.queue.get()


def _media_ended() -> Exception:
    from aiortc.mediastreams import MediaStreamError

    return MediaStreamError()


@dataclass
class Peer:
    resource: str
    session_id: str
    pc: RTCPeerConnection
    track: StreamTrack
    expires_at: float
    codec: str
    closed: bool = False


@dataclass
class _Latest:
    jpeg: bytes | None = None
    url: str = ""
    title: str = ""
    fresh: asyncio.Event = field(default_factory=asyncio.Event)


class SessionStream:
    """Every WHEP peer of one session in this process, fed from one frame feed
    and one encoder."""

    def __init__(self, session_id: str, on_idle: Callable[[SessionStream], None]) -> None:
        self.session_id = session_id
        self.peers: dict[str, Peer] = {}
        self._on_idle = on_idle
        self._lease = ViewerLease(session_id)
        self._latest = _Latest()
        self._channel = ""
        self._frames: FrameFeed | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._composer = FrameComposer()
        self._encoder: _H264 | None = None
        self._force_keyframe = True
        self._last_keyframe = 0.0
        self._started = time.monotonic()
        self._stopped = False
        self.encoded_frames = 0

    async def start(self) -> None:
        layer = get_channel_layer()
        self._channel = await layer.new_channel()
        self._frames = await frames_watch(self.session_id)
        await layer.group_add(group_name(self.session_id), self._channel)
        self._tasks = [
            asyncio.create_task(self._receive()),
            asyncio.create_task(self._take_frames(self._frames)),
            asyncio.create_task(self._pump()),
        ]
        await self._lease.start()

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        for peer in list(self.peers.values()):
            await self.remove(peer.resource)
        for task in self._tasks:
            if task is not asyncio.current_task():
                task.cancel()
        layer = get_channel_layer()
        with contextlib.suppress(OSError, ConnectionError, asyncio.CancelledError):
            await self._lease.stop()
            if self._frames is not None:
                self._frames.close()
            await layer.group_discard(group_name(self.session_id), self._channel)
        self._on_idle(self)

    async def add(self, peer: Peer) -> None:
        self.peers[peer.resource] = peer
        await get_channel_layer().group_add(_control_group(peer.resource), self._channel)
        self._force_keyframe = True
        self._latest.fresh.set()  # a new viewer sees the page now, not at the next paint

        @peer.pc.on("connectionstatechange")
        async def on_state() -> None:
            if peer.pc.connectionState in ("failed", "closed"):
                logger.info("WHEP peer of session %s: connection %s", self.session_id, peer.pc.connectionState)
                await self.remove(peer.resource)

    async def remove(self, resource: str) -> None:
        peer = self.peers.pop(resource, None)
        if peer is None:
            return
        peer.closed = True
        peer.track.stop()
        with contextlib.suppress(OSError, ConnectionError):
            await get_channel_layer().group_discard(_control_group(resource), self._channel)
            await get_async_redis().delete(_RESOURCE_KEY.format(resource))
        await peer.pc.close()
        if not self.peers and not self._stopped:
            await self.stop()

    # ----- the three loops -------------------------------------------------------------------

    async def _take_frames(self, frames: FrameFeed) -> None:
        latest = self._latest
        while not self._stopped:
            frame = await frames.next()
            try:
                latest.jpeg = base64.b64decode(frame.get("data") or "")
            except ValueError:  # binascii.Error: not a frame the worker sent
                continue
            latest.url, latest.title = str(frame.get("url") or ""), str(frame.get("title") or "")
            latest.fresh.set()

    async def _receive(self) -> None:
        layer = get_channel_layer()
        while not self._stopped:
            try:
                message = await layer.receive(self._channel)
            except asyncio.CancelledError:
                raise
            except (OSError, ConnectionError):
                logger.warning("frames of session %s: channel layer unreachable", self.session_id)
                await asyncio.sleep(1)
                continue
            kind = message.get("type")
            if kind == "session.event":
                name, payload = message.get("name"), message.get("payload") or {}
                if name == "end_session":
                    asyncio.create_task(self.stop())
                    return
                if payload.get("type") in RUNNER_STARTED or name in RUNNER_STARTED:
                    await self._lease.nudge()  # a worker took the session over: frames again
            elif kind == "whep.close":
                await self.remove(str(message.get("resource", "")))

    async def _pump(self) -> None:
        loop = asyncio.get_running_loop()
        latest = self._latest
        while not self._stopped:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(latest.fresh.wait(), KEEPALIVE_S)
            latest.fresh.clear()
            now = time.time()
            for peer in [p for p in self.peers.values() if p.expires_at <= now]:
                await self.remove(peer.resource)  # the viewer token ran out
            if not self.peers:
                return
            keyframe = self._force_keyframe or time.monotonic() - self._last_keyframe >= KEYFRAME_EVERY_S
            pts = int((time.monotonic() - self._started) * 90_000)
            wants_h264 = any(p.track.encoded for p in self.peers.values())
            try:
                frame, packets = await loop.run_in_executor(
                    None, self._encode, latest.jpeg, latest.url, latest.title, pts, keyframe, wants_h264
                )
            except FrameError:
                continue
            if keyframe and wants_h264:
                self._force_keyframe, self._last_keyframe = False, time.monotonic()
            self.encoded_frames += 1
            for peer in list(self.peers.values()):
                if not peer.track.encoded:
                    peer.track.put_frame(frame)
                elif not peer.track.put_packets(packets):
                    self._force_keyframe = True

    def _encode(
        self, jpeg: bytes | None, url: str, title: str, pts: int, keyframe: bool, wants_h264: bool
    ) -> tuple[av.VideoFrame, list[av.Packet]]:
        frame = self._composer.frame(jpeg, url=url, title=title)
        frame.pts, frame.time_base = pts, VIDEO_CLOCK
        if not wants_h264:
            return frame, []
        if self._encoder is None:
            self._encoder = _H264()
        packets = self._encoder.encode(frame, keyframe=keyframe)
        for packet in packets:
            packet.time_base = VIDEO_CLOCK
        return frame, packets


def _control_group(resource: str) -> str:
    return f"whep.{resource}"


_streams: dict[str, SessionStream] = {}


def _forget(stream: SessionStream) -> None:
    if _streams.get(stream.session_id) is stream:
        del _streams[stream.session_id]


def _video_codec(answer_sdp: str) -> str:
    """The codec the answer's video section settled on (its first payload type)."""
    section = answer_sdp.split("m=video", 1)
    if len(section) < 2:
        raise WhepError("The offer has no video section")
    body = section[1].split("\nm=", 1)[0]
    first_line = body.split("\n", 1)[0].split()
    if len(first_line) < 3 or first_line[0] == "0":
        raise WhepError("No video codec in common (H.264 or VP8)")
    payload = first_line[2]  # after the port and the protocol
    for pt, name in _RTPMAP.findall(body):
        if pt == payload:
            return name.upper()
    raise WhepError("No video codec in common (H.264 or VP8)")


def _prefer_h264(transceiver: Any) -> None:
    """H.264 (the contract's codec) first, VP8 when the offer has no H.264. aiortc applies the
    preferences while it reads the offer, so they are set before it."""
    order = {"video/H264": 0, "video/VP8": 1, "video/rtx": 2}
    transceiver.setCodecPreferences(
        sorted(
            (c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType in order),
            key=lambda c: order[c.mimeType],
        )
    )


async def whep_answer(*, session_id: str, offer_sdp: str, expires_at: float) -> tuple[str, str]:
    """Answer a WHEP offer for the session: return (SDP answer, resource id). Raises WhepError."""
    if "m=video" not in offer_sdp:
        raise WhepError("The offer has no video section")
    pc = RTCPeerConnection(configuration=RTCConfiguration(iceServers=[]))
    try:
        track = StreamTrack(encoded=True)
        _prefer_h264(pc.addTransceiver(track, direction="sendonly"))  # the offer's video section takes it
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        except (ValueError, OperationError) as exc:
            raise WhepError(f"Invalid SDP offer: {exc}") from exc
        await pc.setLocalDescription(await pc.createAnswer())
        answer = pc.localDescription.sdp
        codec = _video_codec(answer)
        track.encoded = track.waiting_keyframe = codec == "H264"
    except BaseException:
        await pc.close()
        raise
    resource = secrets.token_urlsafe(18)
    await get_async_redis().set(
        _RESOURCE_KEY.format(resource), json.dumps({"s": session_id}), ex=max(1, int(expires_at - time.time()))
    )
    stream = _streams.get(session_id)
    if stream is None or stream._stopped:
        stream = _streams[session_id] = SessionStream(session_id, _forget)
        await stream.start()
    await stream.add(
        Peer(resource=resource, session_id=session_id, pc=pc, track=track, expires_at=expires_at, codec=codec)
    )
    return answer, resource


async def whep_close(*, session_id: str, resource: str) -> bool:
    """End the peer `resource` of the session, wherever it is held; False if there is none."""
    raw = await get_async_redis().get(_RESOURCE_KEY.format(resource))
    if raw is None or json.loads(raw).get("s") != session_id:
        return False
    stream = _streams.get(session_id)
    if stream is not None and resource in stream.peers:
        await stream.remove(resource)
    else:
        await get_channel_layer().group_send(_control_group(resource), {"type": "whep.close", "resource": resource})
        await get_async_redis().delete(_RESOURCE_KEY.format(resource))
    return True


def streams() -> dict[str, SessionStream]:
    """The streams this process holds (for metrics and tests)."""
    return dict(_streams)
