"""What the sessions app tells the apps built on it (webhooks, triggers), which connect their
receivers in their AppConfig.ready(): the sessions app imports none of them.

Receivers run in the sender's process and transaction; an exception in one propagates.
"""

from __future__ import annotations

from django.dispatch import Signal

# A task was created (task=Task, webhook=the task's parsed webhook or None); sent inside the
# transaction that creates the task, so a receiver's rows commit (or roll back) with it.
task_created = Signal()

# A task reached its end (task_id=str); sent by the Celery task sessions_app.tasks.task_finished
# in an ops worker. It may be sent twice for one task: receivers must be safe to run twice.
task_finished = Signal()

# The sweep ended a session whose runner never saw the end (its host died or lost it); sent after
# the end is committed, with session_id=str and host=the host that last held it (its local files,
# e.g. a recording's frames, are there).
session_swept = Signal()
