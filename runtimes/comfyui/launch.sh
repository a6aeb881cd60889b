#!/bin/bash
# Starts ComfyUI as sdfleet pods expect it: on $SERVER_PORT, models from the read-only bucket
# mount through an extra_model_paths file, every write under $STATE_DIR or /tmp, no manager
# and nothing installed or downloaded. The contract (port, env, paths) is
# components/builders/server_contract.py; docs/runtime-images.md explains each flag.
# Arguments given to this script are appended to the server's flags.
set -euo pipefail

: "${SERVER_PORT:?SERVER_PORT must be set}"
: "${HOME:?}" "${XDG_CACHE_HOME:?}"
MODEL_DIR=${MODEL_DIR:-/models}
STATE_DIR=${STATE_DIR:-/var/lib/sdserver}
SERVER_EXTRA_ARGS=${SERVER_EXTRA_ARGS:-}

state="$STATE_DIR/comfyui"
mkdir -p "$state/output" "$state/input" "$state/user" "$HOME" "$XDG_CACHE_HOME"

# The bucket layout of docs/compute-plane.md#buckets-and-models. Folders missing from the
# bucket are simply empty lists to ComfyUI; it creates none.
paths_file="$state/extra_model_paths.yaml"
cat >"$paths_file" <<YAML
sdfleet:
    base_path: $MODEL_DIR
    checkpoints: checkpoints/
    loras: loras/
    vae: vae/
    controlnet: controlnet/
    upscale_models: upscale_models/
    embeddings: embeddings/
YAML

args=(
    --listen 0.0.0.0 --port "$SERVER_PORT"
    --extra-model-paths-config "$paths_file"
    --output-directory "$state/output"
    --input-directory "$state/input"
    # ComfyUI uses <dir>/temp and empties it at start.
    --temp-directory "$state"
    --user-directory "$state/user"
    # The default database sits in the install dir, which is read-only.
    --database-url "sqlite:///$state/user/comfyui.db"
    # API nodes call api.comfy.org with a user's key; pods have neither.
    --disable-api-nodes
)

read -r -a extra <<<"$SERVER_EXTRA_ARGS"
exec python -u main.py "${args[@]}" "${extra[@]}" "$@"
