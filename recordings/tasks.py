from __future__ import annotations

from celery import shared_task

from . import services


@shared_task(name="recordings.delete_expired", acks_late=True, reject_on_worker_lost=True)
def delete_expired_recordings() -> int:
    return services.recordings_delete_expired()
