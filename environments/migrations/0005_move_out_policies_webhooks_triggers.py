"""Policies, webhooks and triggers became apps of their own, keeping their tables: this app drops
them from its migration state only (no table changes), and their content types follow them, so
the admin's permissions and history of these models stay attached."""

from typing import Any

from django.db import migrations

MOVED = {
    "policy": "policies",
    "policyauditentry": "policies",
    "webhookdelivery": "webhooks",
    "webhooksecret": "webhooks",
    "trigger": "triggers",
    "triggerrun": "triggers",
}


def _relabel(apps: Any, *, forward: bool) -> None:
    content_type = apps.get_model("contenttypes", "ContentType")
    for model, app in MOVED.items():
        old, new = ("environments", app) if forward else (app, "environments")
        if not content_type.objects.filter(app_label=new, model=model).exists():
            content_type.objects.filter(app_label=old, model=model).update(app_label=new)


def forwards(apps: Any, schema_editor: Any) -> None:
    _relabel(apps, forward=True)


def backwards(apps: Any, schema_editor: Any) -> None:
    _relabel(apps, forward=False)


class Migration(migrations.Migration):
    dependencies = [
        ("contenttypes", "0002_remove_content_type_name"),
        ("environments", "0004_environment_session_id"),
        ("policies", "0001_initial"),
        ("triggers", "0001_initial"),
        ("webhooks", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveField(model_name="policyauditentry", name="team"),
                migrations.RemoveField(model_name="trigger", name="environment"),
                migrations.RemoveField(model_name="trigger", name="team"),
                migrations.RemoveField(model_name="triggerrun", name="trigger"),
                migrations.RemoveField(model_name="webhookdelivery", name="team"),
                migrations.RemoveField(model_name="webhooksecret", name="team"),
                migrations.DeleteModel(name="Policy"),
                migrations.DeleteModel(name="PolicyAuditEntry"),
                migrations.DeleteModel(name="Trigger"),
                migrations.DeleteModel(name="TriggerRun"),
                migrations.DeleteModel(name="WebhookDelivery"),
                migrations.DeleteModel(name="WebhookSecret"),
            ],
            database_operations=[],
        ),
        migrations.RunPython(forwards, backwards),
    ]
