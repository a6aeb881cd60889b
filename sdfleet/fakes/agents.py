"""The real queue agent wired to a :class:`~sdfleet.fakes.fleet.Fleet`: in-process on a thread
(``AgentThread``) or as ``python -m sdfleet.agent`` (``subprocess_env``), and AWS clients that
fail on purpose (``failing``)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

from sdfleet.agent.config import load_config
from sdfleet.fakes.fleet import Fleet, client


class AgentThread:
    """An in-process agent (``sdfleet.agent.worker.Agent``) on a thread, wired to the fleet."""

    def __init__(
        self,
        fleet: Fleet,
        api_base_url: str,
        tracing: Any = None,
        *,
        wrap_s3: Callable[[Any], Any] | None = None,
        wrap_sns: Callable[[Any], Any] | None = None,
        pod_cost: Any = None,
        **overrides: str,
    ) -> None:
        """``wrap_s3``/``wrap_sns`` wrap the agent's clients (fault injection, see Flaky)."""
        from sdfleet.agent.__main__ import build_server
        from sdfleet.agent.metrics import Metrics
        from sdfleet.agent.worker import Agent

        self.env = fleet.agent_env(api_base_url, **overrides)
        self.config = load_config(self.env)
        s3 = client("s3", fleet.endpoint)
        self.server = build_server(self.config, s3)
        self.agent = Agent(
            self.config,
            sqs=client("sqs", fleet.endpoint),
            heartbeat_sqs=client("sqs", fleet.endpoint),
            s3=wrap_s3(s3) if wrap_s3 else s3,
            sns=wrap_sns(client("sns", fleet.endpoint))
            if wrap_sns
            else client("sns", fleet.endpoint),
            server=self.server,
            pod_cost=pod_cost,
            metrics=Metrics(self.config.runtime_name, enabled=False),
            tracing=tracing,
        )
        self.exit_code: int | None = None
        self._thread = threading.Thread(target=self._run, name="agent-under-test", daemon=True)

    def _run(self) -> None:
        self.exit_code = self.agent.run()

    def start(self) -> AgentThread:
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> int | None:
        if not self.agent.shutdown.stopping.is_set():
            self.agent.request_stop()
        self._thread.join(timeout)
        self.server.close()
        if self._thread.is_alive():
            raise TimeoutError("agent did not stop")
        return self.exit_code

    def wait_exit(self, timeout: float) -> int | None:
        self._thread.join(timeout)
        return self.exit_code

    def __enter__(self) -> AgentThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Flaky:
    """A client wrapper whose ``method`` raises for its first ``failures`` calls (a transient
    S3/SNS outage), then passes through; every other method passes through untouched."""

    def __init__(self, inner: Any, method: str, failures: int) -> None:
        self._inner = inner
        self._method = method
        self._left = failures
        self._lock = threading.Lock()
        self.failed = 0
        self.passed = 0

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._inner, name)
        if name != self._method:
            return target

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                fail = self._left > 0
                if fail:
                    self._left -= 1
                    self.failed += 1
            if fail:
                from botocore.exceptions import EndpointConnectionError

                raise EndpointConnectionError(endpoint_url="https://injected-outage.invalid")
            result = target(*args, **kwargs)
            with self._lock:
                self.passed += 1
            return result

        return call


def failing(method: str, failures: int) -> tuple[list[Flaky], Callable[[Any], Flaky]]:
    """A ``wrap_s3``/``wrap_sns`` for :class:`AgentThread` whose client's ``method`` fails
    ``failures`` times, and the list that receives the :class:`Flaky` it made."""
    made: list[Flaky] = []

    def wrap(client: Any) -> Flaky:
        made.append(Flaky(client, method, failures))
        return made[-1]

    return made, wrap


def subprocess_env(env: dict[str, str]) -> dict[str, str]:
    """Environment for ``python -m sdfleet.agent`` in a subprocess (PATH etc. kept)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return {**base, **env, "PYTHONUNBUFFERED": "1"}
