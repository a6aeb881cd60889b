"""The dashboard and alarms read only what a real agent really ships.

A real agent runs two completed tasks (one with an input image), a failed one and a poison
message on moto, its metrics go through the real shipper (``PutLogEvents``) into the runtime's
metrics log group, and CloudWatch's extraction is replayed on the stored events (``extract_metrics``). The
catalogue of agent metrics the dashboard is validated against is then *what was extracted*, not
what the code declares: a widget or alarm on an agent metric (or dimension set) that no agent
emitted fails here. The Logs Insights widgets' fields must be in the shipped documents too."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from sdfleet.agent.metrics import NAMESPACE, Metrics, extract_metrics
from sdfleet.agent.metrics_sink import LogShipper
from sdfleet.agent.node_info import NodeInfo
from sdfleet.components.builders import alarms as al
from sdfleet.components.builders import dashboard as db
from sdfleet.components.builders import metric_catalog as mc
from sdfleet.fakes.agents import AgentThread
from sdfleet.fakes.fleet import Fleet, client
from sdfleet.fakes.sdwebui import FakeSdWebUI
from tests.agent.harness import ImageHost

pytestmark = pytest.mark.e2e

NODE = NodeInfo(name="ip-10-0-1-7.ec2.internal", capacity_type="spot", instance_type="g5.xlarge")


@pytest.fixture
def image_host() -> Iterator[ImageHost]:
    host = ImageHost()
    yield host
    host.close()


def group(fleet: Fleet) -> str:
    return f"/sdfleet/sdfleet-{fleet.suffix}/sd15/agent-metrics"


def _run_tasks(fleet: Fleet, image_host: ImageHost) -> list[dict[str, Any]]:
    """Four messages through a real agent whose metrics ship to moto; the stored documents."""
    logs = client("logs", fleet.endpoint)
    logs.create_log_group(logGroupName=group(fleet))
    shipper = LogShipper(logs, group(fleet), "sd15-pod-1", flush_seconds=1)
    metrics = Metrics("sd15", sink=shipper.put)
    image = image_host.url("/small.png")
    fleet.publish(fleet.task({"prompt": "ok", "init_images": [image]}, tasktype="image-to-image"))
    fleet.publish(fleet.task({"prompt": "second"}))  # two jobs: the GPU's idle gap between them
    fleet.publish(
        fleet.task({"prompt": "x", "init_images": ["ftp://example.com/a.png"]}, task_id="bad")
    )
    fleet.publish_raw_json({"metadata": {"id": "poison-1", "runtime": "sd15"}})
    with FakeSdWebUI(inference_seconds=0.01) as srv:
        runner = AgentThread(fleet, srv.url, ALLOWED_INPUT_HOSTS="127.0.0.1")
        agent = runner.agent
        agent.metrics = agent.completion.metrics = agent.agent_up.metrics = metrics
        agent.agent_up.node = NODE
        with runner:
            fleet.notifications(4, timeout=30)
    shipper.close()
    events = logs.get_log_events(
        logGroupName=group(fleet), logStreamName="sd15-pod-1", startFromHead=True
    )
    return [json.loads(e["message"]) for e in events["events"]]


def _emitted_catalog(documents: list[dict[str, Any]]) -> mc.Catalog:
    emitted: dict[tuple[str, str], set[frozenset[str]]] = {}
    for document in documents:
        for namespace, name, dims in extract_metrics(document):
            emitted.setdefault((namespace, name), set()).add(frozenset(k for k, _ in dims))
    return {key: frozenset(sets) for key, sets in emitted.items()}


def test_every_agent_metric_the_dashboard_and_alarms_read_was_shipped(
    fleet: Fleet, image_host: ImageHost
) -> None:
    documents = _run_tasks(fleet, image_host)
    emitted = _emitted_catalog(documents)
    # Everything the agent declares, it emitted in this run (no dead catalogue entries).
    assert emitted == mc.agent_catalog()
    catalog = {**emitted, **mc.AWS_METRICS, **mc.GPU_METRICS}
    inputs = db.DashboardInputs(
        title="sdfleet-test",
        region="us-east-1",
        runtimes={"sd15": db.RuntimeNames("q", "dlq", "sd15", "sd15", group(fleet))},
        unrouted_queue="unrouted",
        function_name="fn",
        api_name="api",
        stage_name="v1",
        cluster_name="c",
        container_insights=True,
        webhook_dlq="wdlq",
        webhook_function="wfn",
    )
    body = db.dashboard_body(inputs)
    assert mc.validate_dashboard(body, catalog) == []
    thresholds = al.AlarmThresholds()
    specs = al.runtime_alarms("sd15", thresholds, container_insights=True)
    specs += al.platform_alarms(thresholds, spot_rule=True)
    for spec in specs:
        for ref in spec.metrics:
            if ref.namespace == NAMESPACE:
                assert mc.known(catalog, ref.namespace, ref.metric, ref.dimensions), spec.name
    # The Logs Insights widgets over this group read fields the documents carry.
    fields = set().union(*(d.keys() for d in documents))
    for widget in json.loads(body)["widgets"]:
        query = widget["properties"].get("query", "")
        if widget["type"] == "log" and group(fleet) in query:
            used = set(re.findall(r"\b(NodeName|CapacityType|Runtime|InstanceType)\b", query))
            assert used and used <= fields, (widget["properties"]["title"], used - fields)


def test_failed_tasks_carry_their_error_code_and_the_heartbeat_its_capacity_type(
    fleet: Fleet, image_host: ImageHost
) -> None:
    documents = _run_tasks(fleet, image_host)
    failed = {d["task_id"]: d["ErrorCode"] for d in documents if "TasksFailed" in d}
    assert failed == {"bad": "input_forbidden", "poison-1": "invalid_task"}
    beats = [d for d in documents if "AgentUp" in d]
    assert beats and all(d["CapacityType"] == "spot" for d in beats)
    assert {d["NodeName"] for d in beats} == {NODE.name}
    done = [d for d in documents if "TasksCompleted" in d]
    assert len(done) == 2 and all(d["EndToEndMs"] >= d["InferenceMs"] for d in done)
    assert any("InputFetchMs" in d for d in done)
