"""The runtime pods and the task table: the agent's env names the table and its TTL, the pods'
role may update and read that table only, and a runtime without a table is as before."""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pytest

from sdfleet.agent import settings
from sdfleet.agent.config import load_config
from sdfleet.components.builders import workload as wl
from sdfleet.components.builders.runtime_manifests import runtime_manifests
from sdfleet.components.builders.runtime_plan import pod_policy
from sdfleet.components.sd_runtime import SdRuntime
from sdfleet.components.sd_runtime_plan import (
    TASK_TABLE_PLACEHOLDERS,
    known_task_table,
    task_table_wiring,
)
from sdfleet.mocking import run_program
from tests.builders.test_runtime_manifests import WIRED_VALUES, args, env_of
from tests.test_sd_runtime import KUBECONFIG, REGION, make_args, on_cluster

TABLE = "sdfleet-dev-tasks"
TABLE_ARN = f"arn:aws:dynamodb:eu-west-1:111122223333:table/{TABLE}"
TASK_TABLE = {"task_table_name": TABLE, "task_table_arn": TABLE_ARN}


def agent_env(**over: Any) -> wl.AgentEnv:
    return wl.AgentEnv(
        sqs_queue_url=WIRED_VALUES["queue_url"],
        sns_topic_arn=WIRED_VALUES["output_topic_arn"],
        s3_bucket=WIRED_VALUES["output_bucket_name"],
        runtime_type="sdwebui",
        runtime_name="sd15",
        aws_region="eu-west-1",
        **over,
    )


def plain_env(env: wl.AgentEnv) -> dict[str, str]:
    return {e["name"]: e["value"] for e in env.to_env() if "value" in e}


# -- the agent's env -----------------------------------------------------------------------------


def test_the_env_names_the_table_and_ttl_and_the_agent_reads_them_back() -> None:
    env = plain_env(agent_env(task_table_name=TABLE, task_ttl_seconds=30 * 86400))
    assert (env["TASK_TABLE_NAME"], env["TASK_TTL_SECONDS"]) == (TABLE, "2592000")
    config = load_config(env)
    assert (config.task_table_name, config.task_ttl_seconds) == (TABLE, 2592000)


def test_without_a_table_the_env_has_neither_and_the_agent_keeps_no_state() -> None:
    for env in (plain_env(agent_env()), plain_env(agent_env(task_ttl_seconds=3600))):
        assert not {"TASK_TABLE_NAME", "TASK_TTL_SECONDS"} & set(env)
        config = load_config(env)
        assert config.task_table_name is None
        assert config.task_ttl_seconds == settings.default("TASK_TTL_SECONDS") == 604800


def test_a_table_without_ttl_leaves_the_agent_default() -> None:
    env = plain_env(agent_env(task_table_name=TABLE))
    assert env["TASK_TABLE_NAME"] == TABLE and "TASK_TTL_SECONDS" not in env


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"task_table_name": "ab"}, "agent_env.task_table_name"),
        ({"task_table_name": "tasks/x"}, "agent_env.task_table_name"),
        ({"task_table_name": TABLE, "task_ttl_seconds": 59}, "agent_env.task_ttl_seconds"),
        ({"task_table_name": TABLE, "task_ttl_seconds": "3600"}, "agent_env.task_ttl_seconds"),
        ({"extra": {"TASK_TABLE_NAME": TABLE}}, "agent_env.extra.TASK_TABLE_NAME"),
    ],
)
def test_bad_table_settings_fail_the_build(over: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=f"^{field}:"):
        agent_env(**over).to_env()


def test_the_agent_refuses_a_bad_table_name_or_ttl() -> None:
    base = plain_env(agent_env())
    with pytest.raises(settings.ConfigError, match="TASK_TABLE_NAME"):
        load_config({**base, "TASK_TABLE_NAME": "arn:aws:dynamodb:x"})
    with pytest.raises(settings.ConfigError, match="TASK_TTL_SECONDS"):
        load_config({**base, "TASK_TABLE_NAME": TABLE, "TASK_TTL_SECONDS": "0"})


# -- the runtime's manifests and policy ------------------------------------------------------------


def test_the_deployment_env_carries_the_wired_table() -> None:
    wired = {**WIRED_VALUES, **TASK_TABLE}
    m = runtime_manifests(args(**TASK_TABLE, task_ttl_seconds=86400), wired)
    env = env_of(m["deployment"])
    assert (env["TASK_TABLE_NAME"], env["TASK_TTL_SECONDS"]) == (TABLE, "86400")
    assert "TASK_TABLE_NAME" not in env_of(runtime_manifests(args(), WIRED_VALUES)["deployment"])


def _table_statements(policy: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in policy["Statement"] if "dynamodb" in json.dumps(s["Action"])]


def test_the_pod_policy_may_update_and_read_the_table_only() -> None:
    policy = pod_policy(args(**TASK_TABLE), {**WIRED_VALUES, **TASK_TABLE})
    [statement] = _table_statements(policy)
    assert statement["Sid"] == "AdvanceTaskState"
    assert sorted(statement["Action"]) == ["dynamodb:GetItem", "dynamodb:UpdateItem"]
    assert statement["Resource"] == TABLE_ARN and statement["Effect"] == "Allow"
    assert _table_statements(pod_policy(args(), WIRED_VALUES)) == []


def test_the_table_is_wired_both_or_neither() -> None:
    assert task_table_wiring(args()) == {} == known_task_table(args())
    assert task_table_wiring(args(**TASK_TABLE)) == TASK_TABLE
    for key in TASK_TABLE:
        with pytest.raises(ValueError, match=f"^{key}: .*set together with"):
            task_table_wiring(args(**{key: TASK_TABLE[key]}))


def test_placeholders_stand_in_for_outputs_and_pass_the_checks() -> None:
    placeholder_args = args(task_table_name=object(), task_table_arn=object())
    known = known_task_table(placeholder_args)
    assert known == TASK_TABLE_PLACEHOLDERS
    runtime_manifests(args(**known), {**WIRED_VALUES, **known})
    pod_policy(args(**known), {**WIRED_VALUES, **known})


# -- SdRuntime under the mocks ---------------------------------------------------------------------


def test_sdruntime_wires_table_outputs_into_the_pod_env_and_role_policy() -> None:
    def program() -> None:
        provider = k8s.Provider("byo-cluster", kubeconfig=KUBECONFIG)
        # Outputs, as ApiIngress.task_table_name/arn are.
        table = {k: pulumi.Output.from_input(v) for k, v in TASK_TABLE.items()}
        SdRuntime(
            "rt-sd15",
            make_args("sd15", **table, task_ttl_seconds=3600),
            on_cluster(provider),
        )

    graph = run_program(program, {"aws:region": REGION})
    policy = json.loads(
        graph.one("aws:iam/rolePolicy:RolePolicy", "rt-sd15-policy").inputs["policy"]
    )
    [statement] = _table_statements(policy)
    assert statement["Resource"] == TABLE_ARN
    deployment = graph.one("kubernetes:apps/v1:Deployment", "rt-sd15-deployment").inputs
    agent = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in agent["env"]}
    assert (env["TASK_TABLE_NAME"], env["TASK_TTL_SECONDS"]) == (TABLE, "3600")


def test_sdruntime_without_a_table_has_no_table_env_or_grant() -> None:
    def program() -> None:
        provider = k8s.Provider("byo-cluster", kubeconfig=KUBECONFIG)
        SdRuntime("rt-sd15", make_args("sd15"), on_cluster(provider))

    graph = run_program(program, {"aws:region": REGION})
    policy = json.loads(
        graph.one("aws:iam/rolePolicy:RolePolicy", "rt-sd15-policy").inputs["policy"]
    )
    assert _table_statements(policy) == []
    deployment = graph.one("kubernetes:apps/v1:Deployment", "rt-sd15-deployment").inputs
    names = {e["name"] for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert not {"TASK_TABLE_NAME", "TASK_TTL_SECONDS"} & names
