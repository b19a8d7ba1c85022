"""Chromium's launcher: an empty network namespace whose only way out is the egress gate.

Run as `python nslaunch.py CONTROL_SOCKET BASE_PORT PORTS POLICY_DIR UID GID CHROMIUM [args...]` (the
wrapper script that `agents.egress.sandbox` writes does this; Playwright runs the wrapper as its
"Chromium" and talks to the real one over the inherited pipes, which an exec keeps). Standalone on
purpose: it imports nothing of the project, so it starts in a few milliseconds.

1. unshare(CLONE_NEWNET | CLONE_NEWNS): a network namespace with only `lo`, and a private mount
   namespace.
2. Bring `lo` up (ioctl SIOCSIFFLAGS).
3. Bind-mount POLICY_DIR over /etc/chromium (when both exist), so Chromium reads our managed
   policy (URLBlocklist of chrome://, file:// ...) and no other.
4. Listen on 127.0.0.1:BASE_PORT .. BASE_PORT+PORTS-1 inside the namespace (one port per browser
   context: that port is how the gate tells sessions apart; BASE_PORT itself is the browser-wide
   proxy, where only Chromium's own traffic arrives) and connect to CONTROL_SOCKET (a Unix
   seqpacket socket in the worker's namespace: Unix sockets on the filesystem cross network
   namespaces).
5. Fork the forwarder: it accepts each connection Chromium makes and hands the socket itself, with
   the port it came in on, to the gate over the control socket (SCM_RIGHTS), so no byte is copied
   here. It dies with Chromium (PR_SET_PDEATHSIG) or with the gate (the control socket closes).
6. Drop to the unprivileged browser user UID:GID (setgroups([]), setgid, setuid,
   PR_SET_NO_NEW_PRIVS) after handing it what Chromium must write (its --user-data-dir), then exec
   Chromium, which runs its own (user-namespace) sandbox. As that user neither Chromium nor a
   compromised renderer can setns() back into the worker's network namespace (that needs
   CAP_SYS_ADMIN there) or reach the control socket (it sits in a root-only 0700 directory); the
   forwarder stays root but only ever passes on sockets. UID -1 keeps the current user (a worker
   that is not root is already unprivileged).

`python nslaunch.py --probe` only does steps 1-2 and exits 0: the worker's start-up check.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import selectors
import signal
import socket
import struct
import sys

CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
MS_BIND = 4096
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1
PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def enter_namespace(*, mounts: bool) -> None:
    flags = CLONE_NEWNET | (CLONE_NEWNS if mounts else 0)
    _check(_libc.unshare(flags), "unshare")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        request = struct.pack("16sH", b"lo", 0)
        flags_now = struct.unpack("16sH", fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, request + bytes(22))[:18])[1]
        fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, struct.pack("16sH", b"lo", flags_now | IFF_UP) + bytes(22))


def mount_policy(policy_dir: str) -> None:
    if not (os.path.isdir(policy_dir) and os.path.isdir("/etc/chromium")):
        return
    _check(_libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "mount --make-rprivate /")
    _check(_libc.mount(policy_dir.encode(), b"/etc/chromium", None, MS_BIND, None), "bind-mount policies")


def forward(listeners: list[socket.socket], control: socket.socket, parent: int) -> None:
    # Chromium (the parent) runs as another user, so its death signal may not reach us: watch
    # its pidfd, and the control socket (the gate closing it), too.
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    selector = selectors.DefaultSelector()
    for listener in listeners:
        selector.register(listener, selectors.EVENT_READ, listener.getsockname()[1])
    selector.register(control, selectors.EVENT_READ, None)
    try:
        selector.register(os.pidfd_open(parent), selectors.EVENT_READ, None)
    except (AttributeError, OSError):
        pass  # no pidfd (kernel < 5.3): the death signal alone
    if os.getppid() != parent:
        os._exit(0)
    while True:
        for key, _ in selector.select():
            if key.data is None:
                os._exit(0)  # Chromium or the gate is gone
            try:
                conn, _ = key.fileobj.accept()  # type: ignore[union-attr]
            except BlockingIOError:
                continue
            try:
                socket.send_fds(control, [struct.pack("!H", key.data)], [conn.fileno()])
            except OSError:
                os._exit(0)  # the gate is gone: Chromium has no network any more
            finally:
                conn.close()


def _chown_tree(path: str, uid: int, gid: int) -> None:
    os.chown(path, uid, gid)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.lchown(os.path.join(root, name), uid, gid)


def drop_privileges(uid: int, gid: int, args: list[str]) -> None:
    """Become the browser user for good: what Chromium must write is handed over first."""
    for arg in args:
        if arg.startswith("--user-data-dir="):
            _chown_tree(arg.split("=", 1)[1], uid, gid)
            home = arg.split("=", 1)[1]
            # The environment Chromium inherits (this is its launcher process), not configuration.
            os.environ.update(HOME=home, XDG_CONFIG_HOME=home, XDG_CACHE_HOME=home)
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")
    if os.getuid() != uid or os.geteuid() != uid or os.getegid() != gid:
        raise OSError("could not drop to the browser user")


def main(argv: list[str]) -> None:
    if argv[:1] == ["--probe"]:
        enter_namespace(mounts=True)
        return
    control_path, base_port, ports, policy_dir, uid, gid, chromium, *args = argv
    enter_namespace(mounts=True)
    mount_policy(policy_dir)
    listeners = []
    for port in range(int(base_port), int(base_port) + int(ports)):
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(128)
        listener.setblocking(False)
        listeners.append(listener)
    control = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    control.connect(control_path)
    keep = {listener.fileno() for listener in listeners} | {control.fileno()}
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:
        # The forwarder keeps only its sockets (not Playwright's pipes, nor stdout).
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        for fd in range(3, 1024):
            if fd not in keep:
                try:
                    os.close(fd)
                except OSError:
                    pass
        forward(listeners, control, parent)
        os._exit(0)
    for listener in listeners:
        listener.close()
    control.close()
    if int(uid) >= 0:
        drop_privileges(int(uid), int(gid), args)
    os.execv(chromium, [chromium, *args])


if __name__ == "__main__":
    main(sys.argv[1:])
