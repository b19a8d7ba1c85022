"""ENIGMA_STORAGE=s3 against a real S3 wire-protocol server (moto's ThreadedMotoServer on
127.0.0.1), not a mock of boto3: the storage operations and the files API round-trip."""

from __future__ import annotations

import secrets
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.http import StreamingHttpResponse
from django.test import Client, override_settings

from environments import storage

moto_server = pytest.importorskip("moto.server")

ACCESS_KEY = "enigma-test-key"
SECRET_KEY = "enigma-test-secret"
REGION = "us-east-1"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    port = _free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3(s3_endpoint: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A fresh bucket, and the storage switched to it (MEDIA_ROOT is an empty directory)."""
    client = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name=REGION,
    )
    bucket = f"enigma-{secrets.token_hex(4)}"
    client.create_bucket(Bucket=bucket)
    media = tmp_path / "media"
    with override_settings(
        MEDIA_ROOT=media,
        ENIGMA_STORAGE="s3",
        ENIGMA_S3_ENDPOINT_URL=s3_endpoint,
        ENIGMA_S3_BUCKET=bucket,
        ENIGMA_S3_ACCESS_KEY_ID=ACCESS_KEY,
        ENIGMA_S3_SECRET_ACCESS_KEY=SECRET_KEY,
        ENIGMA_S3_REGION=REGION,
        ENIGMA_S3_PREFIX="/team-blobs/",
    ):
        yield {"client": client, "bucket": bucket, "media": media}


def _keys(s3: dict[str, Any]) -> list[str]:
    listed = s3["client"].list_objects_v2(Bucket=s3["bucket"])
    return sorted(item["Key"] for item in listed.get("Contents", []))


def _local_blobs(media: Path) -> list[Path]:
    """Files under MEDIA_ROOT other than temporaries and the local copies of S3 objects."""
    if not media.exists():
        return []
    return [p for p in media.rglob("*") if p.is_file() and p.relative_to(media).parts[0] not in ("tmp", ".s3-cache")]


def test_files_round_trip_through_the_bucket(s3: dict[str, Any]) -> None:
    relative = storage.file_relative("f1", "report (1).pdf")
    payload = b"%PDF-" + secrets.token_bytes(300_000)
    storage.file_write(relative, iter([payload[:1000], payload[1000:]]))

    assert _keys(s3) == [f"team-blobs/{relative}"]
    assert storage.file_exists(relative)
    assert storage.file_size(relative) == len(payload)
    with storage.file_open(relative) as stream:
        assert stream.read() == payload
    local = storage.absolute(relative)  # a real file for callers that need one
    assert local.read_bytes() == payload
    assert _local_blobs(s3["media"]) == []

    storage.file_remove(relative)
    assert _keys(s3) == []
    assert not storage.file_exists(relative)
    assert storage.file_size(relative) is None
    assert not storage.absolute(relative).exists()
    assert not local.exists()
    with pytest.raises(FileNotFoundError):
        storage.file_open(relative)
    storage.file_remove(relative)  # removing twice is fine


def test_a_download_is_moved_into_the_bucket(s3: dict[str, Any]) -> None:
    temp = storage.temp_dir() / "download.bin"
    temp.write_bytes(b"downloaded")
    relative = storage.file_relative("f2", "data.csv")
    assert storage.file_move_in(relative, str(temp)) == len(b"downloaded")
    assert not temp.exists()
    assert _keys(s3) == ["team-blobs/files/f2/data.csv"]
    assert storage.file_open(relative).read() == b"downloaded"


def test_profiles_live_in_the_bucket_and_go_with_their_environment(s3: dict[str, Any]) -> None:
    assert storage.state_read("env1") is None
    state = {"cookies": [{"name": "auth", "value": "alice", "domain": "127.0.0.1", "path": "/"}], "origins": []}
    size = storage.state_write("env1", state)
    assert storage.state_read("env1") == state
    head = s3["client"].head_object(Bucket=s3["bucket"], Key="team-blobs/environments/env1/storage_state.json")
    assert head["ContentLength"] == size
    storage.state_write("env1", {"cookies": [], "origins": []})
    assert storage.state_read("env1") == {"cookies": [], "origins": []}
    storage.state_write("env2", state)

    storage.environment_remove("env1")
    assert storage.state_read("env1") is None
    assert _keys(s3) == ["team-blobs/environments/env2/storage_state.json"]
    assert _local_blobs(s3["media"]) == []


def test_paths_outside_the_storage_are_refused(s3: dict[str, Any]) -> None:
    for bad in ("../escape", "files/../../escape", "/etc/passwd"):
        with pytest.raises(ValueError):
            storage.file_write(bad, [b"x"])
    assert _keys(s3) == []


def test_local_disk_stays_the_default(tmp_path: Path) -> None:
    with override_settings(MEDIA_ROOT=tmp_path):
        assert storage.storage_backend() == "local"
        relative = storage.file_relative("f3", "a.txt")
        storage.file_write(relative, [b"local"])
        assert (tmp_path / "files" / "f3" / "a.txt").read_bytes() == b"local"
        assert storage.file_exists(relative) and storage.file_size(relative) == 5
        with storage.file_open(relative) as stream:
            assert stream.read() == b"local"
        storage.file_remove(relative)
        assert not (tmp_path / "files" / "f3").exists()


def test_a_missing_bucket_setting_is_reported(tmp_path: Path) -> None:
    from django.core.exceptions import ImproperlyConfigured

    with (
        override_settings(MEDIA_ROOT=tmp_path, ENIGMA_STORAGE="s3", ENIGMA_S3_BUCKET=""),
        pytest.raises(ImproperlyConfigured),
    ):
        storage.state_read("env1")
    with override_settings(MEDIA_ROOT=tmp_path, ENIGMA_STORAGE="ftp"), pytest.raises(ImproperlyConfigured):
        storage.state_read("env1")


def test_upload_and_download_through_the_api(s3: dict[str, Any], account: dict[str, Any]) -> None:
    client = Client(HTTP_AUTHORIZATION=account["headers"]["Authorization"])
    payload = b"INV-2024-007 " + secrets.token_bytes(2048)
    response = client.post("/files/upload", {"files": SimpleUploadedFile("invoice.txt", payload)})
    assert response.status_code == 200, response.content
    entry = response.json()["files"][0]
    assert entry["originalName"] == "invoice.txt" and entry["size"] == len(payload)
    assert _keys(s3) == [f"team-blobs/files/{entry['fileId']}/invoice.txt"]
    assert _local_blobs(s3["media"]) == []

    anonymous = Client().get(f"/files/{entry['fileId']}/download")
    assert anonymous.status_code in (401, 403)
    download = client.get(f"/files/{entry['fileId']}/download")
    assert download.status_code == 200
    assert isinstance(download, StreamingHttpResponse)
    assert b"".join(download) == payload
    assert "invoice.txt" in download["Content-Disposition"]

    # Deleted from the bucket behind the API's back: a 404, not a stale local copy.
    s3["client"].delete_object(Bucket=s3["bucket"], Key=f"team-blobs/files/{entry['fileId']}/invoice.txt")
    assert client.get(f"/files/{entry['fileId']}/download").status_code == 404
