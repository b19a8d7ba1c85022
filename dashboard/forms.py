"""Forms of the dashboard; domain validation stays in the services and schema parsers."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth import password_validation

from accounts.models import Membership, User


class SignupForm(forms.Form):
    email = forms.EmailField(widget=forms.EmailInput(attrs={"autocomplete": "email", "autofocus": True}))
    password = forms.CharField(
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text="At least 8 characters, not a common password.",
    )

    def clean_email(self) -> str:
        email = self.cleaned_data["email"].strip().lower()
        if User.objects.filter(email=email).exists():
            raise forms.ValidationError("An account with this email already exists. Log in instead.")
        return email

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("password") and data.get("email"):
            try:
                password_validation.validate_password(data["password"], User(email=data["email"]))
            except forms.ValidationError as exc:
                self.add_error("password", exc)
        return data


class TeamForm(forms.Form):
    name = forms.CharField(max_length=100, widget=forms.TextInput(attrs={"placeholder": "Acme research"}))


class InviteForm(forms.Form):
    email = forms.EmailField(widget=forms.EmailInput(attrs={"placeholder": "teammate@company.com"}))
    role = forms.ChoiceField(choices=Membership.Role.choices, initial=Membership.Role.MEMBER)


class KeyForm(forms.Form):
    name = forms.CharField(
        max_length=100, required=False, widget=forms.TextInput(attrs={"placeholder": "e.g. production backend"})
    )


class PlaygroundForm(forms.Form):
    starting_url = forms.CharField(
        label="Starting URL", max_length=2000, widget=forms.URLInput(attrs={"placeholder": "https://example.com"})
    )
    task = forms.CharField(
        label="Task",
        max_length=20_000,
        widget=forms.Textarea(attrs={"rows": 4, "placeholder": "Extract the title of the page"}),
    )
    max_duration_s = forms.IntegerField(label="Time limit per task (seconds)", min_value=1, max_value=300, initial=300)
    terminate_on_completion = forms.BooleanField(label="End the session when the task completes", required=False)

    def body(self) -> dict[str, Any]:
        """The start-session body the API would receive (also shown as curl)."""
        data = self.cleaned_data
        return {
            "startingUrl": data["starting_url"].strip(),
            "taskDetails": data["task"].strip(),
            "maxDuration": data["max_duration_s"] * 1000,
            "terminateOnCompletion": bool(data["terminate_on_completion"]),
        }


class TaskForm(forms.Form):
    task = forms.CharField(
        max_length=20_000, widget=forms.Textarea(attrs={"rows": 2, "placeholder": "What should the agent do next?"})
    )
