from typing import Any

from django.contrib import admin

from .models import Environment, Policy, PolicyAuditEntry, StoredFile, Trigger, TriggerRun, WebhookDelivery


@admin.register(Environment)
class EnvironmentAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "team", "status", "blob_size", "usage_count", "last_used_at", "created_at")
    search_fields = ("id", "name")
    list_filter = ("status",)


@admin.register(StoredFile)
class StoredFileAdmin(admin.ModelAdmin):
    list_display = ("id", "original_name", "kind", "team", "environment", "size", "created_at")
    search_fields = ("id", "original_name", "task_id")
    list_filter = ("kind",)


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = ("id", "task_id", "url", "status", "attempts", "created_at", "delivered_at")
    search_fields = ("id", "task_id", "session_id")
    list_filter = ("status",)
    exclude = ("auth",)


@admin.register(Policy)
class PolicyAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "team", "status", "updated_at")
    search_fields = ("id", "name")
    list_filter = ("status",)


@admin.register(PolicyAuditEntry)
class PolicyAuditEntryAdmin(admin.ModelAdmin):
    """Read only: the audit trail is immutable."""

    list_display = ("created_at", "session_id", "policy_id", "source", "action", "decision", "rule")
    search_fields = ("session_id", "policy_id", "task_id")
    list_filter = ("decision", "source")

    def has_add_permission(self, request: Any) -> bool:
        return False

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: Any, obj: Any = None) -> bool:
        return False


class TriggerRunInline(admin.TabularInline):
    model = TriggerRun
    extra = 0
    fields = ("created_at", "status", "manual", "session_id", "task_id", "code", "error")
    readonly_fields = fields
    can_delete = False


@admin.register(Trigger)
class TriggerAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "team", "schedule_type", "status", "next_run_at", "consecutive_failures")
    search_fields = ("id", "name")
    list_filter = ("status", "schedule_type")
    exclude = ("webhook",)
    inlines = [TriggerRunInline]
