"""One live session per environment: a second session or a profile upload while one runs is
refused with 409 ENVIRONMENT_IN_USE, so no session's saved login is overwritten by another's."""

from __future__ import annotations

import json

import pytest

from tests.conftest import Api
from tests.environments.helpers import create_environment, new_task, start, terminate
from tests.environments.test_environments import LOGIN, _archive, _upload


def _who(api: Api, pages: str, environment_id: str) -> str:
    """The login a fresh session on the environment sees (then that session ends)."""
    session = start(api, environmentId=environment_id)
    seen = new_task(api, session["sessionId"], f"go to {pages}/profile.html then extract the title")
    terminate(api, session["sessionId"])
    return seen["data"]["message"]


def _second_is_refused(api: Api, environment_id: str, holder: str) -> None:
    refused = api.post("/start/start-session", {"environmentId": environment_id})
    assert refused.status_code == 409, refused.text
    body = refused.json()
    assert body["code"] == "ENVIRONMENT_IN_USE"
    assert body["details"] == {"environmentId": environment_id, "sessionId": holder}
    run_task = api.post("/start/run-task", {"taskDetails": "extract the title", "environmentId": environment_id})
    assert run_task.status_code == 409 and run_task.json()["code"] == "ENVIRONMENT_IN_USE"


@pytest.mark.slow
@pytest.mark.parametrize("login_first", [True, False], ids=["login-then-none", "none-then-login"])
def test_a_login_survives_a_second_session_in_either_order(api: Api, pages: str, login_first: bool) -> None:
    environment_id = create_environment(api)
    first = start(api, environmentId=environment_id)["sessionId"]
    if login_first:
        assert "Profile of alice" in new_task(api, first, LOGIN.format(pages=pages))["data"]["message"]
    else:
        new_task(api, first, f"go to {pages}/profile.html then extract the title")
    _second_is_refused(api, environment_id, first)
    terminate(api, first)
    second = start(api, environmentId=environment_id)["sessionId"]  # free as soon as the first ended
    if login_first:
        seen = new_task(api, second, f"go to {pages}/profile.html then extract the title")
        assert "Profile of alice" in seen["data"]["message"], seen
    else:
        assert "Profile of alice" in new_task(api, second, LOGIN.format(pages=pages))["data"]["message"]
    terminate(api, second)
    assert "Profile of alice" in _who(api, pages, environment_id)


def test_a_profile_upload_while_a_session_runs_is_refused_and_kept_after(api: Api, pages: str) -> None:
    environment_id = create_environment(api)
    state = {"cookies": [{"name": "auth", "value": "bob", "domain": "127.0.0.1", "path": "/"}], "origins": []}
    archive = _archive({"storage_state.json": json.dumps(state).encode()})
    session = start(api, environmentId=environment_id)["sessionId"]
    assert "Profile of alice" in new_task(api, session, LOGIN.format(pages=pages))["data"]["message"]
    refused = _upload(api, f"/profiles/{environment_id}/upload", archive)
    assert refused.status_code == 409, refused.text
    assert refused.json()["code"] == "ENVIRONMENT_IN_USE"
    assert refused.json()["details"]["sessionId"] == session
    terminate(api, session)
    assert "Profile of alice" in _who(api, pages, environment_id)  # the session's login was saved
    accepted = _upload(api, f"/profiles/{environment_id}/upload", archive)
    assert accepted.status_code == 200, accepted.text
    assert "Profile of bob" in _who(api, pages, environment_id)  # and the upload is not overwritten


def test_a_trigger_run_on_an_environment_in_use_fails_with_the_code(api: Api) -> None:
    from triggers.services import trigger_run_start

    environment_id = create_environment(api)
    created = api.post(
        "/cron-jobs",
        {
            "name": "nightly",
            "environmentId": environment_id,
            "scheduleType": "cron",
            "scheduleCron": "0 3 * * *",
            "prompt": "extract the title",
            "webhook": {"url": "http://127.0.0.1:9/hook"},
        },
    )
    assert created.status_code == 201, created.text
    holder = start(api, environmentId=environment_id)["sessionId"]
    run = trigger_run_start(trigger_id=created.json()["cronJob"]["_id"], manual=True)
    assert run is not None and run.status == "failed" and run.code == "ENVIRONMENT_IN_USE", run
    assert holder in run.error
