"""Trigger and TriggerRun moved here from environments with their tables (Meta.db_table): only the
migration state changes, no table is created. environments 0005 then drops them from its state."""

import django.db.models.deletion
import environments.models
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("accounts", "0003_team_session_limit"),
        ("environments", "0004_environment_session_id"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="Trigger",
                    fields=[
                        (
                            "id",
                            models.CharField(
                                default=environments.models.object_id,
                                editable=False,
                                max_length=24,
                                primary_key=True,
                                serialize=False,
                            ),
                        ),
                        ("policy_id", models.CharField(blank=True, max_length=24)),
                        ("name", models.CharField(max_length=200)),
                        ("description", models.CharField(blank=True, max_length=1000)),
                        (
                            "schedule_type",
                            models.CharField(
                                choices=[("at", "At"), ("every", "Every"), ("cron", "Cron")], max_length=5
                            ),
                        ),
                        ("schedule_at", models.DateTimeField(blank=True, null=True)),
                        ("schedule_interval", models.CharField(blank=True, max_length=20)),
                        ("schedule_cron", models.CharField(blank=True, max_length=100)),
                        ("timezone", models.CharField(default="UTC", max_length=64)),
                        ("prompt", models.TextField()),
                        ("starting_url", models.TextField(blank=True)),
                        ("output_type", models.CharField(default="text", max_length=20)),
                        ("output_schema", models.JSONField(blank=True, null=True)),
                        ("delivery_mode", models.CharField(default="webhook", max_length=10)),
                        ("webhook", models.JSONField(blank=True, null=True)),
                        ("retry_policy", models.JSONField(blank=True, null=True)),
                        ("max_consecutive_failures", models.PositiveIntegerField(default=5)),
                        (
                            "status",
                            models.CharField(
                                choices=[("active", "Active"), ("paused", "Paused")], default="active", max_length=10
                            ),
                        ),
                        ("next_run_at", models.DateTimeField(blank=True, db_index=True, null=True)),
                        ("consecutive_failures", models.PositiveIntegerField(default=0)),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                        ("updated_at", models.DateTimeField(auto_now=True)),
                        (
                            "environment",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="triggers",
                                to="environments.environment",
                            ),
                        ),
                        (
                            "team",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE, related_name="triggers", to="accounts.team"
                            ),
                        ),
                    ],
                    options={
                        "db_table": "environments_trigger",
                        "ordering": ["-created_at"],
                    },
                ),
                migrations.CreateModel(
                    name="TriggerRun",
                    fields=[
                        (
                            "id",
                            models.CharField(
                                default=environments.models.object_id,
                                editable=False,
                                max_length=24,
                                primary_key=True,
                                serialize=False,
                            ),
                        ),
                        (
                            "status",
                            models.CharField(
                                choices=[("running", "Running"), ("completed", "Completed"), ("failed", "Failed")],
                                default="running",
                                max_length=10,
                            ),
                        ),
                        ("manual", models.BooleanField(default=False)),
                        ("session_id", models.CharField(blank=True, max_length=32)),
                        ("task_id", models.CharField(blank=True, db_index=True, max_length=32)),
                        ("result", models.TextField(blank=True)),
                        ("error", models.TextField(blank=True)),
                        ("code", models.CharField(blank=True, max_length=40)),
                        ("created_at", models.DateTimeField(auto_now_add=True, db_index=True)),
                        ("completed_at", models.DateTimeField(blank=True, null=True)),
                        (
                            "trigger",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE, related_name="runs", to="triggers.trigger"
                            ),
                        ),
                    ],
                    options={
                        "db_table": "environments_triggerrun",
                        "ordering": ["-created_at"],
                    },
                ),
            ],
            database_operations=[],
        ),
    ]
