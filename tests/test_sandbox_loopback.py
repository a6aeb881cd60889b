"""The sandbox's loopback callbacks: accepted only with the explicit opt-in, only for
127.0.0.1, ::1 and localhost, and never switched on by a deployed stack."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sdfleet.agent import contract
from sdfleet.agent.config import load_config
from sdfleet.agent.contract_base import ContractError
from sdfleet.agent.contract_callback import parse_callback, sandbox_loopback_guard
from sdfleet.agent.receiver import _checked_callback
from sdfleet.components.task_api import settings as task_settings
from sdfleet.components.task_api import submit
from sdfleet.mocking import Recorder

FLAG = "SDFLEET_SANDBOX_LOOPBACK_CALLBACKS"
RUNTIMES = [contract.RuntimeInfo(name="sd15", type=contract.SDWEBUI)]


def code_of(value: Any, *, loopback: bool) -> str:
    with pytest.raises(ContractError) as err:
        parse_callback(value, loopback=loopback)
    return err.value.code


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("http://127.0.0.1:8080/hook", "insecure_callback_url"),
        ("https://127.0.0.1:8443/hook", "forbidden_address"),
        ("https://[::1]:8443/hook", "forbidden_address"),
        ("https://localhost:8443/hook", "forbidden_host"),
    ],
)
def test_without_the_opt_in_loopback_is_refused_as_before(url: str, code: str) -> None:
    assert code_of({"url": url}, loopback=False) == code


@pytest.mark.parametrize(
    ("url", "scheme", "host", "port", "literal"),
    [
        ("http://127.0.0.1:8080/hook?t=1", "http", "127.0.0.1", 8080, True),
        ("https://127.0.0.1:8443/hook", "https", "127.0.0.1", 8443, True),
        ("http://[::1]:9000/", "http", "::1", 9000, True),
        ("http://LocalHost:9000/x", "http", "localhost", 9000, False),
    ],
)
def test_with_the_opt_in_loopback_http_or_https_is_accepted(
    url: str, scheme: str, host: str, port: int, literal: bool
) -> None:
    cb = parse_callback({"url": url}, loopback=True)
    assert cb is not None
    assert (cb.scheme, cb.host, cb.port, cb.ip_literal, cb.url) == (
        scheme,
        host,
        port,
        literal,
        url,
    )
    assert cb.target.startswith("/")


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("https://10.0.0.1:8443/", "forbidden_address"),
        ("https://192.168.1.10:8443/", "forbidden_address"),
        ("https://169.254.169.254/latest", "forbidden_address"),
        ("https://127.0.0.2:8443/", "forbidden_address"),  # loopback, but not 127.0.0.1
        ("http://10.0.0.1:8080/", "insecure_callback_url"),  # http stays loopback-only
        ("http://hooks.example.org:8080/", "insecure_callback_url"),
        ("http://127.1:8080/", "insecure_callback_url"),
        ("http://127.0.0.1/hook", "forbidden_port"),  # port 80: privileged, as in the cloud
        ("http://127.0.0.1:22/", "forbidden_port"),
        ("http://u:p@127.0.0.1:8080/", "credentials_in_url"),
        ("ftp://127.0.0.1:2121/", "insecure_callback_url"),
        ("https://app.localhost:8443/", "forbidden_host"),
    ],
)
def test_the_opt_in_relaxes_nothing_else(url: str, code: str) -> None:
    assert code_of({"url": url}, loopback=True) == code


def test_the_delivery_guard_lets_exactly_the_loopback_addresses_through() -> None:
    assert sandbox_loopback_guard("127.0.0.1") is None
    assert sandbox_loopback_guard("::1") is None
    assert sandbox_loopback_guard("127.0.0.2") == "loopback"
    assert sandbox_loopback_guard("10.1.2.3") == "private"
    assert sandbox_loopback_guard("::ffff:127.0.0.1") is not None
    assert sandbox_loopback_guard("93.184.216.34") is None  # public, as in the cloud


def _settings(loopback: bool) -> task_settings.Settings:
    return task_settings.Settings(
        topic_arn="arn:aws:sns:us-east-1:000000000000:in",
        bucket="b",
        runtimes=tuple(RUNTIMES),
        region="us-east-1",
        table_name="t",
        ttl_seconds=60,
        url_expiry_seconds=900,
        loopback_callbacks=loopback,
    )


def _submitted(loopback: bool) -> Any:
    hook = {"url": "http://127.0.0.1:8080/hook"}
    task = {
        "metadata": {"runtime": "sd15", "tasktype": "text-to-image", "callback": hook},
        "content": {"prompt": "x"},
    }
    log: dict[str, Any] = {}
    event = {"body": json.dumps({"task": task})}
    return submit._parse(event, "v1alpha2", _settings(loopback), log)


def test_the_task_api_refuses_loopback_unless_the_sandbox_set_the_flag() -> None:
    refused = _submitted(False)
    assert refused["statusCode"] == 400
    assert json.loads(refused["body"])["error"]["code"] == "insecure_callback_url"
    accepted = _submitted(True)
    assert isinstance(accepted, contract.Task)
    assert accepted.metadata.callback == {
        "url": "http://127.0.0.1:8080/hook",
        "events": ["completed", "failed"],
    }


@pytest.mark.parametrize(("value", "expected"), [(None, False), ("0", False), ("1", True)])
def test_the_task_api_reads_the_flag_from_its_environment(
    monkeypatch: pytest.MonkeyPatch, value: str | None, expected: bool
) -> None:
    monkeypatch.setenv("INPUT_TOPIC_ARN", "arn:aws:sns:us-east-1:000000000000:in")
    monkeypatch.setenv("OUTPUT_BUCKET", "b")
    monkeypatch.setenv("TASK_TABLE_NAME", "t")
    monkeypatch.setenv("RUNTIMES", json.dumps([r.to_json() for r in RUNTIMES]))
    if value is None:
        monkeypatch.delenv(FLAG, raising=False)
    else:
        monkeypatch.setenv(FLAG, value)
    task_settings.reset()
    try:
        assert task_settings.load().loopback_callbacks is expected
    finally:
        task_settings.reset()


def test_the_agent_keeps_a_loopback_callback_only_with_its_setting() -> None:
    env = {
        "SQS_QUEUE_URL": "http://127.0.0.1:5000/000000000000/q",
        "SNS_TOPIC_ARN": "arn:aws:sns:us-east-1:000000000000:out",
        "S3_BUCKET": "bucket",
        "RUNTIME_TYPE": "sdwebui",
        "RUNTIME_NAME": "sd15",
    }
    assert load_config(env).sandbox_loopback_callbacks is False
    assert load_config({**env, FLAG: "true"}).sandbox_loopback_callbacks is True
    hook = {"url": "http://127.0.0.1:8080/hook"}
    assert _checked_callback(hook, "t1") is None
    kept = _checked_callback(hook, "t1", loopback=True)
    assert kept is not None and kept.scheme == "http"


def test_no_deployed_function_or_pod_sets_the_flag(dev_graph: Recorder) -> None:
    fn = dev_graph.one("aws:lambda/function:Function", "sdfleet-api-task-fn")
    variables = fn.inputs["environment"]["variables"]
    assert "TASK_TABLE_NAME" in variables  # the real environment was read
    assert FLAG not in variables
    for function in dev_graph.of_type("aws:lambda/function:Function"):
        env = (function.inputs.get("environment") or {}).get("variables") or {}
        assert FLAG not in env, function.name
    # Nor any pod: the agent's setting defaults to off and the builder does not write it.
    pods = dev_graph.of_type("kubernetes:apps/v1:Deployment")
    assert pods
    assert FLAG not in json.dumps([r.inputs for r in pods], default=str)


def test_a_stack_cannot_turn_the_sandbox_switch_on_for_its_agents() -> None:
    from sdfleet.components.config import ConfigError, parse_config

    runtime = {
        "name": "a",
        "type": "sdwebui",
        "modelFilename": "m.safetensors",
        "agent": {"extraEnv": {"SDFLEET_SANDBOX_LOOPBACK_CALLBACKS": "1"}},
    }
    with pytest.raises(ConfigError, match=r"runtimes\[0\]\.agent\.extraEnv.*SDFLEET_SANDBOX"):
        parse_config({"runtimes": [runtime]})
