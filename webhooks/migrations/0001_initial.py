"""WebhookDelivery and WebhookSecret moved here from environments with their tables (Meta.db_table): only the
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
                    name="WebhookDelivery",
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
                        ("session_id", models.CharField(db_index=True, max_length=32)),
                        ("task_id", models.CharField(db_index=True, max_length=32)),
                        ("name", models.CharField(blank=True, max_length=200)),
                        ("url", models.TextField()),
                        ("auth", models.TextField(blank=True)),
                        ("submitted_data", models.CharField(default="full_response", max_length=20)),
                        (
                            "status",
                            models.CharField(
                                choices=[
                                    ("scheduled", "Scheduled"),
                                    ("pending", "Pending"),
                                    ("delivered", "Delivered"),
                                    ("failed", "Failed"),
                                    ("skipped", "Skipped"),
                                ],
                                default="scheduled",
                                max_length=10,
                            ),
                        ),
                        ("payload", models.JSONField(blank=True, null=True)),
                        ("attempts", models.PositiveIntegerField(default=0)),
                        ("attempt_log", models.JSONField(blank=True, default=list)),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                        ("delivered_at", models.DateTimeField(blank=True, null=True)),
                        (
                            "team",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="webhook_deliveries",
                                to="accounts.team",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "environments_webhookdelivery",
                        "ordering": ["created_at"],
                    },
                ),
                migrations.CreateModel(
                    name="WebhookSecret",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                            ),
                        ),
                        ("secret", models.CharField(max_length=80)),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                        (
                            "team",
                            models.OneToOneField(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="webhook_secret",
                                to="accounts.team",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "environments_webhooksecret",
                    },
                ),
            ],
            database_operations=[],
        ),
    ]
