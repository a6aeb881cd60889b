from __future__ import annotations

from typing import Any

import pytest

from sdfleet.components.builders import keda
from tests.k8s_validation import assert_valid

K8S = "1.33"
QUEUE_URL = "https://sqs.us-west-2.amazonaws.com/111122223333/sdfleet-sd15"


def _scaled_object(**overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "name": "sd15",
        "namespace": "sd15",
        "deployment_name": "sd15-runtime",
        "queue_url": QUEUE_URL,
        "region": "us-west-2",
        "trigger_authentication_name": "sqs-keda-identity",
        "max_replicas": 8,
    }
    args.update(overrides)
    return keda.scaled_object(**args)


def test_trigger_authentication_uses_operator_identity() -> None:
    ta = keda.trigger_authentication("sqs-keda-identity", "sd15")
    assert ta["spec"] == {"podIdentity": {"provider": "aws"}}
    assert ta["metadata"] == {"name": "sqs-keda-identity", "namespace": "sd15"}
    assert_valid(ta, K8S)


def test_scaled_object_shape() -> None:
    so = _scaled_object(
        queue_length=3,
        activation_queue_length=1,
        polling_interval=5,
        cooldown_period=120,
        scale_down_pods_per_period=2,
        scale_down_period_seconds=30,
    )
    spec = so["spec"]
    assert spec["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "sd15-runtime",
    }
    assert spec["minReplicaCount"] == 0
    assert spec["maxReplicaCount"] == 8
    assert spec["pollingInterval"] == 5
    assert spec["cooldownPeriod"] == 120
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "aws-sqs-queue"
    assert trigger["authenticationRef"] == {
        "name": "sqs-keda-identity",
        "kind": "TriggerAuthentication",
    }
    assert trigger["metadata"] == {
        "queueURL": QUEUE_URL,
        "queueLength": "3",
        "activationQueueLength": "1",
        "scaleOnInFlight": "true",
        "awsRegion": "us-west-2",
    }
    behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleDown"]["policies"] == [{"type": "Pods", "value": 2, "periodSeconds": 30}]
    assert_valid(so, K8S)


def test_trigger_metadata_values_are_all_strings() -> None:
    metadata = _scaled_object()["spec"]["triggers"][0]["metadata"]
    assert metadata and all(isinstance(v, str) for v in metadata.values())
    assert metadata["queueLength"] == str(keda.DEFAULT_QUEUE_LENGTH)
    assert metadata["activationQueueLength"] == "0"


def test_validator_rejects_non_string_metadata() -> None:
    so = _scaled_object()
    so["spec"]["triggers"][0]["metadata"]["queueLength"] = 5
    from tests.k8s_validation import validate_crd

    errors = validate_crd(so)
    assert any("queueLength" in e and "string" in e for e in errors), errors


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"queue_url": "sdfleet-sd15"}, "queueURL"),
        ({"region": ""}, "awsRegion"),
        ({"queue_length": 0}, "queueLength"),
        ({"activation_queue_length": -1}, "activationQueueLength"),
        ({"max_replicas": 0}, "maxReplicas"),
        ({"min_replicas": 9}, "minReplicas"),
        ({"polling_interval": 0}, "pollingInterval"),
        ({"scale_down_pods_per_period": 0}, "scaleDownPodsPerPeriod"),
        ({"queue_length": True}, "queueLength"),
    ],
)
def test_scaled_object_rejects_bad_input(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=rf"^{field}: got .*allowed"):
        _scaled_object(**overrides)


def test_keda_values() -> None:
    values = keda.keda_values(
        region="us-west-2",
        node_selector={"sdfleet.io/pool": "system"},
        tolerations=[{"key": "CriticalAddonsOnly", "operator": "Exists"}],
    )
    assert values["serviceAccount"]["operator"] == {"create": True, "name": "keda-operator"}
    assert values["env"] == [{"name": "AWS_REGION", "value": "us-west-2"}]
    assert values["nodeSelector"] == {"sdfleet.io/pool": "system"}
    assert values["tolerations"] == [{"key": "CriticalAddonsOnly", "operator": "Exists"}]
    assert "podIdentity" not in values
    assert "nodeSelector" not in keda.keda_values(region="us-west-2")
