"""Files: uploads attached by the agent, downloads kept in data.files, orphan cleanup."""

from __future__ import annotations

from datetime import timedelta

import requests
from django.utils import timezone

from environments.models import StoredFile
from environments.services import files_delete_orphans
from tests.conftest import Api
from tests.environments.helpers import create_environment, new_task, start


def _upload(api: Api, *files: tuple[str, bytes], **data: str) -> requests.Response:
    return api.http.post(
        api.base + "/files/upload",
        files=[("files", f) for f in files],
        data=data,
        headers=api._headers(None),
        timeout=30,
    )


def test_upload_answers_exactly_as_documented(api: Api) -> None:
    response = _upload(api, ("a.txt", b"hello"), ("b.txt", b"world!"))
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True and set(body) == {"success", "files"}
    assert [(f["originalName"], f["size"]) for f in body["files"]] == [("a.txt", 5), ("b.txt", 6)]
    assert all(set(f) == {"fileId", "originalName", "size"} for f in body["files"])
    assert response.headers["X-RateLimit-Limit"] == "10"
    assert _upload(api).json()["message"] == "No files provided"
    unknown = _upload(api, ("a.txt", b"x"), environmentId="nope")
    assert unknown.status_code == 400 and unknown.json()["details"]["parameter"] == "environmentId"


def test_a_file_given_to_a_task_is_attached_to_a_form(api: Api, pages: str) -> None:
    file_id = _upload(api, ("invoice.txt", b"INV-2024-007")).json()["files"][0]["fileId"]
    session = start(api)
    done = new_task(
        api,
        session["sessionId"],
        f"go to {pages}/upload.html then upload invoice.txt into Document then wait 0.5 seconds then extract the title",
        files=[file_id],
    )
    assert done["type"] == "task_completed", done
    assert "Attached invoice.txt: INV-2024-007" in done["data"]["message"]
    unknown = api.message(
        session["sessionId"], {"actionType": "newTask", "taskDetails": "extract the title", "files": ["missing"]}
    )
    assert unknown.status_code == 400
    assert unknown.json()["details"]["parameter"] == "message.files"


def test_a_download_lands_in_data_files_and_needs_the_key(api: Api, pages: str, server: str) -> None:
    session = start(api)
    done = new_task(
        api, session["sessionId"], f"go to {pages}/download.html then click Download report then wait 1 seconds"
    )
    assert done["type"] == "task_completed", done
    files = done["data"]["files"]
    assert len(files) == 1
    entry = files[0]
    assert entry["filename"] == "report.csv"
    assert entry["source"] == f"{pages}/report.csv"
    assert isinstance(entry["timestamp"], int)
    url = entry["downloadUrl"] if entry["downloadUrl"].startswith("http") else server + entry["downloadUrl"]
    assert requests.get(url, timeout=10).status_code == 401
    fetched = api.http.get(url, headers=api._headers(None), timeout=10)
    assert fetched.status_code == 200
    assert fetched.content == b"month,total\njanuary,42\n"
    polled = api.get(f"/task/{session['sessionId']}/{done['taskId']}").json()
    assert polled["data"]["files"] == files


def test_orphan_uploads_are_deleted_after_an_hour_and_environment_files_are_kept(api: Api) -> None:
    environment_id = create_environment(api)
    orphan = _upload(api, ("orphan.txt", b"1")).json()["files"][0]["fileId"]
    kept = _upload(api, ("kept.txt", b"2"), environmentId=environment_id).json()["files"][0]["fileId"]
    promoted = _upload(api, ("promoted.txt", b"3")).json()["files"][0]["fileId"]
    start(api, environmentId=environment_id, task={"prompt": "wait 0.1 seconds", "files": [promoted]})
    assert files_delete_orphans(now=timezone.now()) == 0
    assert files_delete_orphans(now=timezone.now() + timedelta(hours=1, seconds=1)) == 1
    assert not StoredFile.objects.filter(pk=orphan).exists()
    listed = api.get(f"/environments/{environment_id}/files").json()["files"]
    assert {f["fileId"] for f in listed} == {kept, promoted}
    deleted = api.http.delete(api.base + f"/environments/{environment_id}/files/{kept}", headers=api._headers(None))
    assert deleted.json() == {"success": True, "message": "File deleted"}
