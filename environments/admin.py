from django.contrib import admin

from .models import Environment, StoredFile


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
