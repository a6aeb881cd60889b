"""End to end against moto (real SNS->SQS fan-out) and the fake SD WebUI: the functional paths."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import pytest

from sdfleet.agent.contract import request_key
from sdfleet.fakes.images import make_png
from sdfleet.fakes.sdwebui import FakeSdWebUI
from tests.agent.harness import AgentThread, Fleet, ImageHost

pytestmark = pytest.mark.e2e

PNG = make_png(64, 64, 7)  # what ImageHost serves as /small.png


@pytest.fixture
def image_host() -> Iterator[ImageHost]:
    host = ImageHost()
    yield host
    host.close()


def test_txt2img_writes_images_result_and_notification(fleet: Fleet) -> None:
    with FakeSdWebUI(inference_seconds=0.05) as srv, AgentThread(fleet, srv.url) as runner:
        task = fleet.publish(
            fleet.task({"prompt": "a cat", "batch_size": 2, "seed": 42}, context={"user": "u1"})
        )
        [note] = fleet.notifications(1, timeout=20)
        assert runner.agent.live() == (True, {"stuck": [], "dead": []})
        assert runner.agent.ready()[0] is True
    tid = task.metadata.id
    assert note["status"] == "completed" and note["result"] is True, note
    assert note["id"] == tid and note["runtime"] == "sd15" and note["context"] == {"user": "u1"}
    assert note["_attributes"] == {"runtime": "sd15", "status": "completed"}
    assert note["image_url"] == [
        f"s3://{fleet.bucket}/out/{tid}/{tid}-1.png",
        f"s3://{fleet.bucket}/out/{tid}/{tid}-2.png",
    ]
    assert note["output_url"] == f"s3://{fleet.bucket}/out/{tid}/{tid}.out"
    assert note["error"] is None and note["attempt"] == 1
    assert set(note["timings"]) == {
        "queue_wait_ms",
        "download_ms",
        "inference_ms",
        "upload_ms",
        "total_ms",
    }
    assert note["timings"]["inference_ms"] >= 50
    image = fleet.get(f"out/{tid}/{tid}-1.png")
    assert image.startswith(b"\x89PNG")
    head = fleet.s3.head_object(Bucket=fleet.bucket, Key=f"out/{tid}/{tid}-1.png")
    assert head["ContentType"] == "image/png"
    doc = json.loads(fleet.get(f"out/{tid}/{tid}.out"))
    assert doc["seeds"] == [42, 43] and doc["status"] == "completed"
    assert doc["parameters"]["prompt"] == "a cat" and doc["info"]["seed"] == 42
    # Deleted only after the notification: nothing is left in the queue.
    assert fleet.queue_counts() == (0, 0)
    [call] = srv.generation_calls()
    assert call.path.endswith("/txt2img") and call.body["prompt"] == "a cat"


def test_legacy_alwayson_keys_stripped_and_override_merged(fleet: Fleet) -> None:
    content = {
        "prompt": "x",
        "override_settings": {"CLIP_stop_at_last_layers": 2},
        "alwayson_scripts": {
            "task": "text-to-image",
            "id_task": "abc",
            "uid": "u",
            "save_dir": "out",
            "override_settings": {"eta_noise_seed_delta": 31337, "CLIP_stop_at_last_layers": 1},
        },
    }
    with FakeSdWebUI(inference_seconds=0.01) as srv, AgentThread(fleet, srv.url):
        fleet.publish(fleet.task(content))
        [note] = fleet.notifications(1, timeout=20)
    assert note["status"] == "completed", note
    [call] = srv.generation_calls()
    assert "alwayson_scripts" not in call.body
    assert call.body["override_settings"] == {
        "eta_noise_seed_delta": 31337,
        "CLIP_stop_at_last_layers": 2,
    }


def test_img2img_url_input_inlined(fleet: Fleet, image_host: ImageHost) -> None:
    content = {"prompt": "x", "init_images": [image_host.url("/small.png")]}
    with (
        FakeSdWebUI(inference_seconds=0.01) as srv,
        AgentThread(fleet, srv.url, ALLOWED_INPUT_HOSTS="127.0.0.1"),
    ):
        fleet.publish(fleet.task(content, tasktype="image-to-image"))
        [note] = fleet.notifications(1, timeout=20)
    assert note["status"] == "completed", note
    [call] = srv.generation_calls()
    assert call.path.endswith("/img2img")
    assert base64.b64decode(call.body["init_images"][0]) == PNG


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("http://169.254.169.254/latest/meta-data/iam/", "input_forbidden"),
        ("http://localhost:{port}/small.png", "input_forbidden"),
        ("http://127.0.0.1:{port}/small.png", "input_forbidden"),
        ("file:///etc/passwd", "input_forbidden"),
        ("gopher://example.com/x", "input_forbidden"),
        ("http://127.0.0.1:{port}/big.bin", "input_too_large"),
    ],
)
def test_ssrf_and_oversized_inputs_fail_the_task(
    fleet: Fleet, image_host: ImageHost, url: str, code: str
) -> None:
    url = url.format(port=image_host.port)
    content = {"prompt": "x", "init_images": [url]}
    # Only the oversized case is allow-listed, so it reaches the size limit.
    allowed = "127.0.0.1" if code == "input_too_large" else ""
    with (
        FakeSdWebUI(inference_seconds=0.01) as srv,
        AgentThread(fleet, srv.url, ALLOWED_INPUT_HOSTS=allowed, MAX_INPUT_BYTES="1000"),
    ):
        task = fleet.publish(fleet.task(content, tasktype="image-to-image"))
        [note] = fleet.notifications(1, timeout=20)
    assert note["status"] == "failed" and note["result"] is False
    assert note["error"]["code"] == code, note["error"]
    assert srv.generation_calls() == []
    tid = task.metadata.id
    doc = json.loads(fleet.get(f"out/{tid}/{tid}.out"))
    assert doc["error"]["code"] == code
    assert fleet.queue_counts() == (0, 0)


def test_server_4xx_fails_with_server_body(fleet: Fleet) -> None:
    with FakeSdWebUI(inference_seconds=0.01) as srv, AgentThread(fleet, srv.url):
        fleet.publish(fleet.task({"prompt": "x", "sampler_name": "No Such Sampler"}))
        [note] = fleet.notifications(1, timeout=20)
    assert note["status"] == "failed"
    assert note["error"]["code"] == "server_rejected"
    assert note["error"]["detail"]["detail"] == "Sampler not found"
    assert len(srv.generation_calls()) == 1


def test_oom_is_not_retried(fleet: Fleet) -> None:
    with FakeSdWebUI(inference_seconds=0.01) as srv, AgentThread(fleet, srv.url):
        srv.fail_next(500)
        fleet.publish(fleet.task())
        [note] = fleet.notifications(1, timeout=20)
    assert note["error"]["code"] == "server_error"
    assert note["error"]["detail"]["error"] == "OutOfMemoryError"
    assert len(srv.generation_calls()) == 1


def test_content_ref_is_resolved_from_s3(fleet: Fleet) -> None:
    task = fleet.task({"prompt": "from s3", "steps": 3})
    key = request_key(task.metadata.prefix, task.metadata.id)
    fleet.s3.put_object(Bucket=fleet.bucket, Key=key, Body=json.dumps(task.content).encode())
    task.content_ref, task.content = f"s3://{fleet.bucket}/{key}", None
    with FakeSdWebUI(inference_seconds=0.01) as srv, AgentThread(fleet, srv.url):
        fleet.publish(task)
        [note] = fleet.notifications(1, timeout=20)
    assert note["status"] == "completed", note
    assert srv.generation_calls()[0].body["prompt"] == "from s3"


def test_missing_content_ref_fails_the_task(fleet: Fleet) -> None:
    task = fleet.task()
    key = request_key(task.metadata.prefix, task.metadata.id)  # never written
    task.content_ref, task.content = f"s3://{fleet.bucket}/{key}", None
    with FakeSdWebUI(inference_seconds=0.01) as srv, AgentThread(fleet, srv.url):
        fleet.publish(task)
        [note] = fleet.notifications(1, timeout=20)
    assert note["error"]["code"] == "content_ref_failed"
    assert srv.generation_calls() == []


def test_running_callback_then_completed(fleet: Fleet) -> None:
    with (
        FakeSdWebUI(inference_seconds=0.05) as srv,
        AgentThread(fleet, srv.url, EXP_CALLBACK_WHEN_RUNNING="true"),
    ):
        task = fleet.publish(fleet.task())
        notes = fleet.notifications(2, timeout=20)
    assert [n["status"] for n in notes] == ["running", "completed"]
    assert all(n["id"] == task.metadata.id for n in notes)
    assert notes[0]["_attributes"]["status"] == "running"


def test_job_timeout_interrupts_and_fails(fleet: Fleet) -> None:
    with (
        FakeSdWebUI(inference_seconds=0.05) as srv,
        AgentThread(fleet, srv.url, JOB_TIMEOUT_SECONDS="0.5"),
    ):
        srv.hang_next()
        fleet.publish(fleet.task())
        [note] = fleet.notifications(1, timeout=20)
    assert note["status"] == "failed"
    assert note["error"]["code"] == "timeout"
    assert srv.interrupts == 1
    assert srv.jobs[0].interrupted


def test_dynamic_model_switch(fleet: Fleet) -> None:
    content = {"prompt": "x", "override_settings": {"sd_model_checkpoint": "sd_xl_base_1.0"}}
    with (
        FakeSdWebUI(inference_seconds=0.01, load_seconds=0.05) as srv,
        AgentThread(fleet, srv.url, DYNAMIC_SD_MODEL="true"),
    ):
        fleet.publish(fleet.task(content))
        [note] = fleet.notifications(1, timeout=20)
        loaded = srv.loaded_model
    assert note["status"] == "completed", note
    assert loaded is not None and loaded.name == "sd_xl_base_1.0.safetensors"
    paths = [c.path.rsplit("/", 1)[-1] for c in srv.calls if c.method == "POST"]
    assert paths.index("refresh-checkpoints") < paths.index("options") < paths.index("txt2img")
    assert "sd_model_checkpoint" not in srv.generation_calls()[0].body.get("override_settings", {})


def test_dynamic_model_unknown_lists_models(fleet: Fleet) -> None:
    content = {"prompt": "x", "override_settings": {"sd_model_checkpoint": "nope.ckpt"}}
    with (
        FakeSdWebUI(inference_seconds=0.01) as srv,
        AgentThread(fleet, srv.url, DYNAMIC_SD_MODEL="1"),
    ):
        fleet.publish(fleet.task(content))
        [note] = fleet.notifications(1, timeout=20)
    assert note["error"]["code"] == "model_not_found"
    assert "v1-5-pruned-emaonly.safetensors" in note["error"]["message"]
    assert srv.generation_calls() == []


def test_dynamic_model_load_failure_is_detected(fleet: Fleet) -> None:
    content = {"prompt": "x", "override_settings": {"sd_model_checkpoint": "sd_xl_base_1.0"}}
    with (
        FakeSdWebUI(inference_seconds=0.01) as srv,
        AgentThread(fleet, srv.url, DYNAMIC_SD_MODEL="1"),
    ):
        srv.load_fails = True
        fleet.publish(fleet.task(content))
        [note] = fleet.notifications(1, timeout=20)
    assert note["error"]["code"] == "model_load_failed"
    assert srv.generation_calls() == []


def test_static_model_missing_exits_non_zero(fleet: Fleet) -> None:
    with FakeSdWebUI(inference_seconds=0.01) as srv:
        runner = AgentThread(fleet, srv.url, MODEL_FILENAME="missing.safetensors").start()
        assert runner.wait_exit(20) == 3


def test_static_model_that_fails_to_load_exits_non_zero(fleet: Fleet) -> None:
    with FakeSdWebUI(inference_seconds=0.01) as srv:
        srv.load_fails = True
        runner = AgentThread(fleet, srv.url, MODEL_FILENAME="sd_xl_base_1.0.safetensors").start()
        assert runner.wait_exit(20) == 3


def test_static_model_present_serves(fleet: Fleet) -> None:
    with (
        FakeSdWebUI(inference_seconds=0.01) as srv,
        AgentThread(fleet, srv.url, MODEL_FILENAME="v1-5-pruned-emaonly.safetensors"),
    ):
        fleet.publish(fleet.task())
        [note] = fleet.notifications(1, timeout=20)
    assert note["status"] == "completed"


def test_content_ref_outside_the_output_bucket_is_refused(fleet: Fleet) -> None:
    other = f"{fleet.bucket}-other"
    fleet.s3.create_bucket(Bucket=other)
    task = fleet.task()
    fleet.s3.put_object(Bucket=other, Key="x.json", Body=json.dumps(task.content).encode())
    task.content_ref, task.content = f"s3://{other}/x.json", None
    with FakeSdWebUI(inference_seconds=0.01) as srv, AgentThread(fleet, srv.url):
        fleet.publish(task)
        [note] = fleet.notifications(1, timeout=20)
    assert note["error"]["code"] == "content_ref_failed"
    assert fleet.bucket in note["error"]["message"]
    assert srv.generation_calls() == []


def test_extras_routes(fleet: Fleet, image_host: ImageHost) -> None:
    single = fleet.task(
        {"image": image_host.url("/small.png"), "upscaling_resize": 2},
        tasktype="extra-single-image",
    )
    batch = fleet.task(
        {
            "imageList": [
                {"data": base64.b64encode(PNG).decode(), "name": "a"},
                {"data": image_host.url("/small.png"), "name": "b"},
            ]
        },
        tasktype="extra-batch-images",
    )
    with (
        FakeSdWebUI(inference_seconds=0.01) as srv,
        AgentThread(fleet, srv.url, ALLOWED_INPUT_HOSTS="127.0.0.1"),
    ):
        fleet.publish(single)
        fleet.publish(batch)
        notes = fleet.notifications(2, timeout=20)
    by_id = {n["id"]: n for n in notes}
    assert by_id[single.metadata.id]["status"] == "completed", notes
    assert len(by_id[single.metadata.id]["image_url"]) == 1
    assert len(by_id[batch.metadata.id]["image_url"]) == 2
    calls = {c.path.rsplit("/", 1)[-1]: c for c in srv.generation_calls()}
    assert base64.b64decode(calls["extra-single-image"].body["image"]) == PNG
    assert base64.b64decode(calls["extra-batch-images"].body["imageList"][1]["data"]) == PNG


def test_trace_header_is_continued(fleet: Fleet) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from sdfleet.agent.tracing import Tracing

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    task = fleet.task()
    header = "Root=1-6759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    fleet.sqs.send_message(
        QueueUrl=fleet.queue_url,
        MessageBody=json.dumps(task.to_message()),
        MessageSystemAttributes={"AWSTraceHeader": {"DataType": "String", "StringValue": header}},
    )
    tracing = Tracing(provider.get_tracer("test"), provider)
    with FakeSdWebUI(inference_seconds=0.01) as srv, AgentThread(fleet, srv.url, tracing=tracing):
        [note] = fleet.notifications(1, timeout=20)
    assert note["status"] == "completed"  # a raw (non-SNS) body is accepted too
    spans = {s.name: s for s in exporter.get_finished_spans()}
    root = spans["sdfleet.task"]
    assert format(root.context.trace_id, "032x") == "6759e988bd862e3fe1be46a994272793"
    assert root.attributes is not None and root.attributes["sdfleet.task_id"] == task.metadata.id
    assert root.attributes["sdfleet.status"] == "completed"
    assert spans["inference"].parent is not None
    assert spans["inference"].parent.span_id == root.context.span_id
