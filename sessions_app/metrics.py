"""Prometheus metrics in the text exposition format (spec README additions).

Never open: a scraper sends `Authorization: Bearer $ENIGMA_METRICS_TOKEN` (when the operator set
one), or a staff user reads them logged in to the dashboard. Worker ids and load are operator
information, not a tenant's.
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


def metrics_allowed(request: HttpRequest) -> bool:
    """True for the metrics token (when one is set) or a logged-in staff user."""
    token = settings.ENIGMA_METRICS_TOKEN
    given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    if token and given and hmac.compare_digest(given.encode(), token.encode()):
        return True
    user = getattr(request, "user", None)
    return bool(user is not None and user.is_authenticated and user.is_staff)


def metrics(request: HttpRequest) -> HttpResponse:
    if not metrics_allowed(request):
        message = "Metrics need Authorization: Bearer <ENIGMA_METRICS_TOKEN> or a staff login"
        return JsonResponse(error_body(401, "UNAUTHORIZED", message), status=401)
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
        "# HELP enigma_workers Live browser workers.",
        "# TYPE enigma_workers gauge",
        _line("enigma_workers", len(workers)),
        "# HELP enigma_capacity Session slots across live workers.",
        "# TYPE enigma_capacity gauge",
        _line("enigma_capacity", sum(w.capacity for w in workers)),
        "# HELP enigma_hosted_sessions Sessions hosted per worker.",
        "# TYPE enigma_hosted_sessions gauge",
    ]
    lines += [_line("enigma_hosted_sessions", w.sessions, worker=w.worker_id) for w in workers]
    lines += ["# HELP enigma_warm_contexts Pre-made browser contexts per worker.", "# TYPE enigma_warm_contexts gauge"]
    lines += [_line("enigma_warm_contexts", w.warm, worker=w.worker_id) for w in workers]
    return HttpResponse("\n".join(lines) + "\n", content_type="text/plain; version=0.0.4")
