#!/bin/bash
# Starts AUTOMATIC1111 SD WebUI as sdfleet pods expect it: API only on $SERVER_PORT, models
# from the read-only bucket mount, every write under $STATE_DIR or /tmp, nothing installed or
# downloaded. The contract (port, env, paths) is components/builders/server_contract.py;
# docs/runtime-images.md explains each flag. Arguments given to this script are appended
# to the server's flags (the last occurrence of a flag wins).
set -euo pipefail

: "${SERVER_PORT:?SERVER_PORT must be set}"
: "${HOME:?}" "${XDG_CACHE_HOME:?}" "${GRADIO_TEMP_DIR:?}"
MODEL_DIR=${MODEL_DIR:-/models}
STATE_DIR=${STATE_DIR:-/var/lib/sdserver}
MODEL_FILENAME=${MODEL_FILENAME:-}
SERVER_EXTRA_ARGS=${SERVER_EXTRA_ARGS:-}

here=$(cd "$(dirname "$0")" && pwd)
data_dir="$STATE_DIR/sdwebui"
mkdir -p "$data_dir" "$HOME" "$XDG_CACHE_HOME" "$GRADIO_TEMP_DIR"
# Settings the server starts with (it rewrites config.json when options change).
if [ ! -f "$data_dir/config.json" ]; then
    cp "$here/config.json" "$data_dir/config.json"
fi

args=(
    # launch.py would otherwise install torch/requirements, clone repositories and run
    # extension installers; all of it is baked into the image. (--skip-python-version-check
    # and --skip-torch-cuda-test only act inside the step this skips.)
    --skip-prepare-environment --skip-install --skip-version-check
    --api --nowebui --listen --port "$SERVER_PORT"
    # config.json, cache.json, params.txt, outputs and the default model folders.
    --data-dir "$data_dir"
    # No SD 1.5 download when no checkpoint is found, no CLIP weights download.
    --no-download-sd-model --do-not-download-clip
    --disable-console-progressbars
)

# Each kind of model comes from the bucket when the bucket has its folder. Otherwise the
# server keeps its default under --data-dir: it creates missing model folders at start, which
# the read-only mount would refuse.
model_dir_flag() {
    if [ -d "$MODEL_DIR/$2" ]; then
        args+=("$1" "$MODEL_DIR/$2")
    fi
}
model_dir_flag --ckpt-dir Stable-diffusion
model_dir_flag --lora-dir Lora
model_dir_flag --vae-dir VAE
model_dir_flag --embeddings-dir embeddings
model_dir_flag --esrgan-models-path ESRGAN

# A static-model runtime loads its checkpoint at start; a dynamic one (MODEL_FILENAME unset)
# starts with whatever the server picks and the agent switches per task.
if [ -n "$MODEL_FILENAME" ]; then
    ckpt="$MODEL_DIR/Stable-diffusion/$MODEL_FILENAME"
    if [ ! -f "$ckpt" ]; then
        echo "launch: MODEL_FILENAME '$MODEL_FILENAME' is not in the model bucket ($ckpt)" >&2
        exit 64
    fi
    args+=(--ckpt "$ckpt")
fi

read -r -a extra <<<"$SERVER_EXTRA_ARGS"
exec python -u launch.py "${args[@]}" "${extra[@]}" "$@"
