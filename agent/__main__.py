"""``python -m sdfleet.agent``: the queue agent entry point."""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sdfleet.agent.config import Config, ConfigError, load_config

log = logging.getLogger("agent")


def build_server(config: Config, s3: Any, stop: Any = None) -> Any:
    from sdfleet.agent.inputs import InputFetcher
    from sdfleet.agent.policies import RetryPolicy

    fetcher = InputFetcher(
        s3=s3,
        max_bytes=config.max_input_bytes,
        allowed_hosts=config.allowed_input_hosts,
        connect_timeout=config.input_connect_timeout,
        read_timeout=config.input_read_timeout,
        fetch_timeout_seconds=config.input_fetch_timeout,
        task_timeout_seconds=config.input_task_timeout,
        max_total_bytes=config.input_max_total_bytes,
        allowed_s3_buckets=config.input_s3_buckets,
    )
    retry = RetryPolicy(config.server_retries, config.retry_base_seconds, config.retry_max_seconds)
    if config.runtime_type == "sdwebui":
        from sdfleet.agent.servers.sdwebui import SdWebUIServer

        return SdWebUIServer(
            config.api_base_url, fetcher, dynamic_model=config.dynamic_sd_model, retry=retry
        )
    from sdfleet.agent.servers.comfyui import ComfyUIServer

    return ComfyUIServer(
        config.api_base_url, fetcher, retry=retry, queue_ahead=config.comfyui_queue_ahead
    )


@dataclass(frozen=True)
class Clients:
    sqs: Any  # receive (long polls), delete, release
    heartbeat_sqs: Any  # ChangeMessageVisibilityBatch only
    s3: Any
    sns: Any


def aws_clients(config: Config, **client_args: Any) -> Clients:
    """The agent's AWS clients. The heartbeat gets an SQS client of its own (its own
    connection pool) with short timeouts and no SDK retries: a slow call fails fast and the
    heartbeat retries it within the visibility window, instead of one call outliving it."""
    import boto3
    from botocore.config import Config as BotoConfig

    boto_config = BotoConfig(
        retries={"mode": "standard", "max_attempts": 5},
        # Long polls last up to 20 s; leave room above that.
        read_timeout=max(60, config.receive_wait_seconds + 30),
        max_pool_connections=16,
    )
    timeout = config.heartbeat_timeout_seconds
    heartbeat_config = BotoConfig(
        retries={"mode": "standard", "total_max_attempts": 1},
        connect_timeout=timeout,
        read_timeout=timeout,
        max_pool_connections=2,
    )
    session = boto3.session.Session(region_name=config.region)
    return Clients(
        sqs=session.client("sqs", config=boto_config, **client_args),
        heartbeat_sqs=session.client("sqs", config=heartbeat_config, **client_args),
        s3=session.client("s3", config=boto_config, **client_args),
        sns=session.client("sns", config=boto_config, **client_args),
    )


def pod_cost(config: Config, env: Mapping[str, str]) -> Any:
    """The pod-deletion-cost updater, or None (switched off, or outside a cluster)."""
    if not config.pod_deletion_cost:
        return None
    from sdfleet.agent.pod_cost import PodDeletionCost

    return PodDeletionCost.from_env(env)


def metrics_shipper(config: Config, env: Mapping[str, str], **client_args: Any) -> Any:
    """The CloudWatch Logs shipper of the EMF lines, or None (METRICS_LOG_GROUP unset: the
    lines go to stdout). One log stream per pod: POD_NAME, else the host name."""
    if config.metrics_log_group is None:
        return None
    import socket

    import boto3
    from botocore.config import Config as BotoConfig

    from sdfleet.agent.metrics_sink import LogShipper

    # Short timeouts and few SDK retries: the shipper keeps failed lines for its next flush,
    # and close() at shutdown must not wait long.
    boto_config = BotoConfig(
        retries={"mode": "standard", "max_attempts": 3},
        connect_timeout=5,
        read_timeout=10,
        max_pool_connections=2,
    )
    session = boto3.session.Session(region_name=config.region)
    client = session.client("logs", config=boto_config, **client_args)
    stream = config.pod_name or (env.get("HOSTNAME") or "").strip() or socket.gethostname()
    return LogShipper(
        client, config.metrics_log_group, stream, flush_seconds=config.metrics_flush_seconds
    )


def main(env: dict[str, str] | None = None) -> int:
    try:
        config = load_config(os.environ if env is None else env)
    except ConfigError as exc:
        print(f"agent: configuration error: {exc}", file=sys.stderr)
        return 2

    from sdfleet.agent.health import HealthServer
    from sdfleet.agent.logging_setup import setup_logging
    from sdfleet.agent.metrics import Metrics
    from sdfleet.agent.node_info import read_node_info
    from sdfleet.agent.tracing import Tracing
    from sdfleet.agent.worker import Agent

    setup_logging(config.log_level, runtime=config.runtime_name)
    # The GPU thread's hand-off to the next task must not wait the default 5 ms for the GIL
    # while the uploader thread signs and hashes S3 uploads.
    sys.setswitchinterval(0.001)
    environ = os.environ if env is None else env
    clients = aws_clients(config)
    server = build_server(config, clients.s3)
    shipper = metrics_shipper(config, environ)
    agent = Agent(
        config,
        sqs=clients.sqs,
        heartbeat_sqs=clients.heartbeat_sqs,
        s3=clients.s3,
        sns=clients.sns,
        server=server,
        pod_cost=pod_cost(config, environ),
        metrics=Metrics(config.runtime_name, sink=shipper.put if shipper else None),
        tracing=Tracing.setup(config.otlp_endpoint, config.service_name),
        node=read_node_info(environ, config.node_name),
    )

    def on_signal(signum: int, _frame: Any) -> None:
        agent.request_stop()

    # Restored on return, so an in-process caller (tests, an embedding) keeps its own.
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    health = None
    if config.health_port is not None:
        try:
            health = HealthServer(config.health_port, agent.live, agent.ready).start()
        except OSError as exc:
            print(
                f"agent: configuration error: HEALTH_PORT: {config.health_port} cannot be "
                f"bound ({exc.strerror}); choose a free port or 'off'",
                file=sys.stderr,
            )
            server.close()
            if shipper is not None:
                shipper.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            return 2
        log.info("health endpoints listening", extra={"fields": {"port": health.port}})
    try:
        return agent.run()
    finally:
        if health is not None:
            health.stop()
        server.close()
        if shipper is not None:
            shipper.close()  # last: after the final task metrics and AgentUp
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        logging.shutdown()


if __name__ == "__main__":
    sys.exit(main())
