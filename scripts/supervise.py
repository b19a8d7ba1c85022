"""A small process supervisor for `make run`: start each program, restart any that exits.

Usage: supervise.py NAME=COMMAND [NAME=COMMAND ...]   (each COMMAND is split like a shell would)

A program that exits (a crash, or a worker that gave up on a lost broker) is started again after
a backoff that grows from 1 s to 10 s and resets once it has run for a minute. SIGINT or SIGTERM
stops every program (TERM, then KILL after 10 s; Redis last) and exits. Only the standard library is used.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

STOP_GRACE_S = 10.0
HEALTHY_AFTER_S = 60.0
MAX_BACKOFF_S = 10.0
STATE_SERVICES = {"redis"}


def say(text: str) -> None:
    sys.stdout.write(f"[supervise] {text}\n")
    sys.stdout.flush()


@dataclass
class Program:
    name: str
    argv: list[str]
    popen: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    backoff: float = 1.0
    restart_at: float = 0.0
    restarts: int = field(default=0)

    def start(self) -> None:
        # Its own process group, so a stop reaches the program's children (Chromium) too.
        self.popen = subprocess.Popen(self.argv, start_new_session=True)
        self.started_at = time.monotonic()

    def signal(self, signum: int) -> None:
        """Signal the program's whole process group (what is left of it after it exited, too)."""
        if self.popen is not None:
            try:
                os.killpg(self.popen.pid, signum)
            except (ProcessLookupError, PermissionError):
                pass

    def terminate(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.terminate()


def parse(specs: list[str]) -> list[Program]:
    programs = []
    for spec in specs:
        name, sep, command = spec.partition("=")
        if not sep or not name or not command:
            raise SystemExit(f"supervise.py: expected NAME=COMMAND, got {spec!r}")
        programs.append(Program(name, shlex.split(command)))
    return programs


def stop_all(programs: list[Program]) -> None:
    """TERM each program's leader (a browser worker drains and closes its own Chromium), KILL
    what is left of its group after the grace. The state services (`redis`) stop last, once
    the programs that use them are gone."""
    state = [p for p in programs if p.name in STATE_SERVICES]
    for group in ([p for p in programs if p not in state], state):
        for program in group:
            program.terminate()
        deadline = time.monotonic() + STOP_GRACE_S
        for program in group:
            if program.popen is None:
                continue
            try:
                program.popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            program.signal(signal.SIGKILL)  # the rest of its process group
            program.popen.wait()


def main(argv: list[str]) -> int:
    programs = parse(argv)
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    for program in programs:
        program.start()
    while not stopping:
        time.sleep(0.5)
        now = time.monotonic()
        for program in programs:
            if program.popen is None:
                if now >= program.restart_at:
                    program.restarts += 1
                    say(f"starting {program.name} again (restart {program.restarts})")
                    program.start()
                continue
            code = program.popen.poll()
            if code is None:
                if now - program.started_at > HEALTHY_AFTER_S:
                    program.backoff = 1.0
                continue
            say(f"{program.name} exited with code {code}; restarting in {program.backoff:.0f} s")
            program.popen = None
            program.restart_at = now + program.backoff
            program.backoff = min(MAX_BACKOFF_S, program.backoff * 2)
    say("stopping")
    stop_all(programs)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
