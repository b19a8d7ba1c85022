from __future__ import annotations

from django.urls import path

from . import api

urlpatterns = [
    path("sessions/<str:session_id>/recording", api.RecordingFileApi.as_view(), name="recording"),
    path("sessions/<str:session_id>/recording/steps", api.RecordingStepsApi.as_view(), name="recording-steps"),
]
