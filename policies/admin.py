from typing import Any

from django.contrib import admin

from .models import Policy, PolicyAuditEntry


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
