"""The WHEP answer on its own: an aiortc client offers recvonly video and audio, frames come on
the session's frame channel as a worker publishes them, and the client decodes 1024x600 H.264 (real Redis,
no browser; the browser and the HTTP endpoint are in test_whep_browser.py)."""

from __future__ import annotations

import asyncio
import base64
import io
import time

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from PIL import Image

from sessions_app.frames import frame_publish
from sessions_app.models import new_id
from sessions_app.realtime.viewers import viewer_count
from video import whep


def _jpeg(shade: int) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (1024, 445), (shade, 80, 160)).save(buffer, "JPEG", quality=70)
    return base64.b64encode(buffer.getvalue()).decode()


async def _offer(pc: RTCPeerConnection, video_codec: str | None = None) -> str:
    video = pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="recvonly")
    if video_codec:
        from aiortc import RTCRtpReceiver

        capabilities = RTCRtpReceiver.getCapabilities("video")
        assert capabilities is not None
        video.setCodecPreferences([c for c in capabilities.codecs if c.mimeType == video_codec])
    await pc.setLocalDescription(await pc.createOffer())
    return pc.localDescription.sdp


async def _publish(session_id: str, stop: asyncio.Event) -> None:
    shade = 0
    while not stop.is_set():
        shade = (shade + 16) % 256
        await frame_publish(
            session_id,
            {
                "data": _jpeg(shade),
                "url": "https://example.com/",
                "title": "Example",
                "timestamp": time.time(),
                "sentAt": time.time(),
            },
        )
        await asyncio.sleep(0.04)


async def _receive_frames(codec: str | None) -> tuple[list, str, RTCPeerConnection, str]:
    session_id = new_id()
    client = RTCPeerConnection(configuration=RTCConfiguration(iceServers=[]))
    tracks: asyncio.Queue = asyncio.Queue()
    client.on("track", lambda track: tracks.put_nowait(track))
    offer = await _offer(client, codec)
    answer, resource = await whep.whep_answer(session_id=session_id, offer_sdp=offer, expires_at=time.time() + 60)
    await client.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    stop = asyncio.Event()
    publisher = asyncio.create_task(_publish(session_id, stop))
    try:
        track = await asyncio.wait_for(tracks.get(), 10)
        while track.kind != "video":
            track = await asyncio.wait_for(tracks.get(), 10)
        frames = [await asyncio.wait_for(track.recv(), 20) for _ in range(5)]
    finally:
        stop.set()
        await publisher
    return frames, answer, client, session_id + ":" + resource


@pytest.mark.asyncio
async def test_whep_answer_streams_h264_1024x600_from_channel_layer_frames() -> None:
    frames, answer, client, ids = await _receive_frames(None)
    session_id, resource = ids.split(":")
    try:
        assert "H264/90000" in answer and "a=sendonly" in answer
        assert {(f.width, f.height) for f in frames} == {(1024, 600)}
        assert frames[-1].pts > frames[0].pts
        # The stream holds a viewer lease, so the worker screencasts while it is watched.
        assert await viewer_count(session_id) == 1
        assert await whep.whep_close(session_id=session_id, resource=resource)
        assert not await whep.whep_close(session_id=session_id, resource=resource)
        assert await viewer_count(session_id) == 0
        assert session_id not in whep.streams()
    finally:
        await client.close()


@pytest.mark.asyncio
async def test_whep_answers_vp8_to_a_client_that_offers_only_vp8() -> None:
    frames, answer, client, ids = await _receive_frames("video/VP8")
    session_id, resource = ids.split(":")
    try:
        video = answer.split("m=video", 1)[1]
        assert "VP8/90000" in video and "H264" not in video
        assert {(f.width, f.height) for f in frames} == {(1024, 600)}
    finally:
        await whep.whep_close(session_id=session_id, resource=resource)
        await client.close()


@pytest.mark.asyncio
async def test_an_offer_without_video_is_refused() -> None:
    client = RTCPeerConnection(configuration=RTCConfiguration(iceServers=[]))
    client.addTransceiver("audio", direction="recvonly")
    await client.setLocalDescription(await client.createOffer())
    with pytest.raises(whep.WhepError):
        await whep.whep_answer(session_id=new_id(), offer_sdp=client.localDescription.sdp, expires_at=time.time() + 60)
    await client.close()
