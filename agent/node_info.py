"""This pod's Node (capacity type, instance type) and the ``AgentUp`` heartbeat that reports it.

The Node is read once at start through the Kubernetes API (``GET /api/v1/nodes/<NODE_NAME>``;
the pod's service account needs ``get`` on ``nodes``, a ClusterRole). Its capacity type is the
Karpenter label ``karpenter.sh/capacity-type`` (``spot`` or ``on-demand``); anything else, or any
failure to read it, is ``unknown``, logged once: the agent runs on without it.

``AgentUpBeat`` emits ``AgentUp=1`` with the capacity type as a dimension every
``AGENT_UP_SECONDS`` (first at start), so the dashboard counts live agents split by spot and
on-demand, and GPU node-hours by capacity type.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from sdfleet.agent.kube_api import REQUEST_ERRORS, KubeApi, api_url_from_env
from sdfleet.agent.metrics import AGENT_UP_SECONDS, Metrics

log = logging.getLogger("agent.node_info")

CAPACITY_TYPE_LABEL = "karpenter.sh/capacity-type"
INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"
CAPACITY_TYPES = ("spot", "on-demand")
UNKNOWN = "unknown"


@dataclass(frozen=True)
class NodeInfo:
    name: str | None = None
    capacity_type: str = UNKNOWN  # spot | on-demand | unknown
    instance_type: str | None = None

    def properties(self) -> dict[str, str]:
        """The searchable log fields of an AgentUp document (only the known ones)."""
        fields = {"NodeName": self.name, "InstanceType": self.instance_type}
        return {k: v for k, v in fields.items() if v}


def from_labels(name: str, labels: Mapping[str, Any]) -> NodeInfo:
    capacity = labels.get(CAPACITY_TYPE_LABEL)
    instance = labels.get(INSTANCE_TYPE_LABEL)
    info = NodeInfo(
        name=name,
        capacity_type=capacity if capacity in CAPACITY_TYPES else UNKNOWN,
        instance_type=instance if isinstance(instance, str) and instance else None,
    )
    if info.capacity_type == UNKNOWN:
        log.warning(
            f"node {name}: label {CAPACITY_TYPE_LABEL} is {capacity!r}, not spot or on-demand "
            "(a node not provisioned by Karpenter?); AgentUp is published with "
            "CapacityType=unknown",
            extra={"fields": {"node": name, "label": capacity}},
        )
    return info


def read_node_info(
    env: Mapping[str, str],
    node_name: str | None,
    *,
    api: KubeApi | None = None,
    **api_args: Any,
) -> NodeInfo:
    """This pod's Node, read once; ``unknown`` capacity type (one log line) when it cannot be.
    ``api`` (tests) or ``api_args`` (``KubeApi`` arguments) override the in-cluster client."""
    if api is None:
        api_url = api_url_from_env(env)
        if api_url is None:
            log.info("node info not read: not running in a Kubernetes pod")
            return NodeInfo(name=node_name)
        api = KubeApi(api_url, **{"timeout_seconds": 5.0, **api_args})
    if not node_name:
        log.warning(
            "node info not read: NODE_NAME is not set (downward API spec.nodeName); AgentUp is "
            "published with CapacityType=unknown"
        )
        return NodeInfo()
    try:
        response = api.request("GET", f"/api/v1/nodes/{quote(node_name, safe='')}")
    except REQUEST_ERRORS as exc:
        return _failed(node_name, "request failed", f"{type(exc).__name__}: {exc}")
    if response.status_code == 403:
        return _failed(
            node_name,
            "forbidden (HTTP 403): the pod's service account needs a ClusterRole with get on nodes",
            response.text[:300],
        )
    if response.status_code == 404:
        return _failed(
            node_name,
            "not found (HTTP 404): check NODE_NAME (downward API spec.nodeName)",
            response.text[:300],
        )
    if response.status_code != 200:
        return _failed(node_name, f"HTTP {response.status_code}", response.text[:300])
    try:
        labels = json.loads(response.content)["metadata"].get("labels") or {}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        return _failed(node_name, "unexpected response", f"{type(exc).__name__}: {exc}")
    return from_labels(node_name, labels)


def _failed(node_name: str, reason: str, detail: str) -> NodeInfo:
    log.warning(
        f"node info of {node_name} not read: {reason}; AgentUp is published with "
        "CapacityType=unknown",
        extra={"fields": {"node": node_name, "detail": detail}},
    )
    return NodeInfo(name=node_name)


class AgentUpBeat:
    """Emits ``AgentUp=1`` (dimension CapacityType; properties NodeName, InstanceType) at
    ``start()`` and then every ``interval_seconds`` until ``stop()``, with ``AgentReady=1`` in the
    same document while ``ready()`` holds; ``beat_now()`` (the server became ready) emits at
    once and starts the interval again from there."""

    def __init__(
        self,
        metrics: Metrics,
        node: NodeInfo,
        interval_seconds: float = AGENT_UP_SECONDS,
        ready: Callable[[], bool] = lambda: False,
    ) -> None:
        self.metrics = metrics
        self.node = node
        self.ready = ready
        self.interval_seconds = interval_seconds
        self.beats = 0
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="agent-up", daemon=True)
            self._thread.start()

    def beat_now(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def beat(self) -> None:
        values = {"AgentUp": 1, **({"AgentReady": 1} if self.ready() else {})}
        self.metrics.emit(
            values,
            dimensions={"CapacityType": self.node.capacity_type},
            **self.node.properties(),
        )
        self.beats += 1

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.beat()
            except Exception:  # a sink failure must not end the heartbeat
                log.exception("AgentUp metric not emitted")
            self._wake.wait(self.interval_seconds)
            self._wake.clear()
