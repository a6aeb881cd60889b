"""The queue agent's environment in the pod (:class:`AgentEnv`), written from the agent's own
settings table so the two sides cannot disagree."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from sdfleet.agent import settings as agent_settings
from sdfleet.components.builders.errors import fail
from sdfleet.components.builders.workload_checks import _check_int, _check_type

_TABLE_NAME = re.compile(r"[A-Za-z0-9_.-]{3,255}")
# CloudWatch Logs' log group name pattern (CreateLogStream's logGroupName).
_LOG_GROUP_NAME = re.compile(r"[.\-_/#A-Za-z0-9]{1,512}")
_OTLP_ENDPOINT = re.compile(r"https?://[^\s/]+(/\S*)?")
# The agent names its spans' service this, followed by its runtime's name.
OTEL_SERVICE_PREFIX = "sdfleet-agent-"
# The agent's bounds of TASK_TTL_SECONDS: a bad value fails the deploy, not the pod.
_TTL = agent_settings.BY_NAME["TASK_TTL_SECONDS"]
_TTL_BOUNDS = (int(_TTL.minimum or 1), int(_TTL.maximum) if _TTL.maximum else None)


@dataclass(frozen=True)
class AgentEnv:
    """The queue agent's environment, one field per variable. Names, defaults and the value
    format come from the agent's own settings table (``sdfleet.agent.settings``), so the pod's env and
    what the agent reads cannot drift apart."""

    sqs_queue_url: str
    sns_topic_arn: str
    s3_bucket: str
    runtime_type: str
    runtime_name: str
    aws_region: str
    job_timeout_seconds: int = int(agent_settings.default("JOB_TIMEOUT_SECONDS"))
    drain_seconds: int = int(agent_settings.default("DRAIN_SECONDS"))
    dynamic_sd_model: bool = agent_settings.default("DYNAMIC_SD_MODEL")
    model_filename: str | None = None
    api_base_url: str | None = None
    health_port: int = int(agent_settings.default("HEALTH_PORT"))
    # camelCase JSON of sdfleet.agent.contract.Limits (maxSteps, maxPixels, maxImages, maxInputs).
    task_limits: Mapping[str, int] | None = None
    input_s3_buckets: tuple[str, ...] = ()
    input_fetch_timeout_seconds: float = agent_settings.default("INPUT_FETCH_TIMEOUT_SECONDS")
    input_task_timeout_seconds: float = agent_settings.default("INPUT_TASK_TIMEOUT_SECONDS")
    input_max_total_bytes: int = agent_settings.default("INPUT_MAX_TOTAL_BYTES")
    pod_deletion_cost: bool = agent_settings.default("POD_DELETION_COST")
    # The task state table (None: the agent keeps no task state) and its records' TTL (None:
    # the agent's default, 7 days).
    task_table_name: str | None = None
    task_ttl_seconds: int | None = None
    # The log group the agent ships its EMF metrics to (None: EMF lines on stdout).
    metrics_log_group: str | None = None
    # The trace collector's OTLP/HTTP traces URL (None: tracing off).
    otlp_traces_endpoint: str | None = None
    extra: Mapping[str, str] = field(default_factory=dict)

    # The pod's own name and namespace and its node's name, from the downward API (the
    # agent reads its node's capacity type from the node's labels).
    FIELD_REFS: ClassVar[dict[str, str]] = {
        "POD_NAME": "metadata.name",
        "POD_NAMESPACE": "metadata.namespace",
        "NODE_NAME": "spec.nodeName",
    }

    def validate(self) -> None:
        _check_type(self.runtime_type)
        for name in ("sqs_queue_url", "sns_topic_arn", "s3_bucket", "runtime_name", "aws_region"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise fail(f"agent_env.{name}", value, "a non-empty string")
        _check_int("agent_env.job_timeout_seconds", self.job_timeout_seconds, 1)
        _check_int("agent_env.drain_seconds", self.drain_seconds, 0)
        _check_int("agent_env.health_port", self.health_port, 1, 65535)
        _check_int("agent_env.input_max_total_bytes", self.input_max_total_bytes, 1)
        for name in ("input_fetch_timeout_seconds", "input_task_timeout_seconds"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0.1:
                raise fail(f"agent_env.{name}", value, "a number of seconds >= 0.1")
        for bucket in self.input_s3_buckets:
            if not isinstance(bucket, str) or not bucket or "," in bucket:
                raise fail("agent_env.input_s3_buckets", bucket, "bucket names without commas")
        if self.task_table_name is not None and (
            not isinstance(self.task_table_name, str)
            or not _TABLE_NAME.fullmatch(self.task_table_name)
        ):
            raise fail(
                "agent_env.task_table_name",
                self.task_table_name,
                "a DynamoDB table name (3-255 characters of A-Z a-z 0-9 _ . -)",
            )
        if self.task_ttl_seconds is not None:
            _check_int("agent_env.task_ttl_seconds", self.task_ttl_seconds, *_TTL_BOUNDS)
        self._validate_telemetry()
        if self.task_limits is not None and not isinstance(self.task_limits, Mapping):
            raise fail("agent_env.task_limits", self.task_limits, "a mapping (Limits.to_json())")
        for key, value in self.extra.items():
            known = key in agent_settings.BY_NAME and key not in self.names()
            if not known or not isinstance(value, str):
                raise fail(
                    f"agent_env.extra.{key}",
                    value,
                    "a string value for an agent setting not already set by a field "
                    "(see agent/settings.py)",
                )

    def _validate_telemetry(self) -> None:
        group = self.metrics_log_group
        if group is not None and (
            not isinstance(group, str) or not _LOG_GROUP_NAME.fullmatch(group)
        ):
            raise fail(
                "agent_env.metrics_log_group",
                group,
                "a CloudWatch Logs log group name (1-512 of A-Z a-z 0-9 . - _ / #)",
            )
        endpoint = self.otlp_traces_endpoint
        if endpoint is not None and (
            not isinstance(endpoint, str) or not _OTLP_ENDPOINT.fullmatch(endpoint)
        ):
            raise fail(
                "agent_env.otlp_traces_endpoint",
                endpoint,
                "an http(s) URL such as http://otel-collector.ns.svc.cluster.local:4318/v1/traces",
            )

    @staticmethod
    def names() -> tuple[str, ...]:
        """Every variable the fields set (``extra`` may set the other agent settings)."""
        return (
            "SQS_QUEUE_URL",
            "SNS_TOPIC_ARN",
            "S3_BUCKET",
            "RUNTIME_TYPE",
            "RUNTIME_NAME",
            "API_BASE_URL",
            "JOB_TIMEOUT_SECONDS",
            "DRAIN_SECONDS",
            "DYNAMIC_SD_MODEL",
            "MODEL_FILENAME",
            "AWS_REGION",
            "HEALTH_PORT",
            "TASK_LIMITS",
            "INPUT_S3_BUCKETS",
            "INPUT_FETCH_TIMEOUT_SECONDS",
            "INPUT_TASK_TIMEOUT_SECONDS",
            "INPUT_MAX_TOTAL_BYTES",
            "POD_DELETION_COST",
            "TASK_TABLE_NAME",
            "TASK_TTL_SECONDS",
            "METRICS_LOG_GROUP",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "OTEL_SERVICE_NAME",
            *AgentEnv.FIELD_REFS,
        )

    def to_env(self, server_port: int = agent_settings.SERVER_PORT) -> list[dict[str, Any]]:
        """Kubernetes ``env`` entries (string values, or downward-API ``valueFrom``) in a
        stable order."""
        self.validate()
        fields: dict[str, Any] = {
            "SQS_QUEUE_URL": self.sqs_queue_url,
            "SNS_TOPIC_ARN": self.sns_topic_arn,
            "S3_BUCKET": self.s3_bucket,
            "RUNTIME_TYPE": self.runtime_type,
            "RUNTIME_NAME": self.runtime_name,
            "API_BASE_URL": self.api_base_url
            or agent_settings.default_api_base_url(self.runtime_type, server_port),
            "JOB_TIMEOUT_SECONDS": self.job_timeout_seconds,
            "DRAIN_SECONDS": self.drain_seconds,
            "DYNAMIC_SD_MODEL": self.dynamic_sd_model,
            "AWS_REGION": self.aws_region,
            "HEALTH_PORT": self.health_port,
            "MODEL_FILENAME": self.model_filename or None,
            "TASK_LIMITS": dict(self.task_limits) if self.task_limits is not None else None,
            "INPUT_S3_BUCKETS": tuple(self.input_s3_buckets) or None,
            "INPUT_FETCH_TIMEOUT_SECONDS": self.input_fetch_timeout_seconds,
            "INPUT_TASK_TIMEOUT_SECONDS": self.input_task_timeout_seconds,
            "INPUT_MAX_TOTAL_BYTES": self.input_max_total_bytes,
            "POD_DELETION_COST": self.pod_deletion_cost,
            "TASK_TABLE_NAME": self.task_table_name,
            # The TTL matters only with a table; unset, the agent's default applies.
            "TASK_TTL_SECONDS": self.task_ttl_seconds if self.task_table_name else None,
            "METRICS_LOG_GROUP": self.metrics_log_group,
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": self.otlp_traces_endpoint,
            "OTEL_SERVICE_NAME": f"{OTEL_SERVICE_PREFIX}{self.runtime_name}",
        }
        entries: list[dict[str, Any]] = [
            {"name": name, "value": agent_settings.to_env_value(name, value)}
            for name, value in fields.items()
            if value is not None
        ]
        entries += [
            {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}
            for name, path in self.FIELD_REFS.items()
        ]
        entries += [{"name": k, "value": v} for k, v in self.extra.items()]
        return entries
