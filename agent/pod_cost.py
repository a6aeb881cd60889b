"""Keeps this pod's ``controller.kubernetes.io/pod-deletion-cost`` annotation current.

On scale-in the ReplicaSet controller ranks its pods and deletes the first ones: unscheduled
before scheduled, pending before running, not-ready before ready, then the **lower deletion
cost first**, then (among equal costs) pods doubled up on a node, the more recently ready, the
more restarted and the newer. So among ready pods, the cost decides. The agent writes:

- ``BUSY_COST`` (1000) while it holds a task, so a busy pod goes last;
- ``IDLE_COST`` (-1000) when it holds none. Below a pod without the annotation (cost 0): a pod
  whose agent has not reported yet, or whose patch failed, may be busy, so a pod known to be
  idle is removed before it.

``busy()`` and ``idle()`` never block: they set the desired state, and a background thread
applies only the latest one with a JSON merge patch (retrying with backoff). Going idle waits
``idle_delay_seconds`` first, so back-to-back tasks do not patch the pod twice per task; going
busy is applied at once. The service-account token is read fresh for every request (projected
tokens rotate) and TLS is verified against the cluster CA.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from sdfleet.agent.kube_api import (
    CA_PATH,
    NAMESPACE_PATH,
    REQUEST_ERRORS,
    TOKEN_PATH,
    KubeApi,
    api_url_from_env,
)

log = logging.getLogger("agent.pod_cost")

ANNOTATION = "controller.kubernetes.io/pod-deletion-cost"
BUSY_COST = 1000
IDLE_COST = -1000


def patch_body(cost: int) -> dict[str, object]:
    """The merge patch that sets the annotation (its value must be a string)."""
    return {"metadata": {"annotations": {ANNOTATION: str(cost)}}}


class PodDeletionCost:
    def __init__(
        self,
        api_url: str,
        namespace: str,
        pod_name: str,
        token_path: str = TOKEN_PATH,
        ca_path: str = CA_PATH,
        transport: httpx.BaseTransport | None = None,
        *,
        busy_cost: int = BUSY_COST,
        idle_cost: int = IDLE_COST,
        idle_delay_seconds: float = 2.0,
        retry_base_seconds: float = 1.0,
        retry_max_seconds: float = 60.0,
        timeout_seconds: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api = KubeApi(api_url, token_path, ca_path, transport, timeout_seconds)
        self.path = (
            f"/api/v1/namespaces/{quote(namespace, safe='')}/pods/{quote(pod_name, safe='')}"
        )
        self.url = self.api.url(self.path)
        self.pod = f"{namespace}/{pod_name}"
        self.busy_cost = busy_cost
        self.idle_cost = idle_cost
        self.idle_delay_seconds = idle_delay_seconds
        self.retry_base_seconds = retry_base_seconds
        self.retry_max_seconds = retry_max_seconds
        self.clock = clock
        self.applied: int | None = None  # the cost last written successfully
        self.patches = 0  # requests sent (for metrics and tests)
        self._desired: int | None = None
        self._due = 0.0  # when the desired state may be applied
        self._stopping = False
        self._last_problem: str | None = None
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="pod-deletion-cost", daemon=True)
        self._thread.start()

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str],
        *,
        token_path: str = TOKEN_PATH,
        ca_path: str = CA_PATH,
        namespace_path: str = NAMESPACE_PATH,
        **kwargs: Any,
    ) -> PodDeletionCost | None:
        """Built from the in-cluster environment; None (logged once) outside a cluster."""
        api_url = api_url_from_env(env)
        pod = (env.get("POD_NAME") or "").strip()
        namespace = (env.get("POD_NAMESPACE") or "").strip()
        if not namespace and os.path.isfile(namespace_path):
            namespace = Path(namespace_path).read_text().strip()
        missing = [
            name
            for name, ok in (
                ("KUBERNETES_SERVICE_HOST", api_url),
                ("POD_NAME", pod),
                ("POD_NAMESPACE", namespace),
                (f"service-account token {token_path}", os.path.isfile(token_path)),
            )
            if not ok
        ]
        if missing or api_url is None:
            log.info(
                "pod-deletion-cost not kept: not running in a Kubernetes pod",
                extra={"fields": {"missing": missing}},
            )
            return None
        return cls(api_url, namespace, pod, token_path, ca_path, **kwargs)

    # -- the caller's side: never blocks ------------------------------------------------------
    def busy(self) -> None:
        self._want(self.busy_cost, delay=0.0)

    def idle(self) -> None:
        self._want(self.idle_cost, delay=self.idle_delay_seconds)

    def _want(self, cost: int, delay: float) -> None:
        with self._cond:
            if cost != self._desired:
                self._desired = cost
                self._due = self.clock() + delay
                self._cond.notify_all()

    def flush(self, timeout: float) -> bool:
        """Wait until the desired cost is applied (ignoring the idle delay); True if it is."""
        end = self.clock() + timeout
        with self._cond:
            self._due = min(self._due, self.clock())
            self._cond.notify_all()
            while self.applied != self._desired and not self._stopping:
                left = end - self.clock()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return self.applied == self._desired

    def close(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout)

    # -- the background thread ----------------------------------------------------------------
    def _next(self) -> int | None:
        """Block until a new cost is due; None when stopping."""
        with self._cond:
            while not self._stopping:
                if self._desired is not None and self._desired != self.applied:
                    wait = self._due - self.clock()
                    if wait <= 0:
                        return self._desired
                    self._cond.wait(wait)
                else:
                    self._cond.wait()
            return None

    def _run(self) -> None:
        failures = 0
        while (cost := self._next()) is not None:
            if self._patch(cost):
                failures = 0
                with self._cond:
                    self.applied = cost
                    self._cond.notify_all()
                continue
            failures += 1
            delay = min(self.retry_max_seconds, self.retry_base_seconds * 2 ** (failures - 1))
            with self._cond:
                self._due = max(self._due, self.clock() + delay)

    def _patch(self, cost: int) -> bool:
        self.patches += 1
        try:
            response = self.api.request(
                "PATCH",
                self.path,
                content=json.dumps(patch_body(cost)).encode(),
                content_type="application/merge-patch+json",
            )
        except REQUEST_ERRORS as exc:
            self._problem("request", f"{type(exc).__name__}: {exc}")
            return False
        if response.status_code == 200:
            if self._last_problem is not None:
                log.info("pod-deletion-cost patched again", extra={"fields": {"pod": self.pod}})
            self._last_problem = None
            log.debug("pod-deletion-cost set", extra={"fields": {"pod": self.pod, "cost": cost}})
            return True
        self._problem(str(response.status_code), response.text[:300])
        return False

    def _problem(self, kind: str, text: str) -> None:
        """Log a failure once per kind of failure (a retry loop must not flood the log)."""
        if kind == self._last_problem:
            return
        self._last_problem = kind
        fields = {"pod": self.pod, "status": kind, "response": text}
        if kind == "404":
            log.error(
                "pod-deletion-cost: pod not found (HTTP 404); check POD_NAME and POD_NAMESPACE "
                "(downward API). Retrying with backoff.",
                extra={"fields": fields},
            )
        elif kind == "403":
            log.error(
                "pod-deletion-cost: forbidden (HTTP 403). The pod's service account needs RBAC "
                "to patch pods in its namespace (verb patch on pods); until then scale-in may "
                "remove a busy pod. Retrying with backoff.",
                extra={"fields": fields},
            )
        else:
            log.warning(
                "pod-deletion-cost: patch failed; retrying with backoff", extra={"fields": fields}
            )
