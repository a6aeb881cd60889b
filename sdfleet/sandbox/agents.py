"""One queue agent per runtime, as ``python -m sdfleet.agent`` subprocesses with the pod's
environment: written by the workload builder's :class:`AgentEnv` from the runtime's config, as
``runtime_manifests`` writes it, plus what the cluster would supply (the pod's name, the AWS
endpoint and credentials) and a short long-poll so Ctrl-C ends an idle agent within 2 s. An agent that exits before it
is stopped is started again, as Kubernetes restarts a container."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from sdfleet.agent.contract import Limits
from sdfleet.components.builders.workload_agent_env import AgentEnv
from sdfleet.components.config_model import StackConfig
from sdfleet.components.config_runtime import RuntimeConfig
from sdfleet.fakes._common import free_port
from sdfleet.fakes.agents import subprocess_env
from sdfleet.fakes.fleet import FAKE_CREDENTIALS, REGION
from sdfleet.sandbox.plane import Plane

# Idle agents notice a stop after at most one long poll.
SANDBOX_RECEIVE_WAIT_SECONDS = "2"
MAX_RESTARTS = 5
# Metrics reach the sandbox's log groups within seconds of a task.
SANDBOX_METRICS_FLUSH_SECONDS = "2"
# `python -m sdfleet.agent`, after asking Linux to SIGTERM the agent (a drain) if the sandbox
# dies, even by SIGKILL: no agent is left polling a moto server that is gone. Set in the child
# itself (prctl PR_SET_PDEATHSIG = 1), not in a preexec_fn, which is unsafe with threads.
_AGENT_CHILD = """
import ctypes, os, runpy, signal, sys
if sys.platform.startswith("linux"):
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)
    if os.getppid() != int(sys.argv[1]):
        sys.exit("sdfleet sandbox: the sandbox is gone")
sys.argv = ["sdfleet.agent"]
runpy.run_module("sdfleet.agent", run_name="__main__", alter_sys=True)
"""


def agent_env(
    config: StackConfig, rt: RuntimeConfig, plane: Plane, api_base_url: str, health_port: int
) -> dict[str, str]:
    """The runtime's agent environment, as its pod gets it, pointed at the sandbox."""
    extra = {
        "RECEIVE_WAIT_SECONDS": SANDBOX_RECEIVE_WAIT_SECONDS,
        "METRICS_FLUSH_SECONDS": SANDBOX_METRICS_FLUSH_SECONDS,
        **rt.agent.extra_env,
        # The sandbox's loopback callbacks (sdfleet.sandbox.webhooks); never in a pod.
        "SDFLEET_SANDBOX_LOOPBACK_CALLBACKS": "true",
    }
    env = AgentEnv(
        sqs_queue_url=plane.queues[rt.name].queue_url,
        sns_topic_arn=plane.output_topic_arn,
        s3_bucket=plane.bucket,
        runtime_type=rt.type,
        runtime_name=rt.name,
        aws_region=REGION,
        job_timeout_seconds=rt.job_timeout_seconds,
        drain_seconds=rt.drain_seconds,
        dynamic_sd_model=rt.dynamic_model,
        model_filename=rt.model_filename,
        api_base_url=api_base_url,
        health_port=health_port,
        task_limits=(rt.limits.to_contract() or Limits()).to_json(),
        input_s3_buckets=tuple(config.inputs.s3_buckets),
        pod_deletion_cost=False,  # no Kubernetes API here
        task_table_name=plane.table_name,
        task_ttl_seconds=config.tasks.ttl_days * 86400,
        metrics_log_group=plane.metrics_log_groups[rt.name],
        extra=extra,
    )
    values = {e["name"]: e["value"] for e in env.to_env() if "value" in e}
    # What the downward API and IRSA give the pod.
    values.update(POD_NAME=f"sandbox-{rt.name}", POD_NAMESPACE="sandbox")
    values.update(AWS_ENDPOINT_URL=plane.endpoint, **FAKE_CREDENTIALS)
    return values


class AgentProcess:
    """A runtime's agent process, restarted (on a fresh health port) when it exits before
    :meth:`stop`, as Kubernetes restarts a pod's container; at most ``MAX_RESTARTS`` times."""

    def __init__(self, runtime: str, env_for_port: Callable[[int], dict[str, str]], out: Any):
        self.runtime = runtime
        self.restarts = 0
        self._env_for_port = env_for_port
        self._out = out
        self._stopping = False
        self._lock = threading.Lock()
        self.proc, self.health_port = self._spawn()
        self._watcher = threading.Thread(
            target=self._watch, name=f"sandbox-agent-{runtime}", daemon=True
        )
        self._watcher.start()

    def _spawn(self) -> tuple[subprocess.Popen[bytes], int]:
        port = free_port()
        # Its own process group: a terminal's Ctrl-C reaches the sandbox only, which then
        # stops each agent with one SIGTERM (a second one makes an agent skip its drain).
        proc = subprocess.Popen(
            [sys.executable, "-c", _AGENT_CHILD, str(os.getpid())],
            env=subprocess_env(self._env_for_port(port)),
            stdout=self._out,
            stderr=self._out,
            process_group=0,
        )
        return proc, port

    def _watch(self) -> None:
        while True:
            code = self.proc.wait()  # an event: the child's exit
            with self._lock:
                if self._stopping:
                    return
                if self.restarts >= MAX_RESTARTS:
                    _say(f"the {self.runtime} agent exited ({code}) again; not restarting it")
                    return
                self.restarts += 1
                _say(f"the {self.runtime} agent exited ({code}); restarting it")
                self.proc, self.health_port = self._spawn()

    def wait_ready(self, deadline: float) -> None:
        """Until the agent's ``/readyz`` answers 200 (it polls its queue and its server is
        up). Another process gives no event to wait on: poll the probe every 50 ms."""
        while True:
            proc, url = self.proc, f"http://127.0.0.1:{self.health_port}/readyz"
            try:
                with urllib.request.urlopen(url, timeout=1) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if proc.poll() is not None and proc is self.proc and not self._watcher.is_alive():
                raise RuntimeError(f"the {self.runtime} agent exited ({proc.returncode})")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the {self.runtime} agent was not ready in time")
            time.sleep(0.05)

    def request_stop(self) -> None:
        """SIGTERM, the pod's stop: the agent drains. No restart after this."""
        with self._lock:
            if self._stopping:  # once: a second signal makes the agent skip its drain
                return
            self._stopping = True
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def stop(self, timeout: float) -> int | None:
        """:meth:`request_stop`, then SIGKILL after ``timeout``."""
        self.request_stop()
        proc = self.proc
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait(5)
        self._watcher.join(5)
        return code


def _say(message: str) -> None:
    print(f"sdfleet sandbox: {message}", file=sys.stderr, flush=True)


def stop_all(agents: list[AgentProcess], timeout: float) -> None:
    """Stop agents together: every agent drains at once, not one after another."""
    for agent in agents:
        agent.request_stop()
    for agent in agents:
        agent.stop(timeout)


def start_agent(
    config: StackConfig, rt: RuntimeConfig, plane: Plane, api_base_url: str, log: Any = None
) -> AgentProcess:
    """Start the runtime's agent; its logs go to ``log`` (default: this process's stderr)."""

    def env_for_port(port: int) -> dict[str, str]:
        return agent_env(config, rt, plane, api_base_url, port)

    return AgentProcess(rt.name, env_for_port, log if log is not None else sys.stderr)
