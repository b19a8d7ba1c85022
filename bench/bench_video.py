"""Video figures: the WHEP stream (fps for 1 and 5 watched sessions, paint-to-decoded-frame
latency on loopback, CPU per stream) and recordings (CPU per idle recorded session, MB per
minute, time from session end to a playable file, encode time of a worst-case 5-minute spool).

The page under test paints all the time (a moving box) and flips its background between black
and white on every 500 ms boundary of the wall clock; the WHEP client page (real Chromium)
samples each decoded frame and notes when the flip shows, so latency = detection time - boundary
(both on this machine's clock).
"""

from __future__ import annotations

import concurrent.futures
import functools
import http.server
import io
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import percentile, process_tree, stack  # noqa: E402

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/lib/chromium/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--autoplay-policy=no-user-gesture-required",
]
TICKS = os.sysconf("SC_CLK_TCK")

FLIP_PAGE = """<!doctype html><html><head><title>Flip</title><style>
body { margin: 0; height: 100vh; } #box { position: absolute; top: 200px; width: 60px; height: 60px;
background: #1a73e8; }</style></head><body><div id="box"></div><script>
(function tick() { const now = Date.now();
  document.body.style.background = Math.floor(now / 500) % 2 ? "#fff" : "#000";
  document.getElementById("box").style.left = (now / 3 % 900) + "px"; requestAnimationFrame(tick); })();
</script></body></html>"""
IDLE_PAGE = "<!doctype html><html><head><title>Idle</title></head><body><h1>Nothing moves here</h1></body></html>"
CLIENT_PAGE = """<!doctype html><html><body><script>
window.play = async function (url) {
  const pc = new RTCPeerConnection({ iceServers: [] });
  pc.addTransceiver("video", { direction: "recvonly" }); pc.addTransceiver("audio", { direction: "recvonly" });
  const video = document.createElement("video"); video.muted = true; video.autoplay = true; document.body.append(video);
  const canvas = document.createElement("canvas"); canvas.width = 8; canvas.height = 8;
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  const stat = { latencies: [], last: null, video };
  pc.ontrack = (e) => { if (e.track.kind === "video") video.srcObject = new MediaStream([e.track]); };
  const onFrame = () => {
    const now = Date.now();
    ctx.drawImage(video, 4, 400, 8, 8, 0, 0, 8, 8);  // a patch of the page's background
    const white = ctx.getImageData(4, 4, 1, 1).data[0] > 128;
    if (stat.last !== null && white !== stat.last) stat.latencies.push(now - Math.floor(now / 500) * 500);
    stat.last = white; video.requestVideoFrameCallback(onFrame);
  };
  video.requestVideoFrameCallback(onFrame);
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((r) => { if (pc.iceGatheringState === "complete") r();
    pc.onicegatheringstatechange = () => pc.iceGatheringState === "complete" && r(); });
  const sdp = pc.localDescription.sdp.split("\\r\\n")
    .filter((l) => !l.startsWith("a=candidate:") || l.includes(" 127.0.0.1 ")).join("\\r\\n");
  const res = await fetch(url, { method: "POST", headers: { "Content-Type": "application/sdp" }, body: sdp });
  await pc.setRemoteDescription({ type: "answer", sdp: await res.text() });
  window.stat = stat; return res.status;
};
window.frames = () => window.stat.video.getVideoPlaybackQuality().totalVideoFrames;
window.take = () => { const l = window.stat.latencies; window.stat.latencies = []; return l; };
</script></body></html>"""


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def _serve(directory: Path) -> str:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(directory)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{httpd.server_address[1]}"


def _cpu_s(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / TICKS


def _daphne_pid(url: str) -> int:
    port = url.rsplit(":", 1)[1]
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmd = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if any(b"daphne" in part for part in cmd) and port.encode() in cmd:
                return int(proc.name)
    raise RuntimeError("daphne not found")


def _start(base: str, headers: dict[str, str], page: str, **body: Any) -> tuple[str, str]:
    response = requests.post(
        f"{base}/start/start-session", json={"startingUrl": page, **body}, headers=headers, timeout=60
    )
    response.raise_for_status()
    session_id = response.json()["sessionId"]
    deadline = time.time() + 60
    while requests.get(f"{base}/sessions/{session_id}", headers=headers, timeout=10).json()["state"] != "active":
        if time.time() > deadline:
            raise RuntimeError("session never became active")
        time.sleep(0.2)
    return session_id, response.json()["streaming"]["webRTCURL"]


def _terminate(base: str, headers: dict[str, str], session_id: str) -> None:
    requests.post(
        f"{base}/start/send-message",
        headers=headers,
        timeout=30,
        json={"sessionId": session_id, "message": {"actionType": "state", "newState": "terminate"}},
    )


def _probe_frames(redis_url: str, session_id: str, seconds: float) -> str:
    """Where a frame's time goes before the web process encodes it: frames per second the worker
    publishes, capture (CDP timestamp) to publish, and publish to receipt on the frame channel."""
    import asyncio
    import json

    import redis.asyncio as aioredis

    from sessions_app.frames import frames_channel

    async def probe() -> str:
        client = aioredis.Redis.from_url(redis_url, decode_responses=True)
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(frames_channel(session_id))
        capture, hop, count = [], [], 0
        deadline = time.monotonic() + seconds
        try:
            while (left := deadline - time.monotonic()) > 0:
                raw = await pubsub.get_message(ignore_subscribe_messages=True, timeout=left)
                if raw is None or raw.get("type") != "message":
                    continue
                message = json.loads(raw["data"])
                now = time.time()
                count += 1
                if message.get("timestamp"):
                    capture.append(1000 * (message["sentAt"] - message["timestamp"]))
                hop.append(1000 * (now - message["sentAt"]))
        finally:
            await pubsub.aclose()
            await client.aclose()
        return (
            f"worker publishes {count / seconds:.1f} frames/s; capture to publish p50 "
            f"{percentile(capture, 50):.0f} ms p95 {percentile(capture, 95):.0f} ms; Redis hop p50 "
            f"{percentile(hop, 50):.0f} ms p95 {percentile(hop, 95):.0f} ms"
        )

    with concurrent.futures.ThreadPoolExecutor(1) as thread:  # Playwright's loop holds this thread
        return thread.submit(asyncio.run, probe()).result()


def bench_whep(st: Any, pages: str, headers: dict[str, str]) -> None:
    from playwright.sync_api import sync_playwright

    daphne = _daphne_pid(st.url)
    targets = {1: 25, 5: 15}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        for count, target in targets.items():
            sessions = [_start(st.url, headers, f"{pages}/flip.html") for _ in range(count)]
            clients = []
            for _, url in sessions:
                page = browser.new_page()
                page.goto(f"{pages}/client.html")
                assert page.evaluate("u => play(u)", url) == 201
                clients.append(page)
            time.sleep(4)  # connect, first keyframe
            for page in clients:
                page.evaluate("take()")
            before = [page.evaluate("frames()") for page in clients]
            web_cpu, worker_cpu, started = _cpu_s([daphne]), _cpu_s(process_tree(st.worker.pid)), time.monotonic()
            time.sleep(10)
            elapsed = time.monotonic() - started
            web_cpu, worker_cpu = _cpu_s([daphne]) - web_cpu, _cpu_s(process_tree(st.worker.pid)) - worker_cpu
            fps = [(page.evaluate("frames()") - b) / elapsed for page, b in zip(clients, before, strict=True)]
            latencies = [x for page in clients for x in page.evaluate("take()")]
            p95 = percentile(latencies, 95)
            ok = min(fps) >= target and p95 < 150
            print(
                f"WHEP, {count} watched session(s): fps per stream min {min(fps):.1f} mean {sum(fps) / count:.1f} "
                f"(target >= {target}); paint-to-decoded latency p50 {percentile(latencies, 50):.0f} ms "
                f"p95 {p95:.0f} ms over {len(latencies)} flips (target p95 < 150); web-process CPU per stream "
                f"{100 * web_cpu / elapsed / count:.0f}% of a core (worker + Chromium tree "
                f"{100 * worker_cpu / elapsed / count:.0f}% per session)  [{'OK' if ok else 'MISS'}]",
                flush=True,
            )
            print(f"  frames of one of them: {_probe_frames(st.env['REDIS_URL'], sessions[0][0], 4)}", flush=True)
            for page in clients:
                page.close()
            for session_id, _ in sessions:
                _terminate(st.url, headers, session_id)
            time.sleep(2)
        browser.close()


def _wait_ready(base: str, headers: dict[str, str], session_id: str) -> tuple[dict[str, Any], float]:
    started = time.monotonic()
    while time.monotonic() - started < 120:
        body = requests.get(f"{base}/sessions/{session_id}/recording/steps", headers=headers, timeout=10).json()
        if body.get("recording", {}).get("state") in ("ready", "failed"):
            return body["recording"], time.monotonic() - started
        time.sleep(0.2)
    raise RuntimeError("recording never became ready")


def bench_recording(st: Any, pages: str, headers: dict[str, str]) -> None:
    count = 5
    idle = 0.0
    for recording in (False, True):
        sessions = [_start(st.url, headers, f"{pages}/idle.html", recording=recording)[0] for _ in range(count)]
        time.sleep(5)
        before, started = _cpu_s(process_tree(st.worker.pid)), time.monotonic()
        time.sleep(20)
        cpu = (_cpu_s(process_tree(st.worker.pid)) - before) / (time.monotonic() - started)
        if recording:
            print(
                f"recording, {count} idle recorded sessions: worker + Chromium tree {100 * cpu / count:.1f}% of a "
                f"core per session, {100 * (cpu - idle) / count:.1f}% above unrecorded ones (target <= 5%)  "
                f"[{'OK' if (cpu - idle) / count <= 0.05 else 'MISS'}]",
                flush=True,
            )
        idle = cpu
        for session_id in sessions:
            _terminate(st.url, headers, session_id)
        time.sleep(3)
    seconds = 60
    session_id, _ = _start(st.url, headers, f"{pages}/flip.html")
    time.sleep(seconds)
    _terminate(st.url, headers, session_id)
    body, waited = _wait_ready(st.url, headers, session_id)
    minutes = body["durationMs"] / 60000
    print(
        f"recording of a {body['durationMs'] / 1000:.0f} s session painting all the time: {body['frames']} frames, "
        f"{body['sizeBytes'] / 1e6 / minutes:.2f} MB per minute, playable {waited:.1f} s after the session ended "
        f"(target 30 s for a 5-minute session)",
        flush=True,
    )


def bench_encode_worst_case() -> None:
    """A 5-minute spool at the frame cap (every frame different), encoded as the worker does."""
    from django.conf import settings
    from PIL import Image, ImageDraw

    from video.mp4 import encode_mp4
    from video.spool import Spool

    fps = settings.ENIGMA_RECORDING_MAX_FPS
    with tempfile.TemporaryDirectory() as tmp:
        spool = Spool(Path(tmp) / "spool")
        frames = int(300 * fps)
        for i in range(frames):
            image = Image.new("RGB", (1024, 445), (255, 255, 255))
            ImageDraw.Draw(image).rectangle((i % 900, 100, i % 900 + 100, 200), fill=(26, 115, 232))
            buffer = io.BytesIO()
            image.save(buffer, "JPEG", quality=50)
            spool.append(t_ms=int(i * 1000 / fps), jpeg=buffer.getvalue(), url="https://example.com/", title="t")
        spool.close()
        started, cpu = time.monotonic(), time.process_time()
        result = encode_mp4(spool.read(), end_ms=300_000, path=Path(tmp) / "out.mp4")
        wall, cpu = time.monotonic() - started, time.process_time() - cpu
    print(
        f"encode of a 5-minute spool at {fps:g} fps ({frames} frames, every one different): {wall:.1f} s wall, "
        f"{cpu:.1f} s CPU, {result.size_bytes / 1e6 / 5:.2f} MB per minute (target 30 s)  "
        f"[{'OK' if wall < 30 else 'MISS'}]",
        flush=True,
    )


def main() -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "enigma_site.settings")
    import django

    django.setup()
    directory = Path(tempfile.mkdtemp(prefix="enigma-bench-pages-"))
    (directory / "flip.html").write_text(FLIP_PAGE)
    (directory / "idle.html").write_text(IDLE_PAGE)
    (directory / "client.html").write_text(CLIENT_PAGE)
    pages = _serve(directory)
    whep_only = "--whep-only" in sys.argv[1:]
    print(f"load average at the start: {os.getloadavg()[0]:.1f} (1 min) on {os.cpu_count()} cores", flush=True)
    if not whep_only:
        bench_encode_worst_case()
    with stack(capacity=12) as st:
        headers = {"Authorization": f"Bearer {st.key}"}
        bench_whep(st, pages, headers)
        if not whep_only:
            bench_recording(st, pages, headers)
    print(f"load average at the end: {os.getloadavg()[0]:.1f} (1 min)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
