"""How Chromium is launched so that the gate is its only way out (see nslaunch.py).

`prepare(...)` checks that this machine can make a network namespace (fails with a clear error
otherwise, unless the operator chose `sandbox="off"`), finds the unprivileged user Chromium runs
as (`ENIGMA_BROWSER_USER`), writes the wrapper script Playwright runs as its Chromium, and the
managed policy that blocks non-http(s) pages.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

NSLAUNCH = Path(__file__).with_name("nslaunch.py")
# The ports the gate's forwarder listens on inside Chromium's namespace (nothing else is there):
# the first is the browser-wide proxy (Chromium's own traffic), each other one a context's.
NAMESPACE_BASE_PORT = 20000
NAMESPACE_PORTS = 1024

# Decision 10: only http(s) pages. about:, data: and blob: stay (blank pages, inline content).
URL_BLOCKLIST = [
    "chrome://*",
    "chrome-untrusted://*",
    "chrome-extension://*",
    "devtools://*",
    "file://*",
    "view-source:*",
    "ftp://*",
    "filesystem:*",
]


class SandboxUnavailable(RuntimeError):
    """This machine cannot run Chromium in its own network namespace."""


DEFAULT_BROWSER_USER = "enigma-browser"
FALLBACK_BROWSER_USER = "nobody"


@dataclass(frozen=True)
class LaunchPlan:
    executable: str  # what Playwright runs as Chromium
    base_port: int  # the browser-wide proxy port; contexts get the ports after it
    ports: int
    uid: int  # the user Chromium runs as (-1: this process's own, already unprivileged)
    gid: int


def browser_user(name: str) -> tuple[int, int]:
    """(uid, gid) Chromium runs as: -1, -1 when this process is not root (it is unprivileged
    already); the default user falls back to `nobody` where install.sh could not create it."""
    if os.geteuid() != 0:
        return -1, -1
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        if name != DEFAULT_BROWSER_USER:
            raise SandboxUnavailable(f"ENIGMA_BROWSER_USER {name!r} does not exist on this machine") from None
        entry = pwd.getpwnam(FALLBACK_BROWSER_USER)
    if entry.pw_uid == 0:
        raise SandboxUnavailable(f"ENIGMA_BROWSER_USER {name!r} is root; Chromium must not run as root")
    return entry.pw_uid, entry.pw_gid


def browser_dir(prefix: str, uid: int, gid: int) -> Path:
    """A fresh directory the browser user may write (downloads)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    if uid >= 0:
        os.chown(path, uid, gid)
    return path


def probe() -> str | None:
    """None if a network namespace can be made here, else why not."""
    try:
        result = subprocess.run(
            [sys.executable, "-I", str(NSLAUNCH), "--probe"], capture_output=True, text=True, timeout=20
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines()
        return lines[-1] if lines else f"exit status {result.returncode}"
    return None


def write_policy(directory: Path) -> Path:
    """A copy of /etc/chromium with our managed policy; the launcher mounts it over the original."""
    etc = directory / "etc-chromium"
    managed = etc / "policies" / "managed"
    managed.mkdir(parents=True, exist_ok=True)
    source = Path("/etc/chromium")
    if source.is_dir():
        for item in source.iterdir():
            if item.name != "policies" and item.is_file():
                shutil.copy2(item, etc / item.name)
    (managed / "enigma.json").write_text(json.dumps({"URLBlocklist": URL_BLOCKLIST}))
    return etc


def prepare(
    *, directory: Path, chromium_path: str, control_socket: Path, mode: str, user: str = DEFAULT_BROWSER_USER
) -> LaunchPlan | None:
    """Return the launch plan for `mode` "netns", or None for "off" (Chromium runs directly).

    `directory` must be root-only (0700, see runtime_dir): it holds the control socket, which
    only the forwarder (root) may reach. Raise SandboxUnavailable when "netns" cannot work on
    this machine or the browser user is unusable."""
    if mode == "off":
        return None
    if mode != "netns":
        raise SandboxUnavailable(f"unknown ENIGMA_EGRESS_SANDBOX {mode!r} (netns or off)")
    reason = probe()
    if reason is not None:
        raise SandboxUnavailable(
            "Chromium cannot be given its own network namespace on this machine "
            f"({reason}). Run the worker as root (or with CAP_SYS_ADMIN), or set "
            "ENIGMA_EGRESS_SANDBOX=off to run without it (unsafe: the browser can then reach "
            "the network around the egress gate with WebRTC, WebTransport and DNS)."
        )
    uid, gid = browser_user(user)
    policy = write_policy(directory)
    wrapper = directory / "chromium"
    wrapper.write_text(
        "#!/bin/sh\n"
        f'exec "{sys.executable}" -I "{NSLAUNCH}" "{control_socket}" {NAMESPACE_BASE_PORT} {NAMESPACE_PORTS} '
        f'"{policy}" {uid} {gid} "{chromium_path}" "$@"\n'
    )
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return LaunchPlan(executable=str(wrapper), base_port=NAMESPACE_BASE_PORT, ports=NAMESPACE_PORTS, uid=uid, gid=gid)


def runtime_dir() -> Path:
    """A private directory for this process's control socket and wrapper."""
    path = Path(tempfile.mkdtemp(prefix=f"enigma-egress-{os.getpid()}-"))
    path.chmod(0o700)
    return path
