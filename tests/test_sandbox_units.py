"""The sandbox's pieces on their own: the preview images, the event plane on moto (routing,
redrive, table), the agents' environment and the command's usage errors."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sdfleet.agent.config import load_config
from sdfleet.components.builders import fanout as fb
from sdfleet.components.config_model import StackConfig
from sdfleet.fakes.fleet import MotoServer, client
from sdfleet.fakes.images import png_pixels, png_size, png_text
from sdfleet.sandbox.agents import SANDBOX_RECEIVE_WAIT_SECONDS, agent_env
from sdfleet.sandbox.plane import Plane, build_plane
from sdfleet.sandbox.preview import PREVIEW_TEXT_KEY, preview_png, prompt_of, wrap
from sdfleet.sandbox.run import UsageError, parse_runtime_urls
from sdfleet.sandbox.run import load_config as load_stack
from sdfleet.sandbox.sweeper import SweeperThread, sweeper_for

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def config() -> StackConfig:
    return load_stack(ROOT, "dev")


@pytest.fixture(scope="module")
def plane(config: StackConfig) -> Iterator[Plane]:
    server = MotoServer().start()
    yield build_plane(server.endpoint, config)
    server.stop()


def test_preview_images_are_labelled_deterministic_and_sized() -> None:
    first = preview_png(320, 200, 7, "a red fox\nNegative prompt: blur\nSteps: 20")
    assert first == preview_png(320, 200, 7, "a red fox\nNegative prompt: blur\nSteps: 20")
    assert first != preview_png(320, 200, 8, "a red fox\nSteps: 20")
    assert png_size(first) == (320, 200)
    chunks = png_text(first)
    assert chunks[PREVIEW_TEXT_KEY].startswith("preview") and chunks["parameters"].startswith("a")
    first_row = png_pixels(first)[1 : 1 + 320 * 3]
    assert first_row == b"\xff\xc8\x00" * 320  # the label's band


def test_the_prompt_drawn_comes_from_the_infotext_or_the_graph() -> None:
    assert prompt_of("a cat\nSteps: 4", None) == "a cat"
    graph = {
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": " "}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a harbour"}},
    }
    assert prompt_of(None, {"prompt": json.dumps(graph)}) == "a harbour"
    assert prompt_of(None, {"prompt": "not json"}) == ""
    assert wrap("one two three " + "x" * 12, 5, 10) == [
        "one",
        "two",
        "three",
        "xxxxx",
        "xxxxx",
        "xx",
    ]
    assert wrap("a b c d", 1, 2) == ["a", "b"]


def test_tasks_route_by_runtime_and_unknown_ones_to_the_unrouted_queue(plane: Plane) -> None:
    sns, sqs = client("sns", plane.endpoint), client("sqs", plane.endpoint)
    for runtime in ("sd15", "flux", "nope", None):
        attributes = {"runtime": {"DataType": "String", "StringValue": runtime}} if runtime else {}
        sns.publish(
            TopicArn=plane.input_topic_arn,
            Message=json.dumps({"r": runtime}),
            MessageAttributes=attributes,
        )

    def bodies(url: str) -> list[object]:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        return sorted(
            (json.loads(json.loads(m["Body"])["Message"])["r"] or "")
            for m in got.get("Messages", [])
        )

    assert bodies(plane.queues["sd15"].queue_url) == ["sd15"]
    assert bodies(plane.queues["flux"].queue_url) == ["flux"]
    assert bodies(plane.unrouted_queue_url) == ["", "nope"]


def test_queues_redrive_to_their_own_dlq_with_the_stack_settings(
    plane: Plane, config: StackConfig
) -> None:
    sqs = client("sqs", plane.endpoint)
    queues = plane.queues["sd15"]
    attrs = sqs.get_queue_attributes(QueueUrl=queues.queue_url, AttributeNames=["All"])[
        "Attributes"
    ]
    dlq = sqs.get_queue_attributes(QueueUrl=queues.dlq_url, AttributeNames=["All"])["Attributes"]
    assert json.loads(attrs["RedrivePolicy"]) == json.loads(
        fb.redrive_policy(dlq["QueueArn"], config.queues.max_receive_count)
    )
    assert attrs["VisibilityTimeout"] == str(config.queues.visibility_timeout_seconds)
    # The DLQ's RedriveAllowPolicy is set too, but moto does not report it back.
    ttl = client("dynamodb", plane.endpoint).describe_time_to_live(TableName=plane.table_name)
    assert ttl["TimeToLiveDescription"]["TimeToLiveStatus"] == "ENABLED"


def test_the_agent_env_is_the_pods_and_the_agent_accepts_it(
    plane: Plane, config: StackConfig
) -> None:
    sd15 = next(rt for rt in config.runtimes if rt.name == "sd15")
    env = agent_env(config, sd15, plane, "http://127.0.0.1:1/sdapi/v1/", 4321)
    assert env["SQS_QUEUE_URL"] == plane.queues["sd15"].queue_url
    assert env["TASK_TABLE_NAME"] == plane.table_name
    assert env["MODEL_FILENAME"] == sd15.model_filename
    assert env["JOB_TIMEOUT_SECONDS"] == str(sd15.job_timeout_seconds)
    assert env["RECEIVE_WAIT_SECONDS"] == SANDBOX_RECEIVE_WAIT_SECONDS
    assert env["AWS_ENDPOINT_URL"] == plane.endpoint
    loaded = load_config(env)
    assert (loaded.runtime_name, loaded.health_port) == ("sd15", 4321)


def test_runtime_urls_must_name_a_runtime_of_the_stack(config: StackConfig) -> None:
    assert parse_runtime_urls(["flux=http://127.0.0.1:8188"], config) == {
        "flux": "http://127.0.0.1:8188"
    }
    for bad in ("nope=http://127.0.0.1:1", "sd15", "sd15=ftp://x"):
        with pytest.raises(UsageError):
            parse_runtime_urls([bad], config)


def test_usage_errors_exit_2_before_anything_starts() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sdfleet.cli", "sandbox", "--runtime", "nope=http://127.0.0.1:1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "no runtime 'nope'" in done.stderr
    assert done.stdout == ""


def test_the_sweeper_fails_a_dead_lettered_task_once(plane: Plane, config: StackConfig) -> None:
    thread = SweeperThread(sweeper_for(plane, 3600))
    store = thread.sweeper.store
    store.create("doomed-1", "sd15", "sandbox")
    task = {"metadata": {"id": "doomed-1", "runtime": "sd15", "tasktype": "text-to-image"}}
    envelope = {"Type": "Notification", "Message": json.dumps({"task": {**task, "content": {}}})}
    sqs = client("sqs", plane.endpoint)
    sqs.send_message(QueueUrl=plane.queues["sd15"].dlq_url, MessageBody=json.dumps(envelope))
    assert thread.sweep().failed == ["doomed-1"]
    record = store.load("doomed-1")
    assert record is not None and (record.state, record.error_code) == ("failed", "dead_lettered")
    assert thread.sweep().failed == []  # already final: announced once
