"""Where the client finds its URL and key: explicit values, a stack's outputs, the environment."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from sdfleet.client import Client
from sdfleet.client_config import ConfigError, Endpoint, resolve, stack_outputs

OUTPUTS = {"apiUrl": "https://stack.example/v1", "apiKey": "stack-key-s3cret", "other": 1}
ENV = {"SDFLEET_API_URL": "https://env.example/v1", "SDFLEET_API_KEY": "env-key-s3cret"}


def outputs_of(stack: str) -> dict[str, Any]:
    assert stack == "dev"
    return OUTPUTS


def test_explicit_then_stack_then_environment() -> None:
    assert resolve("https://a/v1/", "k", stack="dev", env=ENV, outputs=outputs_of) == Endpoint(
        "https://a/v1", "k"
    )
    from_stack = resolve(stack="dev", env=ENV, outputs=outputs_of)
    assert from_stack == Endpoint("https://stack.example/v1", "stack-key-s3cret")
    assert resolve(env=ENV) == Endpoint("https://env.example/v1", "env-key-s3cret")
    assert resolve("https://a/v1", env=ENV).key == "env-key-s3cret"  # each value on its own


def test_the_key_stays_out_of_reprs() -> None:
    endpoint = resolve(env=ENV)
    assert "s3cret" not in repr(endpoint)
    assert "s3cret" not in repr(Client(endpoint.url, endpoint.key))


def test_missing_values_name_every_way_to_give_them() -> None:
    with pytest.raises(ConfigError, match="--api-url or --stack, or set SDFLEET_API_URL"):
        resolve(env={})
    with pytest.raises(ConfigError, match="--api-key or --stack, or set SDFLEET_API_KEY"):
        resolve("https://a", env={})
    with pytest.raises(ConfigError, match="stack dev has no apiUrl output"):
        resolve(stack="dev", env=ENV, outputs=lambda _: {})


def _runner(code: int, stdout: str = "", stderr: str = "") -> Any:
    calls: list[list[str]] = []

    def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
        calls.append(argv)
        return subprocess.CompletedProcess(argv, code, stdout, stderr)

    run.calls = calls  # type: ignore[attr-defined]
    return run


def test_stack_outputs_runs_pulumi_with_secrets_shown() -> None:
    run = _runner(0, json.dumps(OUTPUTS))
    assert stack_outputs("dev", run=run, which=lambda _: "/bin/pulumi") == OUTPUTS
    assert run.calls == [
        ["/bin/pulumi", "stack", "output", "--json", "--show-secrets", "--stack", "dev"]
    ]


def test_stack_outputs_errors_are_clear() -> None:
    with pytest.raises(ConfigError, match="needs the pulumi CLI, which is not on PATH"):
        stack_outputs("dev", which=lambda _: None)
    failing = _runner(255, stderr="error: no stack named 'dev' found\n")
    with pytest.raises(ConfigError, match="failed \\(255\\): error: no stack named 'dev' found"):
        stack_outputs("dev", run=failing, which=lambda _: "pulumi")
    with pytest.raises(ConfigError, match="did not print JSON"):
        stack_outputs("dev", run=_runner(0, "not json"), which=lambda _: "pulumi")


def test_the_running_sandbox_is_found_by_its_file(tmp_path: Any) -> None:
    import os

    file = tmp_path / "sandbox.json"
    env = {"SDFLEET_SANDBOX_FILE": str(file)}
    with pytest.raises(ConfigError, match="no sandbox is running"):
        resolve(sandbox=True, env=env)
    file.write_text(
        json.dumps({"api_url": "http://127.0.0.1:8000/", "api_key": "sbx_k", "pid": os.getpid()})
    )
    assert resolve(sandbox=True, env=env) == Endpoint("http://127.0.0.1:8000", "sbx_k")
    # Explicit values still win over the file.
    assert resolve("http://x", sandbox=True, env=env) == Endpoint("http://x", "sbx_k")
    dead = subprocess.Popen(["true"])
    dead.wait()
    file.write_text(json.dumps({"api_url": "u", "api_key": "k", "pid": dead.pid}))
    with pytest.raises(ConfigError, match=f"pid {dead.pid}\\) is not running"):
        resolve(sandbox=True, env=env)
    file.write_text("{}")
    with pytest.raises(ConfigError, match="is not a sandbox file"):
        resolve(sandbox=True, env=env)
