from django.apps import AppConfig

from sessions_app import signals


class TriggersConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "triggers"
    verbose_name = "Triggers (cron jobs)"

    def ready(self) -> None:
        from . import receivers  # models load once the apps are ready

        signals.task_finished.connect(receivers.task_finished, dispatch_uid="triggers.task_finished")
