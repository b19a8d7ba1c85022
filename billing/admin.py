"""Operators' views: prices (editable), the ledger (read-only, plus adjustments posted through
ledger_post), top-ups and Stripe events with their processing status."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from accounts.models import Team

from .models import LedgerEntry, Price, StripeEvent, TopUp
from .money import format_usd, usd_to_micros
from .services import adjustment_post, stripe_event_mark_failed, stripe_event_process


@admin.register(Price)
class PriceAdmin(admin.ModelAdmin[Price]):
    list_display = [
        "effective_from",
        "input_per_million_micros",
        "output_per_million_micros",
        "compute_per_minute_micros",
        "created_at",
    ]
    ordering = ["-effective_from"]


class AdjustmentForm(forms.ModelForm[LedgerEntry]):
    """The only way to add a ledger entry in admin: an `adjustment` with a reason.

    The hidden key is fixed when the form is shown, so a double submit posts once.
    """

    amount_usd = forms.DecimalField(
        label="Amount (USD)",
        max_digits=14,
        decimal_places=6,
        help_text="Positive credits the team, negative debits it.",
    )
    reason = forms.CharField(max_length=300, widget=forms.TextInput(attrs={"size": 80}))
    key = forms.CharField(widget=forms.HiddenInput, initial=lambda: uuid.uuid4().hex)

    class Meta:
        model = LedgerEntry
        fields = ["team"]

    def clean_amount_usd(self) -> Decimal:
        amount: Decimal = self.cleaned_data["amount_usd"]
        if amount == 0:
            raise forms.ValidationError("An adjustment must move money.")
        return amount


@admin.register(LedgerEntry)
class LedgerEntryAdmin(admin.ModelAdmin[LedgerEntry]):
    list_display = [
        "id",
        "created_at",
        "team",
        "kind",
        "amount",
        "balance_after",
        "description",
        "session_id",
        "created_by",
    ]
    list_filter = ["kind", "created_at"]
    search_fields = ["idempotency_key", "session_id", "task_id", "description", "team__name"]
    list_select_related = ["team", "created_by"]
    date_hierarchy = "created_at"

    @admin.display(description="amount", ordering="amount_micros")
    def amount(self, obj: LedgerEntry) -> str:
        return f"{format_usd(obj.amount_micros)} ({obj.amount_micros} µ$)"

    @admin.display(description="balance after", ordering="balance_after_micros")
    def balance_after(self, obj: LedgerEntry) -> str:
        return format_usd(obj.balance_after_micros)

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        if obj is None:
            kwargs["form"] = AdjustmentForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return ["team", "amount_usd", "reason", "key"]
        return [f.name for f in LedgerEntry._meta.fields]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return [] if obj is None else [f.name for f in LedgerEntry._meta.fields]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: LedgerEntry, form: Any, change: bool) -> None:
        data = form.cleaned_data
        team: Team = data["team"]
        entry = adjustment_post(
            team=team,
            amount_micros=usd_to_micros(data["amount_usd"]),
            reason=data["reason"],
            user=request.user,  # type: ignore[arg-type]
            idempotency_key=data["key"],
        )
        if entry is None:
            entry = LedgerEntry.objects.get(idempotency_key=f"adjustment:{data['key']}")
            messages.warning(request, "This adjustment was already posted.")
        obj.__dict__.update({f.attname: getattr(entry, f.attname) for f in LedgerEntry._meta.fields})
        obj._state.adding = False

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        """Nothing to save: the entry was written by adjustment_post."""


@admin.register(TopUp)
class TopUpAdmin(admin.ModelAdmin[TopUp]):
    list_display = ["id", "created_at", "team", "user", "amount_cents", "status", "payment_intent_id", "credited_at"]
    list_filter = ["status"]
    search_fields = ["payment_intent_id", "team__name", "user__email"]
    list_select_related = ["team", "user"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(StripeEvent)
class StripeEventAdmin(admin.ModelAdmin[StripeEvent]):
    list_display = ["stripe_id", "type", "status", "deliveries", "received_at", "processed_at"]
    list_filter = ["status", "type"]
    search_fields = ["stripe_id", "type"]
    readonly_fields = ["stripe_id", "type", "status", "error", "deliveries", "received_at", "processed_at", "payload"]
    actions = ["reprocess"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.action(description="Process selected events again (failed or received only)")
    def reprocess(self, request: HttpRequest, queryset: QuerySet[StripeEvent]) -> None:
        for event in queryset:
            try:
                result = stripe_event_process(event=event)
            except Exception as exc:  # an operator's retry: record it on the row and go on
                stripe_event_mark_failed(event=event, error=repr(exc))
                self.message_user(request, f"{event.stripe_id}: {exc}", messages.ERROR)
            else:
                self.message_user(request, f"{event.stripe_id}: {result.status}", messages.SUCCESS)
