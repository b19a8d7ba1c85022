"""Prometheus metrics in the text exposition format (spec README additions).

Open when ENIGMA_METRICS_TOKEN is empty; otherwise `Authorization: Bearer <token>` is required.
"""

from __future__ import annotations

import hmac

from django.conf import settings
from django.db.models import Count
from django.http import HttpRequest, HttpResponse, JsonResponse

from enigma_site.errors import error_body

from . import registry
from .models import BrowserSession, Task


def _line(name: str, value: float, **labels: str) -> str:
    if labels:
        inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        return f"{name}{{{inner}}} {value}"
    return f"{name} {value}"


def metrics(request: HttpRequest) -> HttpResponse:
    token = settings.ENIGMA_METRICS_TOKEN
    if token:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), token.encode()):
            return JsonResponse(error_body(401, "UNAUTHORIZED", "Metrics token required"), status=401)
    lines = ["# HELP enigma_sessions Browser sessions by state.", "# TYPE enigma_sessions gauge"]
    by_state = dict(BrowserSession.objects.values_list("state").annotate(n=Count("pk")))
    for state in BrowserSession.State.values:
        lines.append(_line("enigma_sessions", by_state.get(state, 0), state=state))
    lines += ["# HELP enigma_tasks Tasks by state.", "# TYPE enigma_tasks gauge"]
    tasks = dict(Task.objects.values_list("state").annotate(n=Count("pk")))
    for state in Task.State.values:
        lines.append(_line("enigma_tasks", tasks.get(state, 0), state=state))
    workers = registry.live_workers()
    lines += [
        "# HELP enigma_workers Live browser workers.", "# TYPE enigma_workers gauge",
        _line("enigma_workers", len(workers)),
        "# HELP enigma_capacity Session slots across live workers.", "# TYPE enigma_capacity gauge",
        _line("enigma_capacity", sum(w.capacity for w in workers)),
        "# HELP enigma_hosted_sessions Sessions hosted per worker.", "# TYPE enigma_hosted_sessions gauge",
    ]
    lines += [_line("enigma_hosted_sessions", w.sessions, worker=w.worker_id) for w in workers]
    lines += ["# HELP enigma_warm_contexts Pre-made browser contexts per worker.",
              "# TYPE enigma_warm_contexts gauge"]
    lines += [_line("enigma_warm_contexts", w.warm, worker=w.worker_id) for w in workers]
    return HttpResponse("\n".join(lines) + "\n", content_type="text/plain; version=0.0.4")
