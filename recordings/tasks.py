from __future__ import annotations

from celery import shared_task

from sessions_app.registry import host_queue

from . import services


@shared_task(name="recordings.delete_expired", acks_late=True, reject_on_worker_lost=True)
def delete_expired_recordings() -> int:
    return services.recordings_delete_expired()


# The runner's own encode, when it saw the end after all, goes first.
SETTLE_DELAY_S = 10


@shared_task(name="recordings.settle", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def recording_settle(session_id: str) -> None:
    services.recording_settle(session_id=session_id)


def recording_settle_dispatch(*, session_id: str, host: str) -> None:
    """Have the browser host that last held the session (its spool is there) settle its recording."""
    recording_settle.apply_async((session_id,), queue=host_queue(host), countdown=SETTLE_DELAY_S)
