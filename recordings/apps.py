from __future__ import annotations

from django.apps import AppConfig

from sessions_app import signals


class RecordingsConfig(AppConfig):
    name = "recordings"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # models load once the apps are ready
        from sessions_app.runner.screencast import recorder_factory_set

        from . import receivers
        from .recorder import SessionRecorder

        # The sessions app knows no recordings: it asks this app for the recorder of a session.
        recorder_factory_set(SessionRecorder.open)
        signals.session_swept.connect(receivers.session_swept, dispatch_uid="recordings.session_swept")
