"""s3:// inputs may only name allow-listed buckets (stack config ``inputs.s3Buckets``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from sdfleet.agent.errors import TaskError
from sdfleet.agent.inputs import InputFetcher, inline_sdwebui_inputs

PNG = b"\x89PNG\r\n\x1a\n" + b"p" * 100


class Recording:
    """An S3 client that records get_object calls."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.calls: list[tuple[str, str]] = []

    def get_object(self, Bucket: str, Key: str) -> Any:
        self.calls.append((Bucket, Key))
        return self.client.get_object(Bucket=Bucket, Key=Key)


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Recording]:
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(key, "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        for bucket in ("team-inputs", "secrets", "shared"):
            client.create_bucket(Bucket=bucket)
        client.put_object(Bucket="team-inputs", Key="a.png", Body=PNG)
        client.put_object(Bucket="secrets", Key="a.png", Body=b"secret")
        client.put_object(Bucket="shared", Key="requests/t1/a.png", Body=PNG)
        client.put_object(Bucket="shared", Key="other/a.png", Body=b"other")
        yield Recording(client)


def fetcher(s3: Recording, *allowed: str, **kw: Any) -> InputFetcher:
    return InputFetcher(s3=s3, allowed_s3_buckets=frozenset(allowed), **kw)


def test_an_allowed_bucket_is_read(s3: Recording) -> None:
    assert fetcher(s3, "team-inputs").fetch("s3://team-inputs/a.png") == PNG


def test_another_bucket_fails_naming_the_field_and_the_allowed_buckets(s3: Recording) -> None:
    content = {"init_images": ["s3://team-inputs/a.png", "s3://secrets/a.png"]}
    with pytest.raises(TaskError) as info:
        inline_sdwebui_inputs(content, fetcher(s3, "team-inputs", "more-inputs"))
    error = info.value
    assert error.code == "input_forbidden"
    assert error.message.startswith("init_images[1]: s3 bucket 'secrets' is not allowed")
    assert "allowed: more-inputs, team-inputs" in error.message
    assert error.detail["field"] == "init_images[1]"
    assert error.detail["allowed"] == ["more-inputs", "team-inputs"]
    assert ("secrets", "a.png") not in s3.calls  # refused before any read


def test_no_bucket_is_allowed_by_default(s3: Recording) -> None:
    with pytest.raises(TaskError) as info:
        InputFetcher(s3=s3).fetch("s3://team-inputs/a.png", "mask")
    assert info.value.code == "input_forbidden" and "allowed: none" in info.value.message
    assert s3.calls == []


def test_a_bucket_prefix_entry_allows_only_keys_under_it(s3: Recording) -> None:
    f = fetcher(s3, "shared/requests/")
    assert f.fetch("s3://shared/requests/t1/a.png") == PNG
    with pytest.raises(TaskError, match="input_forbidden"):
        f.fetch("s3://shared/other/a.png")


def test_s3_inputs_keep_the_size_limits(s3: Recording) -> None:
    with pytest.raises(TaskError) as info:
        fetcher(s3, "team-inputs", max_bytes=50).fetch("s3://team-inputs/a.png", "mask")
    assert info.value.code == "input_too_large" and info.value.detail["limit"] == 50


def test_a_missing_object_is_a_download_failure(s3: Recording) -> None:
    with pytest.raises(TaskError) as info:
        fetcher(s3, "team-inputs").fetch("s3://team-inputs/nope.png", "mask")
    assert info.value.code == "input_download_failed" and "mask" in info.value.message
