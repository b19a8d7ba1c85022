from django.contrib import admin

from .models import Trigger, TriggerRun


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
