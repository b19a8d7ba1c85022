"""Policy and PolicyAuditEntry moved here from environments with their tables (Meta.db_table): only the
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
                    name="Policy",
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
                        ("name", models.CharField(max_length=100)),
                        ("description", models.CharField(blank=True, max_length=500)),
                        ("llm_role", models.TextField(blank=True, max_length=2000)),
                        (
                            "status",
                            models.CharField(
                                choices=[("active", "Active"), ("draft", "Draft")], default="active", max_length=10
                            ),
                        ),
                        ("rules", models.JSONField(default=dict)),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                        ("updated_at", models.DateTimeField(auto_now=True)),
                        (
                            "team",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE, related_name="policies", to="accounts.team"
                            ),
                        ),
                    ],
                    options={
                        "verbose_name_plural": "policies",
                        "db_table": "environments_policy",
                        "ordering": ["-created_at"],
                    },
                ),
                migrations.CreateModel(
                    name="PolicyAuditEntry",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                            ),
                        ),
                        ("session_id", models.CharField(db_index=True, max_length=32)),
                        ("task_id", models.CharField(blank=True, max_length=32)),
                        ("policy_id", models.CharField(max_length=24)),
                        ("source", models.CharField(default="agent", max_length=10)),
                        ("action", models.CharField(max_length=40)),
                        ("category", models.CharField(blank=True, max_length=20)),
                        ("target", models.TextField(blank=True)),
                        ("url", models.TextField(blank=True)),
                        ("rule", models.TextField(blank=True)),
                        ("decision", models.CharField(max_length=10)),
                        ("response", models.TextField(blank=True)),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                        (
                            "team",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="policy_audit",
                                to="accounts.team",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "environments_policyauditentry",
                        "ordering": ["id"],
                    },
                ),
            ],
            database_operations=[],
        ),
    ]
