"""Celery tasks: thin adapters around this app's services."""

from __future__ import annotations

from celery import shared_task

from . import services


@shared_task(name="environments.delete_orphan_files", ignore_result=True)
def delete_orphan_files() -> int:
    return services.files_delete_orphans()


@shared_task(name="environments.delete_expired_downloads", ignore_result=True)
def delete_expired_downloads() -> int:
    return services.files_delete_expired_downloads()
