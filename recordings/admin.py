from __future__ import annotations

from django.contrib import admin

from .models import Recording


@admin.register(Recording)
class RecordingAdmin(admin.ModelAdmin):
    list_display = ("session", "team", "state", "duration_ms", "size_bytes", "ready_at")
    list_filter = ("state",)
    readonly_fields = [f.name for f in Recording._meta.fields]
