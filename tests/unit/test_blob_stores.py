"""media/blob_stores.py and the blob settings: which store each area gets, and bad settings named."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.errors import SettingsError
from infra.settings import Settings, load_settings
from media.blob import FileBlobStore, InvalidBlobKey
from media.blob_s3 import S3BlobStore
from media.blob_stores import open_store


def test_the_file_backend_is_the_default_with_an_area_per_folder(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path)
    assert s.blob.backend == "file"
    for area in ("blobs", "origin"):
        store = open_store(s, area)
        assert isinstance(store, FileBlobStore) and store.root == tmp_path / area


def test_the_s3_backend_puts_each_area_under_a_prefix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEKEY")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "the-secret-that-must-not-show")
    s = load_settings({"GLASSCAST_BLOB_BACKEND": "s3", "GLASSCAST_BLOB_BUCKET": "media",
                       "GLASSCAST_BLOB_PREFIX": "live/", "GLASSCAST_BLOB_ENDPOINT_URL": "http://127.0.0.1:9",
                       "GLASSCAST_BLOB_REGION": "eu-west-1"}, data_dir=tmp_path)
    for area in ("blobs", "origin"):
        store = open_store(s, area)  # no request is made until a call needs one
        assert isinstance(store, S3BlobStore) and (store.bucket, store.prefix) == ("media", f"live/{area}/")
        assert store.ref("hls/a/init.mp4") == "s3:hls/a/init.mp4"
        assert "secret" not in repr(store) and "AKIA" not in repr(store)
    assert not (tmp_path / "blobs").exists() and not (tmp_path / "origin").exists()
    with pytest.raises(ValueError, match="unknown blob area"):
        open_store(s, "elsewhere")  # type: ignore[arg-type]


@pytest.mark.parametrize(("env", "names"), [
    ({"GLASSCAST_BLOB_BACKEND": "s3"}, "GLASSCAST_BLOB_BUCKET"),
    ({"GLASSCAST_BLOB_BACKEND": "gcs"}, "GLASSCAST_BLOB_BACKEND"),
    ({"GLASSCAST_BLOB_PREFIX": "no-slash"}, "GLASSCAST_BLOB_PREFIX"),
    ({"GLASSCAST_BLOB_PREFIX": "/abs/"}, "GLASSCAST_BLOB_PREFIX"),
])
def test_bad_blob_settings_name_the_variable(env: dict[str, str], names: str) -> None:
    with pytest.raises(SettingsError, match=names):
        load_settings(env)


def test_a_prefix_breaking_the_key_rules_is_refused_by_the_store() -> None:
    with pytest.raises(InvalidBlobKey):
        S3BlobStore(object(), "media", "bad prefix/")
