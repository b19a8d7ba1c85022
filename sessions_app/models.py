"""Browser sessions, their tasks and their event log."""

from __future__ import annotations

import secrets

from django.db import models


def new_id() -> str:
    """128 random bits, hex: unguessable (spec README §7)."""
    return secrets.token_hex(16)


class BrowserSession(models.Model):
    class State(models.TextChoices):
        PENDING = "pending"
        ACTIVE = "active"
        ORPHANED = "orphaned"
        COMPLETED = "completed"
        TERMINATED = "terminated"
        FAILED = "failed"

    LIVE_STATES = (State.PENDING, State.ACTIVE, State.ORPHANED)
    ENDED_STATES = (State.COMPLETED, State.TERMINATED, State.FAILED)

    id = models.CharField(primary_key=True, max_length=32, default=new_id, editable=False)
    team = models.ForeignKey("accounts.Team", on_delete=models.CASCADE, related_name="sessions")
    api_key = models.ForeignKey("accounts.ApiKey", on_delete=models.SET_NULL, null=True, blank=True)
    state = models.CharField(max_length=12, choices=State.choices, default=State.PENDING, db_index=True)
    end_reason = models.CharField(max_length=32, blank=True)
    # sessions_app.config.SessionConfig as JSON (no secrets)
    config = models.JSONField(default=dict)
    worker_id = models.CharField(max_length=100, blank=True)
    generation = models.PositiveIntegerField(default=0)  # bumped by each claim; fences old hosts
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    paused = models.BooleanField(default=False)
    human_control = models.BooleanField(default=False)
    # Where the client reached us when it started the session (public_base_url of that request):
    # the base of links the worker writes, such as data.files[].downloadUrl.
    base_url = models.CharField(max_length=300, blank=True)
    # The last control command (stream entry id) the runner applied: a runner that takes the
    # session over applies the commands after it, each exactly once.
    last_command_id = models.CharField(max_length=40, blank=True)
    current_url = models.TextField(blank=True)
    current_title = models.TextField(blank=True)
    # Browser state checkpoint (cookies, storage) for orphan takeover.
    storage_state = models.JSONField(null=True, blank=True)
    input_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    cost_micros = models.BigIntegerField(default=0)
    # Bytes the browser moved through the egress gate, over every host that held the session.
    egress_bytes_sent = models.BigIntegerField(default=0)
    egress_bytes_received = models.BigIntegerField(default=0)
    # What the ledger already holds for this session (see sessions_app.metering).
    charged_input_tokens = models.BigIntegerField(default=0)
    charged_output_tokens = models.BigIntegerField(default=0)
    charged_compute_ms = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    last_activity_at = models.DateTimeField(auto_now_add=True)
    orphaned_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"session {self.id} ({self.state})"

    @property
    def is_live(self) -> bool:
        return self.state in self.LIVE_STATES


class Task(models.Model):
    class State(models.TextChoices):
        QUEUED = "started"  # accepted, waiting its turn (api.md §4.3)
        RUNNING = "running"
        GUARDRAIL = "guardrail_trigger"
        COMPLETED = "task_completed"
        FAILED = "failed"
        STOPPED = "stopped"
        TERMINATED = "terminated"

    OPEN_STATES = (State.QUEUED, State.RUNNING, State.GUARDRAIL)
    # A task is settled once it no longer works on its own: it ended, or it asks a human
    # (guardrail). Whoever waits for a task (the inline wait, MCP, the OpenAI endpoint) stops then.
    WORKING_STATES = (State.QUEUED, State.RUNNING)

    id = models.CharField(primary_key=True, max_length=32, default=new_id, editable=False)
    session = models.ForeignKey(BrowserSession, on_delete=models.CASCADE, related_name="tasks")
    seq = models.PositiveIntegerField()
    state = models.CharField(max_length=20, choices=State.choices, default=State.QUEUED)
    prompt = models.TextField(blank=True)
    config = models.JSONField(default=dict)  # sessions_app.config.TaskConfig as JSON (no secrets)
    result_message = models.TextField(blank=True)
    result_data = models.JSONField(default=dict, blank=True)  # files, network
    error = models.TextField(blank=True)
    code = models.CharField(max_length=40, blank=True)
    error_details = models.JSONField(default=dict, blank=True)
    guardrail_question = models.TextField(blank=True)
    input_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["seq"]
        constraints = [models.UniqueConstraint(fields=["session", "seq"], name="unique_task_seq")]

    def __str__(self) -> str:
        return f"task {self.id} ({self.state})"

    @property
    def is_settled(self) -> bool:
        return self.state not in self.WORKING_STATES


class SessionEvent(models.Model):
    """The ordered event log of a session; `id` is the event id clients resume from."""

    session = models.ForeignKey(BrowserSession, on_delete=models.CASCADE, related_name="events")
    name = models.CharField(max_length=40)  # socket event name: message, end_session, ...
    type = models.CharField(max_length=40)  # data.type for "message" events
    task_id = models.CharField(max_length=32, blank=True)
    payload = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["session", "id"])]
