"""Dashboard pages: thin adapters over the services and selectors of the apps.

Every view under /app/ is a `team_view`: logged in, scoped to the current team (teams.py).
Form posts answer JSON to `fetch` (Accept: application/json) and redirect otherwise.
"""

from __future__ import annotations

import csv
import json
import shlex
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from accounts import memberships as services
from accounts.models import Membership
from accounts.services import api_key_create, api_key_revoke, can_revoke, team_create, user_create
from billing import selectors as billing
from billing.models import TopUp
from billing.money import micros_to_usd
from billing.services import topup_bounds_usd, topup_create
from enigma_site.api import public_base_url
from enigma_site.errors import ApiError
from recordings.selectors import recording_player_links
from sessions_app.cdp import cdp_token_create, connect_url
from sessions_app.events import events_after
from sessions_app.models import BrowserSession, Task
from sessions_app.schema import parse_message, parse_session_body
from sessions_app.selectors import SessionNotFound, session_get
from sessions_app.services import session_message, session_start
from sessions_app.streaming import viewer_url

from . import charts, forms, selectors
from .teams import Context, current_membership, set_current_team, team_view
from .templatetags.dashboard import balance as balance_display
from .templatetags.dashboard import since, state_label, state_tone, usd

LIVE = BrowserSession.LIVE_STATES


def _wants_json(request: HttpRequest) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def _done(
    request: HttpRequest, url: str, message: str, *, error: bool = False, status: int = 400, **extra: Any
) -> HttpResponse:
    """Answer a form post: JSON for fetch, else a flash message and a redirect."""
    if _wants_json(request):
        body = {"ok": not error, ("error" if error else "message"): message, **extra}
        return JsonResponse(body, status=status if error else 200)
    (messages.error if error else messages.success)(request, message)
    return redirect(url)


# ----- public pages ----------------------------------------------------------------------------


def home(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("dashboard:overview")
    price = billing.current_price()
    return render(request, "dashboard/landing.html", {"price": price})


def signup(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("dashboard:overview")
    form = forms.SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = user_create(email=form.cleaned_data["email"], password=form.cleaned_data["password"])
        login(request, user)
        messages.success(request, "Welcome to Enigma. Create an API key and top up to start.")
        next_url = request.POST.get("next") or ""
        return redirect(
            next_url if next_url.startswith("/") and not next_url.startswith("//") else "dashboard:overview"
        )
    return render(request, "dashboard/auth/signup.html", {"form": form, "next": request.GET.get("next", "")})


def invite(request: HttpRequest, token: str) -> HttpResponse:
    try:
        invitation = services.invite_read(token)
    except ApiError as exc:
        return render(request, "dashboard/invite.html", {"error": exc.message}, status=400)
    context: dict[str, Any] = {"invite": invitation, "token": token}
    if request.method == "POST" and request.user.is_authenticated:
        try:
            membership = services.invite_accept(token=token, user=request.user)
        except ApiError as exc:
            context["error"] = exc.message
            return render(request, "dashboard/invite.html", context, status=400)
        set_current_team(request, membership.team)
        messages.success(request, f"You joined {membership.team.name}.")
        return redirect("dashboard:overview")
    return render(request, "dashboard/invite.html", context)


# ----- overview and teams ----------------------------------------------------------------------


@team_view
def overview(request: HttpRequest, ctx: Context) -> HttpResponse:
    sessions = selectors.dashboard_sessions(team=ctx.team, limit=5)
    counts = selectors.session_counts(team=ctx.team)
    has_key = selectors.api_key_list(team=ctx.team).filter(revoked_at__isnull=True).exists()
    balance = billing.team_balance_micros(team=ctx.team)
    return render(
        request,
        "dashboard/overview.html",
        {
            "sessions": sessions,
            "balance": balance,
            "live": sum(counts.get(s, 0) for s in LIVE),
            "total_sessions": sum(counts.values()),
            "month_spend": selectors.month_spend_micros(team=ctx.team),
            "steps": [
                ("Create an API key", has_key, reverse("dashboard:keys")),
                ("Top up your balance", balance > 0, reverse("dashboard:billing")),
                ("Run a task in the playground", bool(counts), reverse("dashboard:playground")),
            ],
        },
    )


@require_POST
@team_view
def team_switch(request: HttpRequest, ctx: Context) -> HttpResponse:
    chosen = request.POST.get("team", "")
    membership = (
        Membership.objects.filter(user=ctx.user, team_id=chosen, team__is_active=True).select_related("team").first()
        if chosen.isdigit()
        else None
    )
    if membership is None:
        raise Http404("No such team")
    set_current_team(request, membership.team)
    messages.success(request, f"Switched to {membership.team.name}.")
    return redirect("dashboard:overview")


def team_new(request: HttpRequest) -> HttpResponse:
    if not request.user.is_authenticated:
        return redirect(f"{settings.LOGIN_URL}?next={request.path}")
    form = forms.TeamForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        team = team_create(owner=request.user, name=form.cleaned_data["name"].strip())
        set_current_team(request, team)
        messages.success(request, f"Created {team.name}. Invite your teammates here.")
        return redirect("dashboard:members")
    membership = current_membership(request)
    if membership is not None:
        request.dashboard = Context(  # type: ignore[attr-defined]
            user=request.user,
            team=membership.team,
            membership=membership,
        )
    return render(request, "dashboard/team_new.html", {"form": form, "has_team": membership is not None})


@team_view
def members(request: HttpRequest, ctx: Context) -> HttpResponse:
    return render(
        request,
        "dashboard/members.html",
        {
            "members": selectors.membership_list(team=ctx.team),
            "form": forms.InviteForm(),
            "roles": Membership.Role.choices,
            "invite_link": request.session.pop("dashboard_invite_link", None),
        },
    )


@require_POST
@team_view
def member_invite(request: HttpRequest, ctx: Context) -> HttpResponse:
    form = forms.InviteForm(request.POST)
    url = reverse("dashboard:members")
    if not form.is_valid():
        return _done(request, url, "Enter a valid email address and role.", error=True)
    try:
        link = services.invite_create(
            team=ctx.team,
            user=ctx.user,
            email=form.cleaned_data["email"],
            role=form.cleaned_data["role"],
            accept_url=lambda token: request.build_absolute_uri(reverse("dashboard:invite", args=[token])),
        )
    except ApiError as exc:
        return _done(request, url, exc.message, error=True, status=exc.status_code)
    request.session["dashboard_invite_link"] = {"email": form.cleaned_data["email"], "link": link}
    return _done(request, url, f"Invitation sent to {form.cleaned_data['email']}.", link=link)


def _member_or_404(ctx: Context, membership_id: int) -> Membership:
    membership = selectors.membership_get(team=ctx.team, membership_id=membership_id)
    if membership is None:
        raise Http404("No such member")
    return membership


@require_POST
@team_view
def member_role(request: HttpRequest, ctx: Context, membership_id: int) -> HttpResponse:
    membership = _member_or_404(ctx, membership_id)
    try:
        services.membership_role_change(membership=membership, user=ctx.user, role=request.POST.get("role", ""))
    except ApiError as exc:
        return _done(request, reverse("dashboard:members"), exc.message, error=True, status=exc.status_code)
    return _done(request, reverse("dashboard:members"), f"{membership.user.email} is now {membership.role}.")


@require_POST
@team_view
def member_remove(request: HttpRequest, ctx: Context, membership_id: int) -> HttpResponse:
    membership = _member_or_404(ctx, membership_id)
    try:
        services.membership_remove(membership=membership, user=ctx.user)
    except ApiError as exc:
        return _done(request, reverse("dashboard:members"), exc.message, error=True, status=exc.status_code)
    return _done(request, reverse("dashboard:members"), f"Removed {membership.user.email} from {ctx.team.name}.")


@require_POST
@team_view
def team_leave(request: HttpRequest, ctx: Context) -> HttpResponse:
    try:
        services.team_leave(team=ctx.team, user=ctx.user)
    except ApiError as exc:
        return _done(request, reverse("dashboard:members"), exc.message, error=True, status=exc.status_code)
    request.session.pop("dashboard_team_id", None)
    return _done(request, reverse("dashboard:overview"), f"You left {ctx.team.name}.")


# ----- API keys --------------------------------------------------------------------------------


@team_view
def keys(request: HttpRequest, ctx: Context) -> HttpResponse:
    form = forms.KeyForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        created = api_key_create(team=ctx.team, user=ctx.user, name=form.cleaned_data["name"].strip())
        # Shown once: kept in the session only until the next page load.
        request.session["dashboard_new_key"] = {"raw": created.raw, "name": created.api_key.name}
        return redirect("dashboard:keys")
    items = [(key, can_revoke(user=ctx.user, api_key=key)) for key in selectors.api_key_list(team=ctx.team)]
    return render(
        request,
        "dashboard/keys.html",
        {
            "keys": items,
            "form": form,
            "new_key": request.session.pop("dashboard_new_key", None),
            "base_url": public_base_url(request),
        },
    )


@require_POST
@team_view
def key_revoke(request: HttpRequest, ctx: Context, key_id: int) -> HttpResponse:
    key = selectors.api_key_get(team=ctx.team, key_id=key_id)
    if key is None:
        raise Http404("No such key")
    try:
        api_key_revoke(api_key=key, user=ctx.user)
    except ApiError as exc:
        return _done(request, reverse("dashboard:keys"), exc.message, error=True, status=exc.status_code)
    return _done(
        request, reverse("dashboard:keys"), f"Revoked {key.name or key.display}. Requests with it now get 401."
    )


# ----- sessions --------------------------------------------------------------------------------


def _state_filter(request: HttpRequest) -> str:
    state = request.GET.get("state", "")
    return state if state in BrowserSession.State.values else ""


@team_view
def sessions(request: HttpRequest, ctx: Context) -> HttpResponse:
    state = _state_filter(request)
    rows = selectors.dashboard_sessions(team=ctx.team, state=state)
    return render(
        request,
        "dashboard/sessions.html",
        {
            "rows": rows,
            "state": state,
            "states": BrowserSession.State.choices,
            "counts": selectors.session_counts(team=ctx.team),
            "any_live": any(s.is_live for s in rows),
        },
    )


@require_GET
@team_view
def session_rows(request: HttpRequest, ctx: Context) -> HttpResponse:
    rows = selectors.dashboard_sessions(team=ctx.team, state=_state_filter(request))
    response = render(request, "dashboard/_session_rows.html", {"rows": rows})
    response["X-Any-Live"] = "1" if any(s.is_live for s in rows) else "0"
    return response


def _session_or_404(ctx: Context, session_id: str) -> BrowserSession:
    try:
        return session_get(team=ctx.team, session_id=session_id)
    except SessionNotFound:
        raise Http404("No such session") from None


@team_view
def session_page(request: HttpRequest, ctx: Context, session_id: str) -> HttpResponse:
    session = _session_or_404(ctx, session_id)
    return render(
        request,
        "dashboard/session.html",
        {
            "session": session,
            **_session_panels(session),
            "viewer": viewer_url(base_url=public_base_url(request), session_id=session.pk, control=True)
            if session.is_live
            else "",
            "recording": recording_player_links(session=session),
            "task_form": forms.TaskForm(),
            "cdp_url": _cdp_url(request, session),
        },
    )


def _cdp_url(request: HttpRequest, session: BrowserSession) -> str:
    """A fresh connectUrl of a live CDP session (issue 16), else ""."""
    if not (session.is_live and session.config.get("cdp")):
        return ""
    return connect_url(base_url=public_base_url(request), token=cdp_token_create(session_id=session.pk)[0])


def _session_panels(session: BrowserSession) -> dict[str, Any]:
    tasks = list(session.tasks.all())
    guardrail = next((t for t in tasks if t.state == Task.State.GUARDRAIL), None)
    return {"tasks": tasks, "guardrail": guardrail}


def _event_summary(event: dict[str, Any]) -> tuple[str, str]:
    """(kind, text) of a stored event for the timeline."""
    data = event["data"] or {}
    kind = str(data.get("type") or event["name"])
    raw_inner = data.get("data")
    inner: dict[str, Any] = raw_inner if isinstance(raw_inner, dict) else {}
    if kind == "action":
        target = inner.get("target") or ""
        who = "You" if data.get("source") == "human" else "Agent"
        return kind, f"{who}: {inner.get('name', 'action')}" + (f" {target}" if target else "")
    if kind == "takeover":
        return kind, "You took control" if data.get("control") == "human" else "Control returned to the agent"
    if kind == "end_session":
        return kind, f"Session ended ({data.get('reason', '')})"
    if kind == "guardrail_trigger":
        return kind, f"Needs your input: {inner.get('value', '')}"
    text = inner.get("message") or data.get("content") or data.get("error") or data.get("message") or ""
    return kind, str(text)[:500]


@require_GET
@team_view
def session_poll(request: HttpRequest, ctx: Context, session_id: str) -> JsonResponse:
    """The session's state, its tasks (HTML) and the events after ?after=<event id>."""
    session = _session_or_404(ctx, session_id)
    try:
        after = max(int(request.GET.get("after", "0")), 0)
    except ValueError:
        after = 0
    events = []
    for event in events_after(session_id=session.pk, after=after, limit=200):
        kind, text = _event_summary(event)
        events.append({"id": event["id"], "kind": kind, "text": text, "at": event["createdAt"]})
    panels = _session_panels(session)
    return JsonResponse(
        {
            "state": session.state,
            "stateLabel": state_label(session.state),
            "stateTone": state_tone(session.state),
            "live": session.is_live,
            "paused": session.paused,
            "humanControl": session.human_control,
            "endReason": session.end_reason,
            "url": session.current_url,
            "cost": usd(session.cost_micros),
            "duration": since(session.started_at or session.created_at, session.ended_at),
            "tokens": f"{session.input_tokens + session.output_tokens:,}",
            "tasksHtml": render_to_string("dashboard/_tasks.html", {"session": session, **panels}, request=request),
            "guardrail": panels["guardrail"].guardrail_question if panels["guardrail"] else None,
            "events": events,
        }
    )


def _send(request: HttpRequest, ctx: Context, session_id: str, message: dict[str, Any], done: str) -> HttpResponse:
    session = _session_or_404(ctx, session_id)
    url = reverse("dashboard:session", args=[session.pk])
    try:
        session_message(session=session, message=parse_message(message))
    except ApiError as exc:
        return _done(request, url, exc.message, error=True, status=exc.status_code)
    return _done(request, url, done)


CONTROL_DONE = {
    "pause": "Paused: the agent waits until you resume.",
    "resume": "Resumed.",
    "stop": "Stopping the current task.",
    "terminate": "Terminating the session.",
}


@require_POST
@team_view
def session_control(request: HttpRequest, ctx: Context, session_id: str) -> HttpResponse:
    action = request.POST.get("action", "")
    if action not in CONTROL_DONE:
        return _done(request, reverse("dashboard:session", args=[session_id]), "Unknown action.", error=True)
    return _send(request, ctx, session_id, {"actionType": "state", "newState": action}, CONTROL_DONE[action])


@require_POST
@team_view
def session_task(request: HttpRequest, ctx: Context, session_id: str) -> HttpResponse:
    text = request.POST.get("task", "").strip()
    if not text:
        return _done(
            request,
            reverse("dashboard:session", args=[session_id]),
            "Describe the task first, e.g. “extract the title”.",
            error=True,
        )
    return _send(request, ctx, session_id, {"actionType": "newTask", "taskDetails": text}, "Task queued.")


@require_POST
@team_view
def session_guardrail(request: HttpRequest, ctx: Context, session_id: str) -> HttpResponse:
    decision = "stop" if request.POST.get("decision") == "stop" else "resume"
    message: dict[str, Any] = {"actionType": "guardrail", "newState": decision}
    if request.POST.get("answer", "").strip() or decision == "resume":
        message["taskDetails"] = request.POST.get("answer", "")
    return _send(
        request,
        ctx,
        session_id,
        message,
        "Answer sent: the agent continues." if decision == "resume" else "Task stopped.",
    )


# ----- playground ------------------------------------------------------------------------------


def _curl(base: str, body: dict[str, Any]) -> str:
    return (
        f"curl -X POST {base}/start/start-session \\\n"
        f'  -H "Authorization: Bearer $ENIGMA_API_KEY" \\\n'
        f'  -H "Content-Type: application/json" \\\n'
        f"  -d {shlex.quote(json.dumps(body))}"
    )


@team_view
def playground(request: HttpRequest, ctx: Context) -> HttpResponse:
    form = forms.PlaygroundForm(request.POST or None, initial={"max_duration_s": 300})
    error = ""
    if request.method == "POST" and form.is_valid():
        try:
            spec = parse_session_body(form.body(), require_task=False)
            session, _task = session_start(team=ctx.team, api_key=None, spec=spec)
        except ApiError as exc:
            error = exc.message
            field = {"startingUrl": "starting_url", "taskDetails": "task"}.get(exc.details.get("parameter", ""))
            if field:
                form.add_error(field, exc.message)
                error = ""
            elif exc.code == "INSUFFICIENT_BALANCE":
                error = f"{exc.message}"
        else:
            messages.success(request, "Session started. The agent is working on your task.")
            return redirect("dashboard:session", session_id=session.pk)
    example = {
        "startingUrl": "https://example.com",
        "taskDetails": "Extract the title of the page",
        "maxDuration": 300000,
        "terminateOnCompletion": False,
    }
    return render(
        request,
        "dashboard/playground.html",
        {
            "form": form,
            "error": error,
            "base_url": public_base_url(request),
            "curl": _curl(public_base_url(request), form.body() if form.is_bound and form.is_valid() else example),
            "balance": billing.team_balance_micros(team=ctx.team),
        },
    )


# ----- billing ---------------------------------------------------------------------------------


@team_view
def billing_page(request: HttpRequest, ctx: Context) -> HttpResponse:
    days = selectors.usage_by_day(team=ctx.team, days=30)
    labels = [d.day.strftime("%b %d") for d in days]
    cost_chart = charts.stacked_bars(
        labels=labels,
        title="Cost per day",
        series=[
            charts.Series("Tokens", "s-tokens", [d.token_cost_micros for d in days]),
            charts.Series("Compute", "s-compute", [d.compute_cost_micros for d in days]),
        ],
        fmt=lambda v: usd(int(v)),
    )
    token_chart = charts.stacked_bars(
        labels=labels,
        title="Tokens per day",
        series=[
            charts.Series("Input", "s-input", [d.input_tokens for d in days]),
            charts.Series("Output", "s-output", [d.output_tokens for d in days]),
        ],
        fmt=lambda v: f"{int(v):,}",
    )
    low, high = topup_bounds_usd()
    price = billing.current_price()
    return render(
        request,
        "dashboard/billing.html",
        {
            "balance": billing.team_balance_micros(team=ctx.team),
            "can_top_up": billing.can_top_up(team=ctx.team, user=ctx.user),
            "stripe_key": settings.STRIPE_PUBLISHABLE_KEY,
            "stripe_js": settings.STRIPE_JS_URL,
            "topup_min": low,
            "topup_max": high,
            "ledger": selectors.ledger_page(team=ctx.team),
            "cost_chart": cost_chart,
            "token_chart": token_chart,
            "month_total": sum(d.cost_micros for d in days),
            "by_key": selectors.usage_breakdown(team=ctx.team, group="key"),
            "by_session": selectors.usage_breakdown(team=ctx.team, group="session")[:20],
            "price": price,
            "pending_topups": billing.topup_list(team=ctx.team).filter(status=TopUp.Status.CREATED).count(),
        },
    )


@require_POST
@team_view
def billing_topup(request: HttpRequest, ctx: Context) -> JsonResponse:
    """Create the PaymentIntent for a top-up; Stripe.js confirms it with the card in the page."""
    try:
        intent_id, client_secret = topup_create(
            team=ctx.team, user=ctx.user, amount_usd=request.POST.get("amount", "").strip() or "0"
        )
    except ApiError as exc:
        return JsonResponse({"ok": False, "error": exc.message}, status=exc.status_code)
    return JsonResponse({"ok": True, "paymentIntent": intent_id, "clientSecret": client_secret})


@require_GET
@team_view
def billing_balance(request: HttpRequest, ctx: Context) -> JsonResponse:
    """The balance and the state of a top-up (?intent=pi_...), polled after a payment."""
    balance = billing.team_balance_micros(team=ctx.team)
    intent = request.GET.get("intent", "")
    status = ""
    if intent:
        status = (
            billing.topup_list(team=ctx.team).filter(payment_intent_id=intent).values_list("status", flat=True).first()
            or ""
        )
    return JsonResponse({"balance": micros_to_usd(balance), "display": balance_display(balance), "topup": status})


class _Echo:
    def write(self, value: str) -> str:
        return value


@require_GET
@team_view
def billing_csv(request: HttpRequest, ctx: Context) -> StreamingHttpResponse:
    writer = csv.writer(_Echo())
    header = [
        "created_at",
        "kind",
        "description",
        "amount_usd",
        "balance_after_usd",
        "session_id",
        "api_key",
        "input_tokens",
        "output_tokens",
        "compute_seconds",
    ]

    def rows() -> Any:
        yield writer.writerow(header)
        for e in selectors.ledger_export(team=ctx.team).iterator(chunk_size=500):
            yield writer.writerow(
                [
                    e.created_at.isoformat(),
                    e.kind,
                    e.description,
                    f"{micros_to_usd(e.amount_micros):.6f}",
                    f"{micros_to_usd(e.balance_after_micros):.6f}",
                    e.session_id,
                    e.api_key.display if e.api_key else "",
                    e.input_tokens,
                    e.output_tokens,
                    f"{e.compute_ms / 1000:.3f}",
                ]
            )

    filename = f"enigma-ledger-{ctx.team.pk}-{timezone.now():%Y%m%d}.csv"
    return StreamingHttpResponse(
        rows(), content_type="text/csv", headers={"Content-Disposition": f'attachment; filename="{filename}"'}
    )
