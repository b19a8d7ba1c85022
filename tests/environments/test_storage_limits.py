"""Disk limits: downloads capped by size and count and deleted after their retention, a storage
quota per team over uploads and downloads, DELETE /files/<id>, profile uploads rate limited."""

from __future__ import annotations

import io
import json
import tarfile
import time
from datetime import timedelta

import requests
from django.utils import timezone

from environments import storage
from environments.models import StoredFile
from environments.services import files_delete_expired_downloads
from tests.conftest import Api
from tests.environments.helpers import create_environment, new_task, start

MB = 1024 * 1024


def _upload(api: Api, name: str, size: int) -> requests.Response:
    return api.http.post(
        api.base + "/files/upload", files=[("files", (name, b"x" * size))], headers=api._headers(None), timeout=30
    )


def _delete(api: Api, path: str) -> requests.Response:
    return api.http.delete(api.base + path, headers=api._headers(None), timeout=30)


def test_downloads_over_the_size_cap_or_the_session_count_are_not_kept_and_expire(api: Api, pages: str) -> None:
    sid = start(api)["sessionId"]
    first = new_task(
        api,
        sid,
        f"go to {pages}/downloads.html?kb=2048 then click Export big then wait 1 seconds "
        "then click Export small then wait 1 seconds then extract the title",
    )
    assert first["type"] == "task_completed", first
    assert [f["filename"] for f in first["data"]["files"]] == ["small-1.txt"]  # the 2 MB one is over 1 MB
    more = new_task(
        api,
        sid,
        "click Export small then wait 0.5 seconds then click Export small then wait 0.5 "
        "seconds then click Export small then wait 1 seconds then extract the title",
    )
    assert more["data"]["message"] == "Exported 5", more
    assert len(more["data"]["files"]) == 2  # three per session
    kept = StoredFile.objects.filter(session_id=sid, kind=StoredFile.Kind.DOWNLOAD)
    assert kept.count() == 3
    assert not list(storage.temp_dir().glob(f"{sid}-*"))  # refused downloads leave nothing behind
    url = more["data"]["files"][0]["downloadUrl"]
    assert api.http.get(url, headers=api._headers(None), timeout=10).status_code == 200
    assert files_delete_expired_downloads(now=timezone.now() + timedelta(days=6)) == 0
    assert files_delete_expired_downloads(now=timezone.now() + timedelta(days=7, seconds=1)) == 3
    assert not kept.exists()
    assert api.http.get(url, headers=api._headers(None), timeout=10).status_code == 404


def test_the_team_storage_quota_covers_uploads_and_downloads(api: Api, pages: str) -> None:
    big = _upload(api, "big.bin", int(2.5 * MB))
    assert big.status_code == 200, big.text
    big_id = big.json()["files"][0]["fileId"]
    over = _upload(api, "more.bin", int(1.5 * MB))
    assert over.status_code == 413, over.text
    body = over.json()
    assert body["code"] == "STORAGE_QUOTA_EXCEEDED" and body["details"]["parameter"] == "files"
    assert body["details"]["limit"] == 3 * MB and body["details"]["used"] == int(2.5 * MB)
    sid = start(api)["sessionId"]
    done = new_task(
        api,
        sid,
        f"go to {pages}/downloads.html?kb=900 then click Export big then wait 1 seconds "
        "then click Export small then wait 1 seconds then extract the title",
    )
    assert [f["filename"] for f in done["data"]["files"]] == ["small-1.txt"]  # 0.9 MB would pass 3 MB
    assert _delete(api, f"/files/{big_id}").json() == {"success": True, "message": "File deleted"}
    assert _upload(api, "more.bin", int(1.5 * MB)).status_code == 200
    assert _delete(api, f"/files/{big_id}").status_code == 404
    assert api.http.get(api.base + f"/files/{big_id}/download", headers=api._headers(None)).status_code == 404


def test_profile_uploads_are_rate_limited_per_team(api: Api) -> None:
    environment_id = create_environment(api)
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        data = json.dumps({"cookies": [], "origins": []}).encode()
        info = tarfile.TarInfo("storage_state.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    paths = [f"/environments/{environment_id}/upload", f"/profiles/{environment_id}/upload"]
    for number in range(20):  # ENIGMA_PROFILE_UPLOAD_RATE_LIMIT in the tests; 100 by default
        response = api.http.post(
            api.base + paths[number % 2],
            files={"file": ("p.tar.gz", out.getvalue())},
            headers=api._headers(None),
            timeout=30,
        )
        assert response.status_code == 200, response.text
    limited = api.http.post(
        api.base + paths[0], files={"file": ("p.tar.gz", out.getvalue())}, headers=api._headers(None), timeout=30
    )
    assert limited.status_code == 429 and limited.json()["code"] == "RATE_LIMIT_EXCEEDED"
    assert limited.headers["X-RateLimit-Limit"] == "20"
    assert int(limited.headers["X-RateLimit-Reset"]) >= time.time() + 800  # a 15-minute window
