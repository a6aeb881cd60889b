"""Completer.stored_result: when a stored result may stand in for running the task."""

from __future__ import annotations

import io
import json
import logging
from typing import Any

import pytest
from botocore.exceptions import ClientError

from sdfleet.agent.completion import Completer
from sdfleet.agent.config import load_config
from sdfleet.agent.contract import Task, TaskMetadata
from sdfleet.agent.metrics import Metrics
from sdfleet.agent.outputs import task_digest
from tests.agent.harness import AGENT_ENV

ENV = {**AGENT_ENV, "S3_BUCKET": "out-bucket"}
TASK = Task(
    metadata=TaskMetadata(id="t1", runtime="sd15", tasktype="text-to-image", prefix="out"),
    content={"prompt": "a cat"},
)
IMAGE = "s3://out-bucket/out/t1/t1-1.png"


def _error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}}, "GetObject")


class FakeS3:
    def __init__(self, objects: dict[str, Any], error: str = "NoSuchKey") -> None:
        self.objects = objects
        self.error = error  # what a missing key answers

    def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:
        if Key not in self.objects:
            raise _error(self.error)
        return {"Body": io.BytesIO(json.dumps(self.objects[Key]).encode())}

    def head_object(self, Bucket: str, Key: str) -> dict[str, Any]:
        if Key not in self.objects:
            raise _error("404")
        return {}


def _completer(s3: FakeS3) -> Completer:
    config = load_config(ENV)
    return Completer(
        config,
        s3=s3,
        sns=None,
        book=None,  # type: ignore[arg-type]  # not used by stored_result
        metrics=Metrics("sd15", enabled=False),
    )


def _doc(**overrides: Any) -> dict[str, Any]:
    doc = {
        "id": "t1",
        "status": "completed",
        "image_url": [IMAGE],
        "task_digest": task_digest(TASK),
        "timings": {},
    }
    doc.update(overrides)
    return doc


def test_a_complete_result_of_the_same_task_is_reused() -> None:
    s3 = FakeS3({"out/t1/t1.out": _doc(), "out/t1/t1-1.png": b""})
    assert _completer(s3).stored_result(TASK) == _doc()


@pytest.mark.parametrize(
    "doc",
    [
        _doc(status="failed"),
        _doc(task_digest="another task with the same id"),
        _doc(image_url="not a list"),
        _doc(image_url=[IMAGE, "s3://out-bucket/out/t1/t1-2.png"]),  # an image is missing
    ],
)
def test_incomplete_or_foreign_results_are_not_reused(doc: dict[str, Any]) -> None:
    s3 = FakeS3({"out/t1/t1.out": doc, "out/t1/t1-1.png": b""})
    assert _completer(s3).stored_result(TASK) is None


@pytest.mark.parametrize("code", ["NoSuchKey", "AccessDenied"])
def test_no_stored_result_is_quiet(code: str, caplog: pytest.LogCaptureFixture) -> None:
    # Without s3:ListBucket, S3 answers a missing key with 403 AccessDenied.
    with caplog.at_level(logging.WARNING):
        assert _completer(FakeS3({}, error=code)).stored_result(TASK) is None
    assert caplog.records == []


def test_an_unreadable_result_runs_the_task_and_says_why(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert _completer(FakeS3({}, error="SlowDown")).stored_result(TASK) is None
    assert "cannot read a stored result" in caplog.text
