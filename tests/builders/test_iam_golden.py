"""Every policy document the builders make, rendered as the components render it
(``json.dumps``), pinned byte for byte: key order included, so a refactor of the builders
cannot change a deployed policy unnoticed.

The goldens were generated from the builders before they became one IAM package. Regenerate
only for a deliberate policy change: ``python -m tests.builders.test_iam_golden``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sdfleet.components.builders import fanout, iam, s3
from sdfleet.components.builders import observability as ob

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "iam_policies.json"

ACCOUNT = "111122223333"
REGION = "us-west-2"
CLUSTER = "sdfleet"
NODE_ROLE = f"arn:aws:iam::{ACCOUNT}:role/KarpenterNodeRole-sdfleet"
INT_QUEUE = f"arn:aws:sqs:{REGION}:{ACCOUNT}:sdfleet"
QUEUE = f"arn:aws:sqs:{REGION}:{ACCOUNT}:sd15"
QUEUE2 = f"arn:aws:sqs:{REGION}:{ACCOUNT}:comfy"
TOPIC = f"arn:aws:sns:{REGION}:{ACCOUNT}:input"
OUT_TOPIC = f"arn:aws:sns:{REGION}:{ACCOUNT}:output"
OUT_BUCKET = "arn:aws:s3:::sdfleet-outputs"
MODEL_BUCKET = "arn:aws:s3:::sdfleet-models"
KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
LOG_GROUP = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/task-api"

CN_NODE_ROLE = f"arn:aws-cn:iam::{ACCOUNT}:role/node"
CN_QUEUE = f"arn:aws-cn:sqs:cn-north-1:{ACCOUNT}:sdfleet"

CASES: dict[str, Callable[[], Any]] = {
    "karpenter_controller": lambda: iam.karpenter_controller_policies(
        cluster_name=CLUSTER,
        region=REGION,
        account_id=ACCOUNT,
        node_role_arn=NODE_ROLE,
        interruption_queue_arn=INT_QUEUE,
    ),
    "karpenter_controller_cn_zonal_shift": lambda: iam.karpenter_controller_policies(
        cluster_name="gpu",
        region="cn-north-1",
        account_id=ACCOUNT,
        node_role_arn=CN_NODE_ROLE,
        interruption_queue_arn=CN_QUEUE,
        partition="aws-cn",
        enable_zonal_shift=True,
    ),
    "node_role_managed_policy_arns": lambda: iam.node_role_managed_policy_arns(),
    "node_role_managed_policy_arns_cn": lambda: iam.node_role_managed_policy_arns("aws-cn"),
    "ec2_trust": lambda: iam.ec2_trust_policy(),
    "ec2_trust_cn": lambda: iam.ec2_trust_policy("amazonaws.com.cn"),
    "pod_identity_trust": lambda: iam.pod_identity_trust_policy(),
    "pod_identity_trust_pinned": lambda: iam.pod_identity_trust_policy(ACCOUNT),
    "service_trust": lambda: iam.service_trust_policy("lambda.amazonaws.com"),
    "service_trust_pinned": lambda: iam.service_trust_policy("apigateway.amazonaws.com", ACCOUNT),
    "task_api_lambda": lambda: iam.task_api_lambda_policy(
        input_topic_arn=TOPIC, output_bucket_arn=OUT_BUCKET, log_group_arn=LOG_GROUP
    ),
    "keda_operator": lambda: iam.keda_operator_policy([QUEUE]),
    "keda_operator_two_queues": lambda: iam.keda_operator_policy([QUEUE, QUEUE2]),
    "model_read_statements": lambda: iam.model_read_statements(MODEL_BUCKET),
    "model_read_statements_prefix": lambda: iam.model_read_statements(
        MODEL_BUCKET, "sd15/", sid_prefix="Sd15"
    ),
    "mountpoint_driver": lambda: iam.mountpoint_driver_policy(MODEL_BUCKET),
    "mountpoint_driver_prefix": lambda: iam.mountpoint_driver_policy(MODEL_BUCKET, "sd15/"),
    "runtime_pod": lambda: iam.runtime_pod_policy(
        queue_arn=QUEUE, output_bucket_arn=OUT_BUCKET, output_topic_arn=OUT_TOPIC
    ),
    "runtime_pod_inputs_keys": lambda: iam.runtime_pod_policy(
        queue_arn=QUEUE,
        output_bucket_arn=OUT_BUCKET,
        output_topic_arn=OUT_TOPIC,
        input_s3_buckets=["inputs", "shared.bucket/team-a/"],
        kms_key_arns=[KEY],
    ),
    "interruption_queue": lambda: iam.interruption_queue_policy(INT_QUEUE),
    "interruption_event_patterns": lambda: iam.interruption_event_patterns(),
    # Resource policies of the other builders, pinned here too.
    "tls_only_bucket": lambda: s3.tls_only_bucket_policy(OUT_BUCKET),
    "output_writer_statements": lambda: s3.output_writer_statements(OUT_BUCKET),
    "runtime_queue": lambda: fanout.queue_policy(QUEUE, TOPIC),
    "alarm_topic_key": lambda: ob.alarm_topic_key_policy(ACCOUNT),
    "alarm_topic_key_cn": lambda: ob.alarm_topic_key_policy(ACCOUNT, "aws-cn"),
}


def _rendered() -> dict[str, Any]:
    return {name: build() for name, build in CASES.items()}


@pytest.fixture(scope="module")
def golden() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(GOLDEN.read_text())
    return data


def test_every_case_has_a_golden(golden: dict[str, Any]) -> None:
    assert set(golden) == set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_renders_byte_identical(name: str, golden: dict[str, Any]) -> None:
    # json.loads keeps key order, so equal dumps means the same bytes the components deploy.
    assert json.dumps(CASES[name]()) == json.dumps(golden[name])


if __name__ == "__main__":
    GOLDEN.write_text(json.dumps(_rendered(), indent=2) + "\n")
