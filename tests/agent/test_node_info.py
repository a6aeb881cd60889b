"""Node info (capacity type, instance type) against a fake Kubernetes API, and AgentUp."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from sdfleet.agent.kube_api import KubeApi
from sdfleet.agent.metrics import NAMESPACE, Metrics, extract_metrics
from sdfleet.agent.node_info import (
    CAPACITY_TYPE_LABEL,
    INSTANCE_TYPE_LABEL,
    AgentUpBeat,
    NodeInfo,
    read_node_info,
)

NODE = "ip-10-0-1-2.eu-west-1.compute.internal"


class FakeNodesApi:
    """Answers ``GET /api/v1/nodes/<name>`` with ``status`` and a Node carrying ``labels``."""

    def __init__(self) -> None:
        self.status = 200
        self.labels: dict[str, str] = {}
        self.requests: list[dict[str, Any]] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                api.requests.append({"path": self.path, "headers": dict(self.headers)})
                name = self.path.rsplit("/", 1)[-1]
                if api.status == 200:
                    body: dict[str, Any] = {
                        "kind": "Node",
                        "metadata": {"name": name, "labels": api.labels},
                    }
                else:
                    body = {"kind": "Status", "code": api.status, "reason": "Forbidden"}
                reply = json.dumps(body).encode()
                self.send_response(api.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def api() -> Iterator[FakeNodesApi]:
    server = FakeNodesApi()
    yield server
    server.close()


@pytest.fixture
def token(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text("token-1\n")
    return path


def _read(api: FakeNodesApi, token: Path, node: str | None = NODE) -> NodeInfo:
    client = KubeApi(f"http://127.0.0.1:{api.port}", str(token), "", timeout_seconds=5)
    return read_node_info({}, node, api=client)


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize("capacity", ["spot", "on-demand"])
def test_capacity_and_instance_type_come_from_the_node_labels(
    api: FakeNodesApi, token: Path, capacity: str, caplog: pytest.LogCaptureFixture
) -> None:
    api.labels = {CAPACITY_TYPE_LABEL: capacity, INSTANCE_TYPE_LABEL: "g5.xlarge", "x": "y"}
    with caplog.at_level(logging.INFO, logger="agent.node_info"):
        info = _read(api, token)
    assert info == NodeInfo(name=NODE, capacity_type=capacity, instance_type="g5.xlarge")
    assert info.properties() == {"NodeName": NODE, "InstanceType": "g5.xlarge"}
    [request] = api.requests
    assert request["path"] == f"/api/v1/nodes/{NODE}"
    assert request["headers"]["Authorization"] == "Bearer token-1"
    assert not _warnings(caplog)


@pytest.mark.parametrize("labels", [{}, {CAPACITY_TYPE_LABEL: "reserved"}])
def test_a_missing_or_other_label_is_unknown_with_one_warning(
    api: FakeNodesApi, token: Path, labels: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    api.labels = labels
    with caplog.at_level(logging.INFO, logger="agent.node_info"):
        info = _read(api, token)
    assert info == NodeInfo(name=NODE, capacity_type="unknown", instance_type=None)
    assert info.properties() == {"NodeName": NODE}
    [warning] = _warnings(caplog)
    assert CAPACITY_TYPE_LABEL in warning and "CapacityType=unknown" in warning


@pytest.mark.parametrize(
    ("status", "fragment"),
    [(403, "ClusterRole with get on nodes"), (404, "NODE_NAME"), (500, "HTTP 500")],
)
def test_an_api_error_is_unknown_with_one_warning_saying_what_to_check(
    api: FakeNodesApi, token: Path, status: int, fragment: str, caplog: pytest.LogCaptureFixture
) -> None:
    api.status = status
    with caplog.at_level(logging.INFO, logger="agent.node_info"):
        info = _read(api, token)
    assert info == NodeInfo(name=NODE)
    [warning] = _warnings(caplog)
    assert fragment in warning and str(status) in warning and NODE in warning


def test_an_unreachable_api_or_missing_token_is_unknown(
    api: FakeNodesApi, tmp_path: Path, token: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="agent.node_info"):
        no_token = read_node_info(
            {}, NODE, api=KubeApi(f"http://127.0.0.1:{api.port}", str(tmp_path / "none"))
        )
        api.close()  # nothing listens any more
        refused = _read(api, token)
    assert no_token == refused == NodeInfo(name=NODE)
    assert len(_warnings(caplog)) == 2 and not api.requests


def test_in_a_pod_without_node_name_warns_and_outside_a_pod_only_informs(
    token: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="agent.node_info"):
        outside = read_node_info({}, NODE)
        assert outside == NodeInfo(name=NODE)
        assert not _warnings(caplog)
        in_pod = read_node_info({"KUBERNETES_SERVICE_HOST": "10.100.0.1"}, None)
    assert in_pod == NodeInfo()
    [warning] = _warnings(caplog)
    assert "NODE_NAME" in warning and "spec.nodeName" in warning


# -- AgentUp --------------------------------------------------------------------------------


class Lines:
    """A Metrics sink that can be waited on."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.cond = threading.Condition()

    def put(self, line: str) -> None:
        with self.cond:
            self.lines.append(line)
            self.cond.notify_all()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[str]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.lines) >= count, timeout), self.lines
            return list(self.lines)


def test_agent_up_beats_at_start_then_every_interval_until_stopped() -> None:
    sink = Lines()
    node = NodeInfo(name=NODE, capacity_type="spot", instance_type="g5.xlarge")
    beat = AgentUpBeat(Metrics("sd15", sink=sink.put), node, interval_seconds=0.05)
    beat.start()
    lines = sink.wait_for(3)
    beat.stop()
    assert beat._thread is not None and not beat._thread.is_alive()
    stopped_at = len(sink.lines)
    assert stopped_at == beat.beats
    document = json.loads(lines[0])
    assert document["AgentUp"] == 1
    assert (document["NodeName"], document["InstanceType"]) == (NODE, "g5.xlarge")
    assert extract_metrics(document) == {
        (NAMESPACE, "AgentUp", frozenset({("Runtime", "sd15")})),
        (NAMESPACE, "AgentUp", frozenset({("Runtime", "sd15"), ("CapacityType", "spot")})),
    }


def test_agent_ready_rides_with_the_beat_only_while_ready() -> None:
    sink = Lines()
    ready = {"now": False}
    beat = AgentUpBeat(
        Metrics("sd15", sink=sink.put),
        NodeInfo(),
        interval_seconds=3600,
        ready=lambda: ready["now"],
    )
    beat.beat()
    ready["now"] = True
    beat.beat()
    first, second = (json.loads(line) for line in sink.lines)
    assert "AgentReady" not in first and first["AgentUp"] == 1
    assert second["AgentReady"] == 1 and second["AgentUp"] == 1
    assert {name for _, name, _ in extract_metrics(second)} == {"AgentUp", "AgentReady"}


def test_beat_now_emits_at_once_and_restarts_the_interval() -> None:
    sink = Lines()
    beat = AgentUpBeat(Metrics("sd15", sink=sink.put), NodeInfo(), interval_seconds=3600)
    beat.start()
    sink.wait_for(1)  # the start beat
    beat.beat_now()  # e.g. the server became ready
    sink.wait_for(2)
    beat.stop()
    assert beat.beats == 2
    # Nothing known about the node: still published, as unknown, without properties.
    document = json.loads(sink.lines[1])
    assert document["CapacityType"] == "unknown" and "NodeName" not in document


def test_a_failing_sink_does_not_end_the_heartbeat(caplog: pytest.LogCaptureFixture) -> None:
    calls = Lines()

    def sink(line: str) -> None:
        calls.put(line)
        raise RuntimeError("sink down")

    beat = AgentUpBeat(Metrics("sd15", sink=sink), NodeInfo(), interval_seconds=0.01)
    with caplog.at_level(logging.ERROR, logger="agent.node_info"):
        beat.start()
        calls.wait_for(3)
        beat.stop()
    assert any("AgentUp metric not emitted" in r.getMessage() for r in caplog.records)


class NeverReady:
    """An inference server that never answers (the agent waits in ``_wait_ready``)."""

    def probe(self) -> bool:
        return False

    def close(self) -> None:
        pass


def test_the_agent_reports_itself_up_from_start_until_it_stops() -> None:
    from sdfleet.agent.config import load_config
    from sdfleet.agent.worker import EXIT_OK, Agent
    from tests.agent.harness import AGENT_ENV

    sink = Lines()
    node = NodeInfo(name=NODE, capacity_type="on-demand", instance_type="g6.xlarge")
    agent = Agent(
        load_config(AGENT_ENV),
        sqs=None,
        s3=None,
        sns=None,
        server=NeverReady(),  # type: ignore[arg-type]
        metrics=Metrics("sd15", sink=sink.put),
        node=node,
    )
    result: list[int] = []
    runner = threading.Thread(target=lambda: result.append(agent.run()), daemon=True)
    runner.start()
    # Up while the server is still loading: the pod holds its (GPU) node all the same.
    [line] = sink.wait_for(1)
    assert json.loads(line)["CapacityType"] == "on-demand"
    agent.request_stop()
    runner.join(10)
    assert result == [EXIT_OK]
    assert agent.agent_up._thread is not None and not agent.agent_up._thread.is_alive()
