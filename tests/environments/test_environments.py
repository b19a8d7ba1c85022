"""Environments: CRUD, a browser state that outlives its session, profile archives."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
import time
from typing import Any

import requests

from tests.conftest import Api
from tests.environments.helpers import create_environment, new_task, start, terminate

LOGIN = (
    "go to {pages}/login.html then type alice into Username then type s3cret-pw into Password "
    "then click Log in then wait 0.5 seconds then extract the title"
)


def _archive(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    return out.getvalue()


def _upload(api: Api, path: str, data: bytes, name: str = "profile.tar.gz") -> requests.Response:
    return api.http.post(api.base + path, files={"file": (name, data)}, headers=api._headers(None), timeout=30)


def test_environment_crud_and_documented_messages(api: Api) -> None:
    missing = api.post("/environments", {"description": "no name"})
    assert missing.status_code == 400
    assert missing.json()["message"] == "Environment name is required"
    created = api.post("/environments", {"name": "shop", "description": "logged in to the shop"})
    assert created.status_code == 201
    body = created.json()
    assert body["message"] == "Environment created"
    environment = body["environment"]
    assert environment["status"] == "empty" and environment["blobSize"] == 0
    listed = api.get("/environments").json()["environments"]
    assert [e["_id"] for e in listed] == [environment["_id"]]
    profiles = api.get("/profiles").json()["profiles"]
    assert profiles[0]["usageCount"] == 0 and profiles[0]["name"] == "shop"
    assert api.get(f"/profiles/{environment['_id']}/download").json()["message"] == "Profile has no data to download"
    assert api.http.delete(api.base + f"/environments/{environment['_id']}", headers=api._headers(None)).json() == {
        "success": True,
        "message": "Environment deleted",
    }
    gone = api.http.delete(api.base + f"/profiles/{environment['_id']}", headers=api._headers(None))
    assert gone.status_code == 404 and gone.json()["message"] == "Profile not found"


def test_twenty_environments_per_team(api: Api) -> None:
    for number in range(20):
        assert api.post("/profiles", {"name": f"p{number}"}).status_code == 201
    over = api.post("/profiles", {"name": "one too many"})
    assert over.status_code == 400
    assert over.json()["message"] == "Maximum of 20 profiles allowed"
    long = api.post("/environments", {"name": "x" * 101})
    assert long.status_code == 400


def test_unknown_environment_on_a_session_is_a_400_naming_the_field(api: Api) -> None:
    response = api.post("/start/start-session", {"environmentId": "0" * 24})
    assert response.status_code == 400
    assert response.json()["code"] == "INVALID_PARAMETER"
    assert response.json()["details"]["parameter"] == "environmentId"


def test_login_persists_from_one_session_to_the_next_through_an_environment(api: Api, pages: str) -> None:
    environment_id = create_environment(api)
    first = start(api, environmentId=environment_id)
    done = new_task(api, first["sessionId"], LOGIN.format(pages=pages))
    assert "Profile of alice" in done["data"]["message"], done
    stored = new_task(
        api, first["sessionId"], f"go to {pages}/storage.html?set=kept then wait 1 seconds then extract the title"
    )
    assert "Saved kept" in stored["data"]["message"], stored
    terminate(api, first["sessionId"])
    environment = api.get("/environments").json()["environments"][0]
    assert environment["status"] == "ready" and environment["blobSize"] > 0 and environment["usageCount"] == 1

    second = start(api, profileId=environment_id)
    again = new_task(api, second["sessionId"], f"go to {pages}/profile.html then extract the title")
    assert "Profile of alice" in again["data"]["message"], again
    storage = new_task(
        api, second["sessionId"], f"go to {pages}/storage.html then wait 1 seconds then extract the title"
    )
    assert "Local kept IDB kept" in storage["data"]["message"], storage

    other = start(api)
    fresh = new_task(api, other["sessionId"], f"go to {pages}/profile.html then extract the title")
    assert "anonymous" in fresh["data"]["message"]


def test_profile_archive_round_trip(api: Api, pages: str) -> None:
    environment_id = create_environment(api)
    state = {
        "cookies": [
            {
                "name": "auth",
                "value": "bob",
                "domain": "127.0.0.1",
                "path": "/",
                "expires": -1,
                "httpOnly": False,
                "secure": False,
                "sameSite": "Lax",
            }
        ],
        "origins": [],
    }
    uploaded = _upload(
        api,
        f"/environments/{environment_id}/upload",
        _archive({"storage_state.json": json.dumps(state).encode(), "notes/readme.txt": b"hi"}),
    )
    assert uploaded.status_code == 200, uploaded.text
    body = uploaded.json()
    assert body["message"] == "Profile uploaded successfully"
    assert body["environment"]["status"] == "ready" and body["environment"]["blobSize"] > 0

    session = start(api, environmentId=environment_id)
    seen = new_task(api, session["sessionId"], f"go to {pages}/profile.html then extract the title")
    assert "Profile of bob" in seen["data"]["message"], seen

    link = api.get(f"/profiles/{environment_id}/download").json()
    assert link["success"] is True
    archive = requests.get(link["downloadUrl"], timeout=10)  # the signed URL needs no key
    assert archive.status_code == 200
    with tarfile.open(fileobj=io.BytesIO(archive.content), mode="r:gz") as tar:
        assert tar.getnames() == ["storage_state.json"]
        saved: Any = json.load(tar.extractfile("storage_state.json"))  # type: ignore[arg-type]
    assert saved["cookies"][0]["value"] == "bob"
    forged = requests.get(link["downloadUrl"].replace("token=", "token=x"), timeout=10)
    assert forged.status_code == 403


def test_unsafe_or_wrong_profile_archives_are_rejected(api: Api) -> None:
    environment_id = create_environment(api)
    state = json.dumps({"cookies": [], "origins": []}).encode()
    cases = [
        (_archive({"../storage_state.json": state}), "leaves the archive root"),
        (_archive({"storage_state.json": state, "a/../../etc/passwd": b"x"}), "leaves the archive root"),
        (_archive({"/etc/storage_state.json": state}), "absolute path"),
        (_archive({"storage_state.json": state}, links={"escape": "../../outside"}), "outside the archive root"),
        (_archive({"storage_state.json": state}, links={"abs": "/etc/passwd"}), "outside the archive root"),
        (_archive({"other.json": state}), "must contain storage_state.json"),
        (b"not a tarball", "not a valid .tar.gz"),
    ]
    for data, reason in cases:
        response = _upload(api, f"/profiles/{environment_id}/upload", data)
        assert response.status_code == 400, response.text
        assert reason in response.json()["message"]
    wrong_type = _upload(api, f"/profiles/{environment_id}/upload", state, name="profile.zip")
    assert wrong_type.json()["message"] == "Only .tar.gz files are allowed"
    no_file = api.http.post(api.base + f"/profiles/{environment_id}/upload", headers=api._headers(None), timeout=30)
    assert no_file.json()["message"] == "No file provided"
    assert api.get("/environments").json()["environments"][0]["status"] == "empty"


def _tar_header(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    return info.tobuf(format=tarfile.GNU_FORMAT)


def _gzip_bomb(state: bytes, inflated_mb: int) -> bytes:
    """A real bomb: a valid storage_state.json, then a member of `inflated_mb` MB of zeros,
    as concatenated gzip members (one 16 MB block compressed once, repeated)."""
    head = _tar_header("storage_state.json", len(state)) + state + b"\0" * (-len(state) % 512)
    block = gzip.compress(b"\0" * (16 * 1024 * 1024), compresslevel=9)
    body = [gzip.compress(head + _tar_header("padding.bin", inflated_mb * 1024 * 1024))]
    body += [block] * (inflated_mb // 16)
    body.append(gzip.compress(b"\0" * 1024))
    return b"".join(body)


def test_a_gzip_bomb_stops_at_the_inflation_bound_with_a_400(api: Api) -> None:
    environment_id = create_environment(api)
    bomb = _gzip_bomb(json.dumps({"cookies": [], "origins": []}).encode(), inflated_mb=2048)
    assert len(bomb) < 4 * 1024 * 1024  # 2 GB inflated from a few MB
    started = time.monotonic()
    response = _upload(api, f"/environments/{environment_id}/upload", bomb)
    assert response.status_code == 400, response.text[:300]
    body = response.json()
    assert body["code"] == "INVALID_ARCHIVE" and body["details"]["parameter"] == "file"
    assert "inflates to more than 200 MB" in body["message"]
    assert time.monotonic() - started < 30
    assert api.get("/environments").json()["environments"][0]["status"] == "empty"


def test_a_deeply_nested_or_unloadable_storage_state_is_a_400_naming_the_place(api: Api) -> None:
    environment_id = create_environment(api)
    deep = b'{"cookies": [], "origins": [], "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    cases = [
        (deep, "nests too deeply"),
        (
            b'{"cookies": [], "origins": [{"origin": "http://127.0.0.1:9", "localStorage": [], "x": '
            + b"[" * 300
            + b"]" * 300
            + b"}]}",
            "nests deeper than 256 levels",
        ),
        # Accepted before, then every session on the environment failed in new_context():
        (
            json.dumps({"cookies": [{"name": "auth", "value": "bob", "domain": "127.0.0.1"}]}).encode(),
            "cookies[0]: a cookie needs a url, or a domain and a path",
        ),
        (
            json.dumps(
                {"cookies": [{"name": "auth", "value": "bob", "url": "http://127.0.0.1/", "expires": "soon"}]}
            ).encode(),
            "cookies[0].expires",
        ),
        (
            json.dumps({"origins": [{"origin": "chrome://settings", "localStorage": []}]}).encode(),
            "origins[0].origin: must be an http or https origin",
        ),
        (
            json.dumps(
                {"origins": [{"origin": "http://127.0.0.1:9", "localStorage": [{"name": "a", "value": 1}]}]}
            ).encode(),
            "origins[0].localStorage[0].value: must be a string",
        ),
        (
            json.dumps(
                {
                    "origins": [
                        {
                            "origin": "http://127.0.0.1:9",
                            "localStorage": [],
                            "indexedDB": [
                                {
                                    "name": "db",
                                    "version": 1,
                                    "stores": [
                                        {
                                            "name": "kv",
                                            "autoIncrement": False,
                                            "indexes": [],
                                            "records": [{"key": "a", "value": 1}, {"key": "a", "value": 2}],
                                        }
                                    ],
                                }
                            ],
                        }
                    ]
                }
            ).encode(),
            "the key appears twice",
        ),
    ]
    for state, reason in cases:
        response = _upload(api, f"/profiles/{environment_id}/upload", _archive({"storage_state.json": state}))
        assert response.status_code == 400, (reason, response.status_code, response.text[:300])
        assert reason in response.json()["message"], response.json()
        assert response.json()["details"]["parameter"] == "file"


def test_an_accepted_profile_loads_in_a_real_session(api: Api, pages: str) -> None:
    """Exporter extras are dropped, defaults filled in; cookies, localStorage and IndexedDB load."""
    environment_id = create_environment(api)
    origin = pages
    state = {
        "cookies": [{"name": "auth", "value": "carol", "url": f"{pages}/", "hostOnly": True, "storeId": "0"}],
        "origins": [
            {
                "origin": origin,
                "localStorage": [{"name": "note", "value": "kept"}],
                "indexedDB": [
                    {
                        "name": "enigma-test",
                        "version": 1,
                        "stores": [
                            {
                                "name": "kv",
                                "autoIncrement": False,
                                "records": [{"key": "note", "value": "kept"}],
                                "indexes": [],
                            }
                        ],
                    }
                ],
            }
        ],
    }
    uploaded = _upload(
        api, f"/profiles/{environment_id}/upload", _archive({"storage_state.json": json.dumps(state).encode()})
    )
    assert uploaded.status_code == 200, uploaded.text
    session = start(api, environmentId=environment_id)
    seen = new_task(api, session["sessionId"], f"go to {pages}/profile.html then extract the title")
    assert "Profile of carol" in seen["data"]["message"], seen
    storage = new_task(
        api, session["sessionId"], f"go to {pages}/storage.html then wait 1 seconds then extract the title"
    )
    assert "Local kept IDB kept" in storage["data"]["message"], storage
