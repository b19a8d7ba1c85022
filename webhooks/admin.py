from django.contrib import admin

from .models import WebhookDelivery


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = ("id", "task_id", "url", "status", "attempts", "created_at", "delivered_at")
    search_fields = ("id", "task_id", "session_id")
    list_filter = ("status",)
    exclude = ("auth",)
