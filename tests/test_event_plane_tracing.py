"""X-Ray on the event plane and Container Insights' log groups: both SNS topics actively
traced with the X-Ray resource policy SNS needs, and the addon's log groups created with the
stack's retention before the addon."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sdfleet.components.builders import fanout as fb
from sdfleet.components.builders import iam
from sdfleet.components.eks_cluster import (
    CONTAINER_INSIGHTS_LOG_GROUPS,
    container_insights_log_group,
)
from sdfleet.components.event_fanout import EventFanout, EventFanoutArgs
from sdfleet.mocking import ACCOUNT_ID, Recorder, run_program

CONFIG = {"aws:region": "us-west-2"}


def _fanout(**kwargs: Any) -> Recorder:
    return run_program(
        lambda: EventFanout("fan", EventFanoutArgs(["sd15", "flux"], **kwargs)),
        CONFIG,
        project="proj",
        stack="prod",
    )


def test_both_topics_are_actively_traced() -> None:
    graph = _fanout()
    topics = graph.of_type("aws:sns/topic:Topic")
    assert sorted(t.name for t in topics) == ["fan-input", "fan-output"]
    assert {t.inputs["tracingConfig"] for t in topics} == {"Active"}


def test_sns_may_put_the_topics_segments_in_this_account_only() -> None:
    graph = _fanout()
    (policy,) = graph.of_type("aws:xray/resourcePolicy:ResourcePolicy")
    assert policy.parent == "fan"
    assert policy.inputs["policyName"] == "sdfleet-proj-prod-fan-sns-tracing"
    arns = [graph.one("aws:sns/topic:Topic", n).state["arn"] for n in ("fan-input", "fan-output")]
    document = json.loads(policy.inputs["policyDocument"])
    assert document == iam.sns_tracing_policy(ACCOUNT_ID, arns)
    (statement,) = document["Statement"]
    assert statement["Principal"] == {"Service": "sns.amazonaws.com"}
    assert statement["Action"] == list(iam.SNS_TRACING_ACTIONS)
    assert statement["Condition"]["StringEquals"] == {"aws:SourceAccount": ACCOUNT_ID}
    assert statement["Condition"]["StringLike"] == {"aws:SourceArn": arns}
    assert set(policy.dependencies) >= {"fan-input", "fan-output"}


def test_tracing_off_leaves_topics_pass_through() -> None:
    graph = _fanout(tracing=False)
    assert all("tracingConfig" not in t.inputs for t in graph.of_type("aws:sns/topic:Topic"))
    assert graph.of_type("aws:xray/resourcePolicy:ResourcePolicy") == []
    # None means the default: on.
    assert len(_fanout(tracing=None).of_type("aws:xray/resourcePolicy:ResourcePolicy")) == 1


def test_policy_names_are_what_xray_accepts() -> None:
    assert fb.tracing_policy_name("p", "dev", "fanout") == "sdfleet-p-dev-fanout-sns-tracing"
    assert fb.tracing_policy_name("my proj", "a/b", "x") == "sdfleet-my-proj-a-b-x-sns-tracing"
    with pytest.raises(ValueError, match=r"^tracing policy name: got .*at most 128"):
        fb.tracing_policy_name("p" * 120, "s", "c")


def test_tracing_policy_json_is_the_iam_document() -> None:
    arn = f"arn:aws:sns:us-west-2:{ACCOUNT_ID}:t"
    assert json.loads(fb.tracing_policy_json(ACCOUNT_ID, [arn])) == iam.sns_tracing_policy(
        ACCOUNT_ID, [arn]
    )


# --- Container Insights log groups ---------------------------------------------------------


def _insights_groups(graph: Recorder) -> dict[str, Any]:
    return {
        r.inputs["name"]: r
        for r in graph.of_type("aws:cloudwatch/logGroup:LogGroup")
        if r.inputs.get("name", "").startswith("/aws/containerinsights/")
    }


def test_container_insights_log_groups_exist_with_retention_before_the_addon(
    dev_graph: Recorder, dev_config: dict[str, Any]
) -> None:
    (cluster,) = dev_graph.of_type("eks:index:Cluster")
    name = cluster.inputs["name"]
    groups = _insights_groups(dev_graph)
    assert sorted(groups) == [
        f"/aws/containerinsights/{name}/{g}"
        for g in ("application", "dataplane", "host", "performance")
    ]
    retention = dev_config["sdfleet:observability"]["logRetentionDays"]
    assert {g.inputs["retentionInDays"] for g in groups.values()} == {retention}
    (addon,) = [
        a
        for a in dev_graph.of_type("aws:eks/addon:Addon")
        if a.inputs["addonName"] == "amazon-cloudwatch-observability"
    ]
    assert {g.name for g in groups.values()} <= set(addon.dependencies)


def test_no_container_insights_no_log_groups(synth: Any, dev_config: dict[str, Any]) -> None:
    dev_config["sdfleet:observability"]["containerInsights"] = False
    graph = synth(dev_config)
    assert _insights_groups(graph) == {}
    addons = [a.inputs["addonName"] for a in graph.of_type("aws:eks/addon:Addon")]
    assert "amazon-cloudwatch-observability" not in addons


def test_log_group_names() -> None:
    assert [container_insights_log_group("c1", g) for g in CONTAINER_INSIGHTS_LOG_GROUPS] == [
        "/aws/containerinsights/c1/application",
        "/aws/containerinsights/c1/dataplane",
        "/aws/containerinsights/c1/host",
        "/aws/containerinsights/c1/performance",
    ]
    with pytest.raises(ValueError, match=r"^group: got 'audit'; allowed"):
        container_insights_log_group("c1", "audit")
