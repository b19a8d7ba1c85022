from django.apps import AppConfig


class SessionsConfig(AppConfig):
    name = "sessions_app"
    label = "sessions_app"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from environments.services import environment_holder_check_set

        from .selectors import session_holds_environment  # models load once the apps are ready

        # environments knows no sessions: it asks this app whether an environment's holder is busy.
        environment_holder_check_set(session_holds_environment)
