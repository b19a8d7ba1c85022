from django.apps import AppConfig

from sessions_app import signals


class WebhooksConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "webhooks"
    verbose_name = "Webhooks"

    def ready(self) -> None:
        from . import receivers  # models load once the apps are ready

        signals.task_created.connect(receivers.task_created, dispatch_uid="webhooks.task_created")
        signals.task_finished.connect(receivers.task_finished, dispatch_uid="webhooks.task_finished")
