"""One installed namespace: ``sdfleet`` (with ``sdfleet.components`` and ``sdfleet.agent``).

The wheel tests build the distribution offline (``--no-build-isolation``: the dev extra pins
the setuptools it needs) from a copy of the repository, install it with ``--no-deps`` in a
fresh virtualenv and run programs there. Third-party packages (Pulumi, boto3) come from this
virtualenv's site-packages on PYTHONPATH, which holds no sdfleet code: an editable install is a
``.pth`` hook, and ``.pth`` files on PYTHONPATH are not read.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import venv
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import sdfleet
from sdfleet.components import versions
from sdfleet.components.builders import image as ib
from sdfleet.components.builders import image_build

ROOT = Path(__file__).resolve().parent.parent
THIRD_PARTY = sysconfig.get_paths()["purelib"]
COMPONENTS = {
    "ApiIngress",
    "EventFanout",
    "GpuNodePool",
    "ModelStore",
    "Observability",
    "SdPipeline",
    "SdRuntime",
    "TaskEvents",
    "TraceCollector",
}
# A meta-path finder that refuses Pulumi, as in the agent image and the task Lambda.
BLOCK_PULUMI = textwrap.dedent(
    """
    import sys

    class NoPulumi:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "pulumi" or name.startswith("pulumi_"):
                raise ImportError(f"{name} is not installed here")
            return None

    sys.meta_path.insert(0, NoPulumi())
    """
)


def _run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


# --------------------------------------------------------------------------------------------
# The package itself, from the repository


def test_public_components_and_args() -> None:
    assert set(sdfleet.__all__) == COMPONENTS | {f"{name}Args" for name in COMPONENTS}
    assert set(sdfleet.__all__) <= set(dir(sdfleet))
    import pulumi

    for name in COMPONENTS:
        component = getattr(sdfleet, name)
        assert issubclass(component, pulumi.ComponentResource), name
        assert component.__module__.startswith("sdfleet.components."), name
        assert isinstance(getattr(sdfleet, f"{name}Args"), type), name
    with pytest.raises(AttributeError, match="no attribute 'Nothing'"):
        _ = sdfleet.Nothing  # type: ignore[attr-defined]


def test_agent_and_contract_import_without_pulumi() -> None:
    """The agent image and the Lambda have no Pulumi: importing ``sdfleet`` must not pull in
    the components, and naming one says why it cannot load."""
    code = BLOCK_PULUMI + textwrap.dedent(
        """
        import sdfleet.agent.contract, sdfleet.agent.__main__, sdfleet.agent.worker
        assert not [m for m in sys.modules if m.startswith(("pulumi", "sdfleet.components"))]
        import sdfleet
        try:
            sdfleet.SdRuntime
        except ImportError as err:
            assert "pulumi" in str(err), err
        else:
            raise AssertionError("sdfleet.SdRuntime loaded without Pulumi")
        """
    )
    _run([sys.executable, "-c", code], cwd=ROOT)


def test_contract_needs_only_the_standard_library() -> None:
    """``sdfleet`` and ``sdfleet.agent`` as the repository has them, with no site-packages."""
    code = BLOCK_PULUMI + textwrap.dedent(
        f"""
        sys.path[:] = [{str(ROOT)!r}] + [p for p in sys.path if "-packages" not in p]
        import sdfleet.agent.contract as c
        assert c.__file__.startswith({str(ROOT)!r}), c.__file__
        assert c.parse_queue_message
        """
    )
    _run([sys.executable, "-I", "-c", code], cwd=ROOT)


def test_the_agent_image_runs_the_agent_as_sdfleet_agent(tmp_path: Path) -> None:
    """The Dockerfile copies its context to ``/app/sdfleet/agent``, writes its own one-line
    ``sdfleet/__init__.py`` and runs ``python -m sdfleet.agent``: that layout, without Pulumi,
    imports the entry point."""
    lines = (ROOT / "agent" / "Dockerfile").read_text().splitlines()
    assert "COPY . /app/sdfleet/agent" in lines
    assert 'CMD ["python", "-m", "sdfleet.agent"]' in lines
    assert "WORKDIR /app" in lines
    app = tmp_path / "app"
    for rel in ib.context_files(ROOT / "agent"):
        target = app / "sdfleet" / "agent" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / "agent" / rel, target)
    (app / "sdfleet" / "__init__.py").write_text('"""Only the agent."""\n')
    code = BLOCK_PULUMI + textwrap.dedent(
        f"""
        sys.path.insert(0, {str(app)!r})
        import importlib.util
        spec = importlib.util.find_spec("sdfleet.agent.__main__")
        assert spec.origin == {str(app / "sdfleet" / "agent" / "__main__.py")!r}, spec.origin
        import sdfleet.agent.__main__
        """
    )
    _run([sys.executable, "-I", "-c", code], cwd=tmp_path)


# --------------------------------------------------------------------------------------------
# The built wheel, installed in a fresh virtualenv


@dataclass
class Installed:
    wheel: Path
    python: Path
    site: Path
    third_party: Path

    def run(self, script: str, cwd: Path) -> str:
        env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(self.third_party)}
        return _run([str(self.python), "-c", script], cwd=cwd, env=env)


def _third_party(dest: Path) -> Path:
    """This virtualenv's site-packages without sdfleet (whichever way it is installed here)."""
    dest.mkdir()
    for entry in Path(THIRD_PARTY).iterdir():
        name = entry.name.lower()
        if not name.startswith(("sdfleet", "__editable__")) and not name.endswith(".pth"):
            (dest / entry.name).symlink_to(entry)
    return dest


def _source_copy(dest: Path) -> Path:
    """The repository as a clean checkout would have it (symlinks kept), so the build neither
    writes into the working tree nor picks up a stale build/ directory."""
    skip = {".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", "*.pyc", ".*_cache"}
    shutil.copytree(ROOT, dest, symlinks=True, ignore=shutil.ignore_patterns(*skip))
    return dest


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    tmp = tmp_path_factory.mktemp("wheel")
    src = _source_copy(tmp / "src")
    dist = tmp / "dist"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    _run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), "."], src)
    (wheel,) = dist.glob("sdfleet-*.whl")
    env_dir = tmp / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    install = [*pip, "--python", str(python), "install", "--no-deps", "--no-index", "-q"]
    _run([*install, str(wheel)], tmp)
    site = Path(
        _run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp
        ).strip()
    )
    yield Installed(wheel, python, site, _third_party(tmp / "third_party"))


@pytest.mark.wheel
def test_the_wheel_adds_one_top_level_name(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as wheel:
        names = wheel.namelist()
        top_level = wheel.read("sdfleet-0.1.0.dist-info/top_level.txt").decode().split()
    assert {name.split("/")[0] for name in names} == {"sdfleet", "sdfleet-0.1.0.dist-info"}
    assert top_level == ["sdfleet"]
    assert {
        "sdfleet/py.typed",
        "sdfleet/agent/Dockerfile",
        "sdfleet/agent/.dockerignore",
        "sdfleet/agent/requirements.txt",
        "sdfleet/agent/contract.py",
        "sdfleet/components/task_api/handler.py",
        "sdfleet/components/builders/image.py",
    } <= set(names)
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    # Every module of the repository's packages is in the wheel.
    for folder, package in (("components", "sdfleet/components"), ("agent", "sdfleet/agent")):
        for module in (ROOT / folder).rglob("*.py"):
            assert f"{package}/{module.relative_to(ROOT / folder).as_posix()}" in names, module
    installed_top = {p.name for p in installed.site.iterdir() if not p.name.startswith("_")}
    assert {"agent", "components"}.isdisjoint(installed_top)


@pytest.mark.wheel
def test_an_installed_sdfleet_builds_the_same_agent_image(
    installed: Installed, tmp_path: Path
) -> None:
    """The content tag (the image's identity) from the installed package equals the one from
    the repository, although the installed agent folder holds bytecode."""
    build_args = {"BASE_IMAGE": versions.AGENT_BASE_IMAGE}
    script = textwrap.dedent(
        f"""
        import json
        from pathlib import Path
        from sdfleet.components.agent_image import DEFAULT_CONTEXT_DIR
        from sdfleet.components.builders.image import context_files, image_tag
        import sdfleet.agent.worker  # writes bytecode next to the installed sources
        print(json.dumps({{
            "context": DEFAULT_CONTEXT_DIR,
            "tag": image_tag(DEFAULT_CONTEXT_DIR, {build_args!r}),
            "files": [p.as_posix() for p in context_files(DEFAULT_CONTEXT_DIR)],
            "bytecode": [str(p) for p in Path(DEFAULT_CONTEXT_DIR).rglob("*.pyc")],
        }}))
        """
    )
    got = json.loads(installed.run(script, cwd=tmp_path))
    assert Path(got["context"]) == installed.site / "sdfleet" / "agent"
    assert got["bytecode"], "the installed agent folder has no bytecode: the test proves nothing"
    assert got["files"] == [p.as_posix() for p in ib.context_files(ROOT / "agent")]
    assert got["tag"] == ib.image_tag(ROOT / "agent", build_args)


@pytest.mark.wheel
def test_an_installed_sdfleet_builds_the_same_server_images(
    installed: Installed, tmp_path: Path
) -> None:
    """The server build contexts ship in the wheel and give the repository's content tags."""
    script = textwrap.dedent(
        """
        import json
        from sdfleet.components.builders import image_build as b
        print(json.dumps({
            t: [str(b.runtime_context_dir(t)), b.plan_build(b.runtime_context_dir(t),
                b.runtime_tag_prefix(t), 5).tag]
            for t in ("sdwebui", "comfyui")
        }))
        """
    )
    got = json.loads(installed.run(script, cwd=tmp_path))
    for runtime_type, (context, tag) in got.items():
        assert Path(context) == installed.site / "sdfleet" / "runtimes" / runtime_type
        assert (Path(context) / "Dockerfile").is_file()
        local = image_build.plan_build(
            image_build.runtime_context_dir(runtime_type, ROOT / "runtimes"),
            image_build.runtime_tag_prefix(runtime_type),
            5,
        )
        assert tag == local.tag, runtime_type


CONSUMER_COMPONENT = '''
"""The consumer's own component module, named like one of sdfleet's."""

OWNER = "consumer"
'''

CONSUMER_PROGRAM = """
import json

import pulumi
import pulumi_kubernetes as k8s

import components.event_fanout as own  # the consumer's own (ns-rewrite: keep)
import sdfleet
from sdfleet import EventFanout, EventFanoutArgs, SdRuntime, SdRuntimeArgs
from sdfleet.mocking import run_program

IMAGE = "111122223333.dkr.ecr.us-east-1.amazonaws.com/agent@sha256:" + "a" * 64


def program():
    fanout = EventFanout("events", EventFanoutArgs(runtime_names=["sd15"]))
    cluster = k8s.Provider("existing-cluster", kubeconfig="{}")
    SdRuntime(
        "sd15",
        SdRuntimeArgs(
            runtime_name="sd15",
            runtime_type="sdwebui",
            namespace="sd15",
            cluster_name="existing-cluster",
            region="us-east-1",
            queue_url=fanout.queue_urls["sd15"],
            queue_arn=fanout.queue_arns["sd15"],
            output_topic_arn=fanout.output_topic_arn,
            output_bucket_name=fanout.output_bucket_name,
            output_bucket_arn=fanout.output_bucket_arn,
            model_bucket_name="models-1111",
            model_filename="v1-5-pruned-emaonly.safetensors",
            model_prefix="sd15/",
            agent_image=IMAGE,
            scheduling={},
        ),
        # The cluster comes as a provider option, as for any Pulumi component.
        pulumi.ResourceOptions(provider=cluster),
    )


graph = run_program(program, {"aws:region": "us-east-1"}, project="consumer")
print(json.dumps({
    "own": own.OWNER,
    "sdfleet": sdfleet.__file__,
    "resources": sorted({(r.type, r.name) for r in graph.resources}),
}))
"""


@pytest.mark.wheel
def test_a_consumer_with_its_own_components_folder(installed: Installed, tmp_path: Path) -> None:
    """A Pulumi program with its own ``components/`` composes sdfleet's EventFanout and
    SdRuntime into a cluster it does not manage (under the recording mocks)."""
    (tmp_path / "components").mkdir()
    (tmp_path / "components" / "__init__.py").write_text("")
    (tmp_path / "components" / "event_fanout.py").write_text(CONSUMER_COMPONENT)
    got = json.loads(installed.run(CONSUMER_PROGRAM, cwd=tmp_path))
    assert got["own"] == "consumer"
    assert Path(got["sdfleet"]).is_relative_to(installed.site)
    resources = {tuple(r) for r in got["resources"]}
    types = {t for t, _ in resources}
    assert {
        ("sdfleet:index:EventFanout", "events"),
        ("sdfleet:index:SdRuntime", "sd15"),
        ("pulumi:providers:kubernetes", "existing-cluster"),
    } <= resources
    assert {
        "aws:sns/topic:Topic",
        "aws:sqs/queue:Queue",
        "kubernetes:apps/v1:Deployment",
        "kubernetes:keda.sh/v1alpha1:ScaledObject",
    } <= types
    # An existing cluster: nothing of a cluster or a network is created.
    assert not types & {"aws:eks/cluster:Cluster", "eks:index:Cluster", "aws:ec2/vpc:Vpc"}


@pytest.mark.wheel
def test_an_editable_install_imports_from_anywhere(tmp_path: Path) -> None:
    """``pip install -e .`` (what ``make venv`` runs): sdfleet, its components and its agent
    import from any directory, and no ``components`` or ``agent`` package is added."""
    src = _source_copy(tmp_path / "src")
    build = f"from setuptools import build_meta as b; print(b.build_editable({str(tmp_path)!r}))"
    wheel = tmp_path / _run([sys.executable, "-c", build], src).strip().splitlines()[-1]
    venv.create(tmp_path / "venv", with_pip=False)
    python = tmp_path / "venv" / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--python", str(python)]
    _run([*pip, "install", "--no-deps", "--no-index", "-q", str(wheel)], tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = textwrap.dedent(
        f"""
        import importlib.util as u
        import sdfleet.agent.contract
        assert sdfleet.agent.contract.__file__.startswith({str(src)!r})
        spec = u.find_spec("sdfleet.components.builders.image")
        assert spec.origin == {str(src / "sdfleet" / "components" / "builders" / "image.py")!r}
        assert u.find_spec("components") is None and u.find_spec("agent") is None
        """
    )
    _run([str(python), "-c", code], elsewhere, env={"PATH": "/usr/bin:/bin"})
