"""The task API's task records (issue 11): one owner per id (409 on a reused id, nothing
published), ``GET /v1alpha2/tasks/{id}`` per API key, presigned result URLs, table failures as
503, and a failed publish that frees the id. Against moto (DynamoDB, SNS, SQS, S3) with the
real fan-out of ``tests/test_task_api``."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import requests
from botocore.exceptions import ClientError

from sdfleet.agent.task_state import StateRetryPolicy, TaskStore
from sdfleet.components.task_api import handler as task_api
from sdfleet.components.task_api import settings as task_settings
from tests.test_task_api import (
    API_KEY_ID,
    BUCKET,
    TABLE,
    Fanout,
    _FailingSns,
    call,
    make_event,
    v2,
)
from tests.test_task_api import fan as fan
from tests.test_task_api import world as world

T2I = {"prompt": "a lighthouse", "steps": 20}
OTHER_KEY_ID = "zz9y8x7w6v"


def submit(task_id: str, **event: Any) -> tuple[int, dict[str, Any]]:
    return call(make_event(v2("sd15", "text-to-image", T2I, id=task_id), **event))


def status(task_id: str, api_key_id: str = API_KEY_ID) -> dict[str, Any]:
    """The raw Lambda response to ``GET /v1alpha2/tasks/{id}`` (a REST proxy event)."""
    event = make_event(None, path=f"/v1alpha2/tasks/{task_id}", method="GET", api_key_id=api_key_id)
    event.update(resource="/v1alpha2/tasks/{id}", pathParameters={"id": task_id}, body=None)
    response: dict[str, Any] = task_api.handler(event, None)
    return response


def answer(response: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    return response["statusCode"], json.loads(response["body"])


def store(fan: Fanout) -> TaskStore:
    return TaskStore(fan.dynamodb, TABLE)


# --------------------------------------------------------------------------------------------
# One owner per id


def test_a_reused_id_is_a_409_naming_the_task_and_nothing_is_published(fan: Fanout) -> None:
    assert submit("dup-1")[0] == 200
    response = call(
        make_event(v2("flux", "pipeline", {"1": {"class_type": "X", "inputs": {}}}, id="dup-1"))
    )
    got, body = response
    assert got == 409
    assert body == {
        "error": {
            "code": "task_exists",
            "message": "a task with this id exists (state queued); use a new id or read its status",
            "field": "task.metadata.id",
        },
        "id": "dup-1",
        "state": "queued",
        "location": "/v1alpha2/tasks/dup-1",
    }
    routed = fan.drain_all()
    assert [len(routed[name]) for name in ("sd15", "sdxl-dyn", "flux")] == [1, 0, 0]
    # Another key cannot take the id either (ids are global: outputs live under the id), and
    # learns only that it is used: no state, no status location.
    got, body = submit("dup-1", api_key_id=OTHER_KEY_ID)
    assert (got, body) == (
        409,
        {
            "error": {
                "code": "task_exists",
                "message": "a task with this id exists; use a new id",
                "field": "task.metadata.id",
            },
            "id": "dup-1",
        },
    )
    assert fan.drain_all() == {"sd15": [], "sdxl-dyn": [], "flux": []}


def test_the_409_location_header_resolves_against_the_request_url(fan: Fanout) -> None:
    submit("loc-1")
    event = make_event(v2("sd15", "text-to-image", T2I, id="loc-1"))
    response = task_api.handler(event, None)
    assert response["headers"]["Location"] == "v1alpha2/tasks/loc-1"
    base = "https://abc.execute-api.us-east-1.amazonaws.com/v1/v1alpha2"
    assert requests.compat.urljoin(base, response["headers"]["Location"]) == (
        "https://abc.execute-api.us-east-1.amazonaws.com/v1/v1alpha2/tasks/loc-1"
    )


def test_a_legacy_request_with_a_used_id_names_the_legacy_field(fan: Fanout) -> None:
    legacy = {
        "prompt": "p",
        "alwayson_scripts": {
            "id_task": "leg-1",
            "sd_model_checkpoint": "v1-5-pruned-emaonly.safetensors",
        },
    }
    assert call(make_event(legacy, path="/v1alpha1"))[0] == 200
    got, body = call(make_event(legacy, path="/v1alpha1"))
    assert (got, body["error"]["field"], body["state"]) == (
        409,
        "alwayson_scripts.id_task",
        "queued",
    )


def test_a_failed_publish_releases_the_id_for_a_retry(
    fan: Fanout, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as m:
        m.setattr(task_settings, "sns", lambda settings: _FailingSns("Throttled"))
        got, body = submit("rel-1")
    assert (got, body["error"]["code"]) == (503, "publish_failed")
    assert answer(status("rel-1"))[0] == 404  # released: reads as absent
    assert fan.drain_all()["sd15"] == []
    got, body = submit("rel-1")
    assert (got, body["status"]) == (200, "queued")
    assert len(fan.drain_all()["sd15"]) == 1
    assert answer(status("rel-1"))[1]["state"] == "queued"


def test_a_post_without_an_api_key_id_is_refused(fan: Fanout) -> None:
    event = make_event(v2("sd15", "text-to-image", T2I, id="anon-1"))
    del event["requestContext"]["identity"]["apiKeyId"]
    assert call(event)[0] == 403
    fan.assert_nothing_published()
    assert fan.dynamodb.scan(TableName=TABLE)["Items"] == []


# --------------------------------------------------------------------------------------------
# Status


def test_a_queued_task_reads_back_for_its_key(fan: Fanout) -> None:
    assert submit("q-1")[0] == 200
    response = status("q-1")
    got, body = answer(response)
    assert got == 200
    assert response["headers"]["Cache-Control"] == "no-store"
    assert body["id"] == "q-1" and body["state"] == "queued" and body["runtime"] == "sd15"
    assert body["attempts"] == 0 and body["error"] is None
    assert body["timings"]["queued_at"].endswith("Z")
    assert body["timings"]["started_at"] is None and body["timings"]["finished_at"] is None
    assert "outputs" not in body


def test_another_keys_task_is_a_404_like_a_missing_one(fan: Fanout) -> None:
    assert submit("mine-1")[0] == 200
    other = answer(status("mine-1", api_key_id=OTHER_KEY_ID))
    missing = answer(status("never-sent"))
    assert other == missing
    assert other[0] == 404 and other[1]["error"]["code"] == "not_found"


@pytest.mark.parametrize("bad", ["a b", "x" * 65, "..", "%2e%2e"])
def test_the_id_path_parameter_follows_the_contracts_id_rule(fan: Fanout, bad: str) -> None:
    got, body = answer(status(bad))
    assert (got, body["error"]["code"], body["error"]["field"]) == (400, "invalid_id", "id")


def test_a_running_then_failed_task_reports_its_error_and_attempts(fan: Fanout) -> None:
    assert submit("f-1")[0] == 200
    tasks = store(fan)
    tasks.mark_running("f-1", "sd15")
    tasks.mark_running("f-1", "sd15")  # redelivered after a crash
    tasks.mark_failed("f-1", "sd15", "inference_failed", "CUDA out of memory")
    got, body = answer(status("f-1"))
    assert got == 200
    assert body["state"] == "failed" and body["attempts"] == 2
    assert body["error"] == {"code": "inference_failed", "message": "CUDA out of memory"}
    assert {"queue_wait_ms", "inference_ms", "total_ms"} <= set(body["timings"])
    assert "outputs" not in body


def test_a_completed_task_has_presigned_urls_that_download_its_outputs(
    fan: Fanout, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STATUS_URL_EXPIRY_SECONDS", "300")
    task_settings.reset()
    assert submit("done-1")[0] == 200
    images = {"done-1/done-1-1.png": b"\x89PNG one", "done-1/done-1-2.png": b"\x89PNG two"}
    for key, data in images.items():
        fan.s3.put_object(Bucket=BUCKET, Key=key, Body=data)
    tasks = store(fan)
    tasks.mark_running("done-1", "sd15")
    tasks.mark_completed("done-1", "sd15", list(images), output_bucket=BUCKET)
    got, body = answer(status("done-1"))
    assert got == 200 and body["state"] == "completed" and body["attempts"] == 1
    assert [o["key"] for o in body["outputs"]] == list(images)
    assert body["outputs"][0]["s3_uri"] == f"s3://{BUCKET}/done-1/done-1-1.png"
    for output in body["outputs"]:
        query = parse_qs(urlparse(output["url"]).query)
        assert query["X-Amz-Expires"] == ["300"]
        assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
        downloaded = requests.get(output["url"], timeout=10)
        assert downloaded.status_code == 200
        assert downloaded.content == images[output["key"]]
    assert body["urls_expire_at"].endswith("Z")
    assert body["timings"]["finished_at"] is not None and "inference_ms" in body["timings"]


@pytest.mark.parametrize(("configured", "used"), [("5", "60"), ("999999", "43200"), ("", "900")])
def test_the_url_expiry_is_bounded(
    fan: Fanout, monkeypatch: pytest.MonkeyPatch, configured: str, used: str
) -> None:
    monkeypatch.setenv("STATUS_URL_EXPIRY_SECONDS", configured)
    task_settings.reset()
    assert submit("exp-1")[0] == 200
    store(fan).mark_completed("exp-1", "sd15", ["exp-1/exp-1-1.png"], output_bucket=BUCKET)
    [output] = answer(status("exp-1"))[1]["outputs"]
    assert parse_qs(urlparse(output["url"]).query)["X-Amz-Expires"] == [used]


def test_outputs_in_another_bucket_are_listed_without_a_url(fan: Fanout) -> None:
    assert submit("ob-1")[0] == 200
    store(fan).mark_completed("ob-1", "sd15", ["k/ob-1-1.png"], output_bucket="elsewhere")
    [output] = answer(status("ob-1"))[1]["outputs"]
    assert output == {"key": "k/ob-1-1.png", "s3_uri": "s3://elsewhere/k/ob-1-1.png"}


# --------------------------------------------------------------------------------------------
# The table failing


class _Throttled:
    """A DynamoDB client whose every call is throttled."""

    def __init__(self) -> None:
        self.calls = 0

    def _throttle(self, **_: Any) -> None:
        self.calls += 1
        error: Any = {
            "Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow"},
            "ResponseMetadata": {"HTTPStatusCode": 400},
        }
        raise ClientError(error, "PutItem")

    put_item = get_item = update_item = _throttle


def test_a_throttled_table_is_a_503_with_retry_after_and_nothing_is_published(
    fan: Fanout, monkeypatch: pytest.MonkeyPatch
) -> None:
    throttled = _Throttled()
    slept: list[float] = []
    monkeypatch.setattr(task_settings, "dynamodb", lambda settings: throttled)
    monkeypatch.setattr(
        task_settings, "TABLE_RETRY", StateRetryPolicy(attempts=3, sleep=slept.append)
    )
    post = task_api.handler(make_event(v2("sd15", "text-to-image", T2I, id="thr-1")), None)
    get = status("thr-1")
    for response in (post, get):
        got, body = answer(response)
        assert (got, body["error"]["code"]) == (503, "task_store_unavailable")
        assert response["headers"]["Retry-After"] == "1"
    assert throttled.calls == 6 and len(slept) == 4  # the store retried each call
    fan.assert_nothing_published()


def test_a_missing_table_is_a_503_not_a_silent_success(
    fan: Fanout, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TASK_TABLE_NAME", "no-such-table")
    task_settings.reset()
    got, body = submit("nt-1")
    assert (got, body["error"]["code"]) == (503, "task_store_unavailable")
    fan.assert_nothing_published()


# --------------------------------------------------------------------------------------------
# metadata.callback (webhooks)


def test_a_callback_is_checked_and_queued_with_the_task(fan: Fanout) -> None:
    hook = {"url": "https://hooks.example.org/sdfleet?token=abc", "events": ["running"]}
    got, _ = call(make_event(v2("sd15", "text-to-image", T2I, id="cb-1", callback=hook)))
    assert got == 200
    (raw,) = fan.drain_all()["sd15"]
    message = json.loads(json.loads(raw["Body"])["Message"])
    assert message["metadata"]["callback"] == hook
    # Without one, the queued metadata is as before (no callback key at all).
    assert submit("cb-2")[0] == 200
    (raw,) = fan.drain_all()["sd15"]
    assert "callback" not in json.loads(json.loads(raw["Body"])["Message"])["metadata"]


@pytest.mark.parametrize(
    ("hook", "code", "field"),
    [
        ({"url": "http://hooks.example.org/x"}, "insecure_callback_url", "url"),
        ({"url": "https://169.254.169.254/latest"}, "forbidden_address", "url"),
        ({"url": "https://user:pw@hooks.example.org/x"}, "credentials_in_url", "url"),
        ({"url": "https://hooks.example.org/x", "events": ["done"]}, "invalid_event", "events[0]"),
    ],
)
def test_a_bad_callback_is_a_400_naming_it_and_nothing_is_published(
    fan: Fanout, hook: dict[str, Any], code: str, field: str
) -> None:
    got, body = call(make_event(v2("sd15", "text-to-image", T2I, id="cb-bad", callback=hook)))
    assert (got, body["error"]["code"], body["error"]["field"]) == (
        400,
        code,
        f"task.metadata.callback.{field}",
    )
    assert "pw" not in json.dumps(body)
    fan.assert_nothing_published()
