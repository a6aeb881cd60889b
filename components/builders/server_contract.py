"""The inference server container's contract, written once for sdfleet's own images.

``runtimes/<type>/`` holds a Dockerfile and a launch script per runtime type. The pod spec
and those images meet here: the port the server listens on, where the model bucket is
mounted, the env the launch script reads, the readiness path, the paths that must be
writable (``emptyDir`` volumes, because the root filesystem is read-only), the command the
container runs and the non-root user. ``tests/test_runtime_images.py`` checks the Dockerfiles
and launch scripts against this module; the workload builders build the server container from
it, and ``tests/builders/test_pod_contract.py`` checks that pod against the images.

Pure data: no Pulumi import, so the agent, the builders and the tests can all read it.
See docs/runtime-images.md.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "COMFYUI",
    "CONTRACTS",
    "LAUNCH_SCRIPT",
    "MODEL_MOUNT_PATH",
    "SDWEBUI",
    "SERVER_GID",
    "SERVER_PORT",
    "SERVER_UID",
    "STATE_DIR",
    "TMP_DIR",
    "EnvVar",
    "ServerContract",
    "WritablePath",
    "contract_for",
]

SDWEBUI = "sdwebui"
COMFYUI = "comfyui"

# The agent's default server URL uses this port (sdfleet.agent.settings.SERVER_PORT); a test
# keeps the two equal.
SERVER_PORT = 8080
# Same numeric user as the agent image (agent/Dockerfile), so one pod-level runAsUser /
# runAsGroup / fsGroup fits both containers.
SERVER_UID = 10001
SERVER_GID = 10001
# The model bucket (Mountpoint for S3, read-only). Sub-folders follow the bucket layout in
# docs/compute-plane.md#buckets-and-models; they are not created by the servers.
MODEL_MOUNT_PATH = "/models"
# Everything a server writes at start or while it runs goes under these two paths.
STATE_DIR = "/var/lib/sdserver"
TMP_DIR = "/tmp"


@dataclass(frozen=True)
class EnvVar:
    """An environment variable the launch script reads.

    ``default`` is the value the image sets (Dockerfile ``ENV``); ``None`` means the image sets
    none and the script treats it as empty. ``pod_sets`` marks the ones the pod spec should set
    (to the default unless stated); the others are fixed by the image and listed so the test
    can tell every variable the script reads from a typo.
    """

    name: str
    default: str | None
    pod_sets: bool
    description: str


@dataclass(frozen=True)
class WritablePath:
    """A directory the server writes to: mount an ``emptyDir`` there."""

    path: str
    volume: str
    size_limit: str
    description: str


@dataclass(frozen=True)
class ServerContract:
    runtime_type: str
    # Build context, relative to the repository root.
    context_dir: str
    port: int
    model_mount_path: str
    # Startup/readiness/liveness probe path (HTTP GET on ``port``; 200 once the API is served).
    readiness_path: str
    # The container's command; the image's ENTRYPOINT is the same, so a pod may omit it.
    command: tuple[str, ...]
    # Extra server flags the pod passes; the launch script appends them after its own flags
    # (argparse: the last occurrence wins). sdfleet's images need none.
    args: tuple[str, ...]
    working_dir: str
    env: tuple[EnvVar, ...]
    writable_paths: tuple[WritablePath, ...]
    uid: int = SERVER_UID
    gid: int = SERVER_GID

    @property
    def env_names(self) -> frozenset[str]:
        return frozenset(e.name for e in self.env)

    def pod_env(self, model_filename: str | None = None) -> dict[str, str]:
        """The env the pod sets. ``model_filename`` only applies to SD WebUI; ``None`` or ""
        (a dynamic-model runtime) leaves ``MODEL_FILENAME`` out, so no checkpoint is forced."""
        env = {e.name: e.default for e in self.env if e.pod_sets and e.default is not None}
        if model_filename and "MODEL_FILENAME" in self.env_names:
            env["MODEL_FILENAME"] = model_filename
        return env


# Where both images put their launch script (the Dockerfiles COPY it there).
LAUNCH_SCRIPT = "/opt/sdfleet/launch.sh"

_WRITABLE = (
    WritablePath(
        TMP_DIR,
        "server-tmp",
        "2Gi",
        "TMPDIR, GRADIO_TEMP_DIR, MPLCONFIGDIR: temporary files of Python, Gradio and torch",
    ),
    WritablePath(
        STATE_DIR,
        "server-state",
        "8Gi",
        "HOME and XDG_CACHE_HOME (torch/triton caches); SD WebUI --data-dir (config.json, "
        "cache.json, params.txt, outputs, default model folders); ComfyUI output, input, "
        "temp and user directories and its SQLite database",
    ),
)

_COMMON_ENV = (
    EnvVar("SERVER_PORT", str(SERVER_PORT), True, "port the server listens on (all addresses)"),
    EnvVar("MODEL_DIR", MODEL_MOUNT_PATH, True, "where the model bucket is mounted read-only"),
    EnvVar("STATE_DIR", STATE_DIR, True, "writable state root (an emptyDir)"),
    EnvVar(
        "SERVER_EXTRA_ARGS",
        None,
        False,
        "optional extra server flags, split on whitespace (e.g. --medvram); appended",
    ),
    EnvVar("HOME", f"{STATE_DIR}/home", False, "created by the launch script"),
    EnvVar("XDG_CACHE_HOME", f"{STATE_DIR}/cache", False, "torch hub / triton caches"),
)

CONTRACTS: dict[str, ServerContract] = {
    SDWEBUI: ServerContract(
        runtime_type=SDWEBUI,
        context_dir="runtimes/sdwebui",
        port=SERVER_PORT,
        model_mount_path=MODEL_MOUNT_PATH,
        # With --nowebui the routes exist before the port opens.
        readiness_path="/sdapi/v1/options",
        command=(LAUNCH_SCRIPT,),
        args=(),
        working_dir="/opt/sdwebui/app",
        env=(
            *_COMMON_ENV,
            EnvVar(
                "MODEL_FILENAME",
                None,
                True,
                "checkpoint under <MODEL_DIR>/Stable-diffusion/ loaded at start (the runtime's "
                "modelFilename); unset for a dynamicModel runtime",
            ),
            EnvVar("GRADIO_TEMP_DIR", f"{TMP_DIR}/gradio", False, "Gradio's upload/temp dir"),
        ),
        writable_paths=_WRITABLE,
    ),
    COMFYUI: ServerContract(
        runtime_type=COMFYUI,
        context_dir="runtimes/comfyui",
        port=SERVER_PORT,
        model_mount_path=MODEL_MOUNT_PATH,
        # 200 once custom nodes are loaded and routes added (inference-apis.md, C).
        readiness_path="/system_stats",
        command=(LAUNCH_SCRIPT,),
        args=(),
        working_dir="/opt/comfyui/app",
        env=_COMMON_ENV,
        writable_paths=_WRITABLE,
    ),
}


def contract_for(runtime_type: str) -> ServerContract:
    try:
        return CONTRACTS[runtime_type]
    except KeyError:
        raise ValueError(
            f"runtime type {runtime_type!r}: expected one of {', '.join(sorted(CONTRACTS))}"
        ) from None
