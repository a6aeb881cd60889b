"""End to end against moto and the fake ComfyUI (HTTP + websocket)."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest

from sdfleet.agent.contract import COMFYUI
from sdfleet.fakes.comfyui import FakeComfyUI
from sdfleet.fakes.images import make_png
from tests.agent.harness import AgentThread, Fleet, ImageHost

pytestmark = pytest.mark.e2e


@pytest.fixture
def cfleet(aws_env: Any) -> Fleet:
    return Fleet(aws_env.endpoint, runtime_name="comfy", runtime_type=COMFYUI)


def graph(seed: int = 1, load_image: str | None = None) -> dict[str, Any]:
    nodes: dict[str, Any] = {
        "4": {
            "class_type": "CheckpointLoaderSimple",
            "inputs": {"ckpt_name": "v1-5-pruned-emaonly.safetensors"},
        },
        "5": {
            "class_type": "EmptyLatentImage",
            "inputs": {"width": 64, "height": 64, "batch_size": 1},
        },
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}},
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "model": ["4", 0],
                "seed": seed,
                "steps": 2,
                "cfg": 7.0,
                "sampler_name": "euler",
                "scheduler": "normal",
                "positive": ["6", 0],
                "negative": ["7", 0],
                "latent_image": ["5", 0],
                "denoise": 1.0,
            },
        },
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "t", "images": ["8", 0]}},
    }
    if load_image is not None:
        nodes["10"] = {"class_type": "LoadImage", "inputs": {"image": load_image}}
        nodes["11"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["10", 0], "vae": ["4", 2]}}
        nodes["3"]["inputs"]["latent_image"] = ["11", 0]
    return nodes


def pipeline(fleet: Fleet, prompt: dict[str, Any], task_id: str | None = None) -> Any:
    return fleet.task({"prompt": prompt}, tasktype="pipeline", task_id=task_id or uuid.uuid4().hex)


def test_pipeline_completes_with_images(cfleet: Fleet) -> None:
    with FakeComfyUI(execution_seconds=0.05) as srv, AgentThread(cfleet, srv.url):
        task = cfleet.publish(pipeline(cfleet, graph(seed=11)))
        [note] = cfleet.notifications(1, timeout=20)
    tid = task.metadata.id
    assert note["status"] == "completed", note
    assert note["image_url"] == [f"s3://{cfleet.bucket}/out/{tid}/{tid}-1.png"]
    assert cfleet.get(f"out/{tid}/{tid}-1.png").startswith(b"\x89PNG")
    # Completion came from the websocket, not from the 1 s history poll.
    assert note["timings"]["inference_ms"] < 900
    doc = json.loads(cfleet.get(f"out/{tid}/{tid}.out"))
    assert doc["status"] == "completed" and "9" in doc["outputs"]
    [post] = [c for c in srv.calls if c.method == "POST" and c.path.endswith("/prompt")]
    assert post.body["client_id"].startswith("sdfleet-")
    assert post.body["prompt_id"] == doc["prompt_id"]


def test_validation_error_is_returned_verbatim(cfleet: Fleet) -> None:
    bad = graph()
    bad["4"]["inputs"]["ckpt_name"] = "nope.safetensors"
    with FakeComfyUI(execution_seconds=0.05) as srv, AgentThread(cfleet, srv.url):
        task = cfleet.publish(pipeline(cfleet, bad))
        [note] = cfleet.notifications(1, timeout=20)
    assert note["status"] == "failed"
    assert note["error"]["code"] == "validation_error"
    detail = note["error"]["detail"]
    assert detail["error"]["type"] == "prompt_outputs_failed_validation"
    assert detail["node_errors"]["4"]["errors"][0]["type"] == "value_not_in_list"
    tid = task.metadata.id
    doc = json.loads(cfleet.get(f"out/{tid}/{tid}.out"))
    assert doc["error"]["detail"] == detail


def test_execution_error_fails_with_its_message(cfleet: Fleet) -> None:
    with FakeComfyUI(execution_seconds=0.05) as srv, AgentThread(cfleet, srv.url):
        srv.fail_next_execution("torch.OutOfMemoryError", "out of memory on the fake GPU")
        cfleet.publish(pipeline(cfleet, graph(seed=12)))
        [note] = cfleet.notifications(1, timeout=20)
    assert note["error"]["code"] == "execution_error"
    assert "out of memory on the fake GPU" in note["error"]["message"]
    assert note["error"]["detail"]["exception_type"] == "torch.OutOfMemoryError"


def test_websocket_drop_falls_back_to_history_polling(cfleet: Fleet) -> None:
    with FakeComfyUI(execution_seconds=0.3) as srv, AgentThread(cfleet, srv.url):
        srv.drop_ws_next_run()
        cfleet.publish(pipeline(cfleet, graph(seed=13)))
        [note] = cfleet.notifications(1, timeout=20)
    assert note["status"] == "completed", note
    assert len(note["image_url"]) == 1


def test_history_lag_after_terminal_event(cfleet: Fleet) -> None:
    with FakeComfyUI(execution_seconds=0.05) as srv, AgentThread(cfleet, srv.url):
        srv.history_delay = 0.5
        cfleet.publish(pipeline(cfleet, graph(seed=14)))
        [note] = cfleet.notifications(1, timeout=20)
    assert note["status"] == "completed", note


def test_load_image_url_is_uploaded(cfleet: Fleet) -> None:
    host = ImageHost()
    try:
        with (
            FakeComfyUI(execution_seconds=0.05) as srv,
            AgentThread(cfleet, srv.url, ALLOWED_INPUT_HOSTS="127.0.0.1"),
        ):
            task = cfleet.publish(
                pipeline(cfleet, graph(seed=15, load_image=host.url("/small.png")))
            )
            [note] = cfleet.notifications(1, timeout=20)
    finally:
        host.close()
    assert note["status"] == "completed", note
    [name] = srv.uploads
    assert name.startswith(f"sdfleet/{task.metadata.id}-10-") and name.endswith(".png")
    assert srv.uploads[name] == make_png(64, 64, 7)
    [post] = [c for c in srv.calls if c.method == "POST" and c.path.endswith("/prompt")]
    assert post.body["prompt"]["10"]["inputs"]["image"] == name


def test_load_image_ssrf_is_refused(cfleet: Fleet) -> None:
    with FakeComfyUI(execution_seconds=0.05) as srv, AgentThread(cfleet, srv.url):
        cfleet.publish(pipeline(cfleet, graph(load_image="http://169.254.169.254/latest/")))
        [note] = cfleet.notifications(1, timeout=20)
    assert note["error"]["code"] == "input_forbidden"
    assert srv.uploads == {}


def test_timeout_interrupts_the_prompt(cfleet: Fleet) -> None:
    with (
        FakeComfyUI(execution_seconds=0.05) as srv,
        AgentThread(cfleet, srv.url, JOB_TIMEOUT_SECONDS="0.5"),
    ):
        srv.hang_next()
        cfleet.publish(pipeline(cfleet, graph(seed=16)))
        [note] = cfleet.notifications(1, timeout=20)
    assert note["error"]["code"] == "timeout"
    assert srv.interrupts >= 1


def test_server_down_at_start_then_ready(cfleet: Fleet) -> None:
    with FakeComfyUI(execution_seconds=0.05, ready=False) as srv:
        cfleet.publish(pipeline(cfleet, graph(seed=17)))
        with AgentThread(cfleet, srv.url) as runner:
            deadline = time.monotonic() + 10
            while runner.agent.ready_probes < 3:  # connection refused: no event
                assert time.monotonic() < deadline
                time.sleep(0.05)
            assert cfleet.queue_counts() == (1, 0)
            srv.set_ready(True)
            [note] = cfleet.notifications(1, timeout=30)
    assert note["status"] == "completed", note


def test_static_model_missing_exits_non_zero(cfleet: Fleet) -> None:
    with FakeComfyUI(execution_seconds=0.05) as srv:
        runner = AgentThread(cfleet, srv.url, MODEL_FILENAME="missing.safetensors").start()
        assert runner.wait_exit(20) == 3


def test_prompt_lost_in_a_server_restart_is_run_again(cfleet: Fleet) -> None:
    with FakeComfyUI(execution_seconds=0.05) as srv, AgentThread(cfleet, srv.url):
        srv.hang_next()
        task = cfleet.publish(pipeline(cfleet, graph(seed=18)))
        srv.wait_for_executions(1, timeout=20, finished=False)
        srv.restart()  # queue and history gone: the agent must notice and not wait forever
        [note] = cfleet.notifications(1, timeout=30)
    assert note["status"] == "completed" and note["id"] == task.metadata.id
    assert note["attempt"] == 2
    posts = [c for c in srv.calls if c.method == "POST" and c.path.endswith("/prompt")]
    assert len(posts) == 2


def test_drain_interrupts_and_releases_the_prompt(cfleet: Fleet) -> None:
    with FakeComfyUI(execution_seconds=0.05) as srv:
        srv.hang_next()
        runner = AgentThread(cfleet, srv.url, DRAIN_SECONDS="0.3").start()
        cfleet.publish(pipeline(cfleet, graph(seed=19)))
        srv.wait_for_executions(1, timeout=20, finished=False)
        assert runner.stop() == 0
        assert srv.interrupts >= 1
        # Released with visibility 0: visible again at once, nothing was published.
        assert cfleet.queue_counts() == (1, 0)
        assert cfleet.queue_counts(cfleet.notify_url) == (0, 0)
