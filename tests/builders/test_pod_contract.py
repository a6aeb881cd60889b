"""The pod contract: the Deployment a runtime gets agrees with the server image it runs.

The Dockerfiles and launch scripts under runtimes/ are read as sources (no Docker engine) and
compared with the inference server container that runtime_manifests builds for the dev
stack's settings: command (the image's ENTRYPOINT), arguments, env, port, probes, volume
mounts and user. tests/test_runtime_images.py checks the images against server_contract.py;
this module closes the loop from the pod's side, so a change to either side that breaks
the other fails here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from sdfleet.agent import settings as agent_settings
from sdfleet.components.builders import server_contract as sc
from sdfleet.components.builders import workload as wl
from sdfleet.components.builders.enums import RuntimeType
from sdfleet.components.builders.runtime_manifests import runtime_manifests
from sdfleet.components.builders.runtime_plan import PLACEHOLDERS
from sdfleet.components.sd_runtime_plan import SdRuntimeArgs
from tests.k8s_validation import assert_valid
from tests.test_runtime_images import Instruction, parse_dockerfile, values, variables

ROOT = Path(__file__).resolve().parents[2]
CHECKPOINT = "v1-5-pruned-emaonly.safetensors"
HARDENED = {
    "runAsUser": sc.SERVER_UID,
    "runAsGroup": sc.SERVER_GID,
    "runAsNonRoot": True,
    "readOnlyRootFilesystem": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def _args(runtime_type: str, **over: Any) -> SdRuntimeArgs:
    fields: dict[str, Any] = {
        "runtime_name": "sd15" if runtime_type == sc.SDWEBUI else "flux",
        "runtime_type": RuntimeType(runtime_type),
        "namespace": "gen",
        "cluster_name": "c1",
        "scheduling": {},
        "model_filename": CHECKPOINT if runtime_type == sc.SDWEBUI else None,
        **PLACEHOLDERS,
    }
    return SdRuntimeArgs(**{**fields, **over})


def _pod(args: SdRuntimeArgs) -> dict[str, Any]:
    # The component resolves Output-valued args before building; here they are plain.
    image = args.server_image if isinstance(args.server_image, str) else None
    wired = {**PLACEHOLDERS, "server_image": image or PLACEHOLDERS["server_image"]}
    deployment = runtime_manifests(args, wired)["deployment"]
    assert_valid(deployment, "1.33")
    pod: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return pod


def _server(pod: dict[str, Any]) -> dict[str, Any]:
    (server,) = pod["initContainers"]
    assert server["name"] == wl.SERVER_CONTAINER
    return dict(server)


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


@pytest.fixture(params=sorted(sc.CONTRACTS), ids=sorted(sc.CONTRACTS))
def runtime_type(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _image(runtime_type: str) -> tuple[list[Instruction], str]:
    context = ROOT / sc.contract_for(runtime_type).context_dir
    return parse_dockerfile(context / "Dockerfile"), (context / "launch.sh").read_text()


def _reads(script: str) -> set[str]:
    """Variables the launch script expands."""
    return set(re.findall(r"\$\{?([A-Z_][A-Z0-9_]*)", script))


def test_command_and_args_are_the_images_entrypoint(runtime_type: str) -> None:
    instructions, script = _image(runtime_type)
    server = _server(_pod(_args(runtime_type)))
    # No command: the kubelet runs the image's ENTRYPOINT, which is the launch script the
    # Dockerfile copies to the contract's path.
    assert "command" not in server
    entrypoint = json.loads(values(instructions, "ENTRYPOINT")[-1])
    assert entrypoint == list(sc.contract_for(runtime_type).command) == [sc.LAUNCH_SCRIPT]
    copies = [v.split() for v in values(instructions, "COPY")]
    assert any("launch.sh" in c[:-1] and c[-1] == "/opt/sdfleet/" for c in copies)
    # No args either (none in the contract, no CMD); ones a user adds reach the server last.
    assert "args" not in server and values(instructions, "CMD") == []
    assert script.rstrip().endswith('"$@"')


def test_env_is_what_the_launch_script_reads(runtime_type: str) -> None:
    instructions, script = _image(runtime_type)
    image_env = variables([i for i in instructions if i.keyword == "ENV"])
    env = _env(_server(_pod(_args(runtime_type))))
    assert set(env) <= _reads(script)
    for name in ("SERVER_PORT", "MODEL_DIR", "STATE_DIR"):
        assert env[name] == image_env[name], name
    if runtime_type == sc.SDWEBUI:
        assert env["MODEL_FILENAME"] == CHECKPOINT
    else:
        assert "MODEL_FILENAME" not in env and "MODEL_FILENAME" not in _reads(script)


def test_a_dynamic_model_runtime_forces_no_checkpoint() -> None:
    env = _env(_server(_pod(_args(sc.SDWEBUI, dynamic_model=True))))
    assert "MODEL_FILENAME" not in env


def test_port_and_probes_meet_the_server_and_the_agent(runtime_type: str) -> None:
    instructions, _ = _image(runtime_type)
    contract = sc.contract_for(runtime_type)
    pod = _pod(_args(runtime_type))
    server = _server(pod)
    (port,) = server["ports"]
    assert port["containerPort"] == int(values(instructions, "EXPOSE")[-1]) == contract.port
    assert str(port["containerPort"]) == _env(server)["SERVER_PORT"]
    for probe in ("startupProbe", "livenessProbe"):
        get = server[probe]["httpGet"]
        assert get == {"path": contract.readiness_path, "port": contract.port}, probe
    (agent,) = pod["containers"]
    base = _env(agent)["API_BASE_URL"]
    assert base == agent_settings.default_api_base_url(runtime_type, contract.port)
    assert base.startswith(f"http://127.0.0.1:{contract.port}")


def test_mounts_cover_every_path_the_image_writes(runtime_type: str) -> None:
    instructions, _ = _image(runtime_type)
    image_env = variables([i for i in instructions if i.keyword == "ENV"])
    contract = sc.contract_for(runtime_type)
    pod = _pod(_args(runtime_type))
    server = _server(pod)
    mounts = {m["mountPath"]: m for m in server["volumeMounts"]}
    models = mounts.pop(image_env["MODEL_DIR"])
    assert models == {"name": wl.MODELS_VOLUME, "mountPath": "/models", "readOnly": True}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[wl.MODELS_VOLUME]["persistentVolumeClaim"]["readOnly"] is True
    # Exactly the contract's writable roots, each its own sized emptyDir.
    assert {p: m["name"] for p, m in mounts.items()} == {
        w.path: w.volume for w in contract.writable_paths
    }
    for w in contract.writable_paths:
        assert volumes[w.volume] == {"name": w.volume, "emptyDir": {"sizeLimit": w.size_limit}}
    # Everything the image points a writer at sits under one of them.
    for name in ("HOME", "XDG_CACHE_HOME", "TMPDIR", "MPLCONFIGDIR", "STATE_DIR"):
        assert any(image_env[name] == p or image_env[name].startswith(p + "/") for p in mounts)


def test_user_and_hardening_match_the_image(runtime_type: str) -> None:
    instructions, _ = _image(runtime_type)
    pod = _pod(_args(runtime_type))
    server = _server(pod)
    assert values(instructions, "USER")[-1] == f"{sc.SERVER_UID}:{sc.SERVER_GID}"
    assert server["securityContext"] == HARDENED
    (agent,) = pod["containers"]
    assert agent["securityContext"] == HARDENED  # the agent image uses the same uid
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    # No privileges for the GPU: the device plugin's allocation is a resource limit.
    assert server["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert "privileged" not in json.dumps(pod)


def test_an_own_image_keeps_its_entrypoint_and_gets_the_contract() -> None:
    """An own image runs its own entrypoint with what the user configured (mount path, extra
    args and env) and gets the same env, volumes and hardening as sdfleet's."""
    args = _args(
        sc.COMFYUI,
        server_image="example.com/comfyui:v0.3.40",
        model_path="/opt/ComfyUI/models",
        server_extra_args=["--lowvram"],
        server_env={"HF_HUB_OFFLINE": "1"},
    )
    server = _server(_pod(args))
    assert server["image"] == "example.com/comfyui:v0.3.40"
    assert "command" not in server
    assert server["args"] == ["--lowvram"]
    assert _env(server) == {
        "SERVER_PORT": "8080",
        "MODEL_DIR": "/opt/ComfyUI/models",
        "STATE_DIR": sc.STATE_DIR,
        "HF_HUB_OFFLINE": "1",
    }
    assert server["volumeMounts"][0]["mountPath"] == "/opt/ComfyUI/models"
    assert server["securityContext"] == HARDENED


def test_an_explicit_command_and_args_replace_the_contracts() -> None:
    args = _args(sc.SDWEBUI, server_command=["/bin/run"], server_args=["--api"])
    server = _server(_pod(args))
    assert server["command"] == ["/bin/run"]
    assert server["args"] == ["--api"]


@pytest.mark.parametrize("name", ["SERVER_PORT", "MODEL_DIR", "STATE_DIR", "MODEL_FILENAME"])
def test_user_env_cannot_contradict_the_contract(name: str) -> None:
    with pytest.raises(ValueError, match=rf"^server_env: .*{name}.*does not set itself"):
        _pod(_args(sc.SDWEBUI, server_env={name: "x"}))
