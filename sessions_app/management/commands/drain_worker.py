"""Drain a browser host: it takes no new sessions, lets running tasks finish, moves its
sessions to other hosts and exits (as on SIGTERM)."""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from sessions_app import registry


class Command(BaseCommand):
    help = "Drain the browser worker of HOST_ID (ENIGMA_HOST_ID): its sessions move to other hosts, then it exits."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("host_id")
        parser.add_argument("--no-wait", action="store_true", help="return once the drain is requested")

    def handle(self, *args: Any, host_id: str, no_wait: bool, **options: Any) -> None:
        workers = [w for w in registry.live_workers() if w.host == host_id]
        if not workers:
            known = ", ".join(sorted({w.host for w in registry.live_workers()})) or "none"
            raise CommandError(f"no live browser worker on host {host_id!r} (live hosts: {known})")
        registry.drain_request(host_id)
        self.stdout.write(f"drain of {host_id} requested ({sum(w.sessions for w in workers)} sessions)")
        if no_wait:
            return
        started = time.monotonic()
        deadline = started + settings.ENIGMA_DRAIN_GRACE_S + 120
        while time.monotonic() < deadline:
            left = [w for w in registry.live_workers() if w.host == host_id]
            if not left:
                self.stdout.write(f"{host_id} drained and stopped in {time.monotonic() - started:.1f} s")
                return
            time.sleep(0.5)
        raise CommandError(f"{host_id} still runs after {deadline - started:.0f} s")
