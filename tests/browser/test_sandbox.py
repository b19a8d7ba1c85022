"""Chromium's launcher: an unprivileged user in an empty network namespace, with no way back.

A stand-in "Chromium" (a small Python script) is launched through the real launcher and the real
gate's control socket, and tries what a compromised renderer would: setns() into its parent's
network namespace, and a connection to the gate's control socket as any session."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from agents.browser import BrowserHost
from agents.egress import EgressSettings, sandbox
from agents.egress.gate import Gate

from .test_host import chromium_processes

pytestmark = pytest.mark.asyncio(loop_scope="session")

ESCAPE = r"""
import ctypes, errno, json, os, socket, sys
libc = ctypes.CDLL(None, use_errno=True)
out = {"uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(), "groups": os.getgroups()}
for name, pid in (("setns_parent", os.getppid()), ("setns_init", 1)):
    try:
        fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
    except OSError as exc:
        out[name] = errno.errorcode[exc.errno]
        continue
    if libc.setns(fd, 0x40000000) == 0:
        out[name] = "ok"
    else:
        out[name] = errno.errorcode[ctypes.get_errno()]
control = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
try:
    control.connect(sys.argv[1])
    out["gate_sock"] = "ok"
except OSError as exc:
    out["gate_sock"] = errno.errorcode[exc.errno]
profile = sys.argv[2].split("=", 1)[1]
with open(os.path.join(profile, "written"), "w") as f:
    f.write("ok")
out["profile_written"] = True
with open("/proc/self/status") as f:
    out["no_new_privs"] = [l.split()[1] for l in f if l.startswith("NoNewPrivs")][0]
print(json.dumps(out))
"""


@pytest.fixture
def stand_in() -> Iterator[Path]:
    """An executable the browser user can run (outside root's private temp directories)."""
    directory = Path(tempfile.mkdtemp(prefix="enigma-standin-"))
    directory.chmod(0o755)
    script = directory / "chromium"
    script.write_text(f"#!/usr/bin/python3\n{ESCAPE}")  # not under /root: the browser user runs it
    script.chmod(0o755)
    yield script
    script.unlink()
    directory.rmdir()


@pytest.mark.skipif(os.geteuid() != 0, reason="the launcher drops privileges only when the worker is root")
async def test_the_launched_browser_cannot_get_back_into_the_workers_network(stand_in: Path) -> None:
    runtime = sandbox.runtime_dir()
    control = runtime / "gate.sock"
    plan = sandbox.prepare(directory=runtime, chromium_path=str(stand_in), control_socket=control, mode="netns")
    assert plan is not None
    gate = Gate(EgressSettings())
    await gate.start(control_socket=control, base_port=plan.base_port, ports=plan.ports)
    profile = Path(tempfile.mkdtemp(prefix="playwright_chromiumdev_profile-"))  # as Playwright makes it
    assert stat.S_IMODE(runtime.stat().st_mode) == 0o700
    try:
        process = await asyncio.create_subprocess_exec(
            plan.executable, str(control), f"--user-data-dir={profile}",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(process.communicate(), 30)
        assert process.returncode == 0, err.decode()
        seen = json.loads(out)
    finally:
        await gate.stop()
        for path in (runtime, profile):
            for root, dirs, files in os.walk(path, topdown=False):
                for name in files:
                    os.unlink(os.path.join(root, name))
                for name in dirs:
                    os.rmdir(os.path.join(root, name))
            path.rmdir()
    assert seen["uid"] == seen["euid"] == plan.uid != 0
    assert seen["gid"] == plan.gid and seen["groups"] == []
    assert seen["no_new_privs"] == "1"
    assert seen["setns_parent"] in ("EPERM", "EACCES")
    assert seen["setns_init"] in ("EPERM", "EACCES")
    assert seen["gate_sock"] == "EACCES"
    assert seen["profile_written"]


@pytest.mark.skipif(os.geteuid() != 0, reason="the launcher drops privileges only when the worker is root")
async def test_real_chromium_runs_as_the_browser_user_with_its_own_sandbox(host: BrowserHost) -> None:
    pids = chromium_processes()
    assert pids
    for pid in pids:
        with open(f"/proc/{pid}/status") as status:
            uids = next(line for line in status if line.startswith("Uid:")).split()[1:]
        assert set(uids) != {"0"} and "0" not in uids, pid
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            assert b"--no-sandbox" not in cmdline.read()
