#!/usr/bin/env bash
# Start the learner on the GPU PC: it binds the data and weights ports, trains, checkpoints.
#
#   launch/run_learner.sh [more `serl learner` flags ...]
#
# Settings come from environment variables (defaults in brackets):
#   SERL_BIND          address to bind: 0.0.0.0 = every interface, which needs the keys
#                      below or SERL_INSECURE=1; 127.0.0.1 = actors on this PC only [0.0.0.0]
#   SERL_DATA_PORT     transitions and handshake port [5555]
#   SERL_WEIGHTS_PORT  policy weights port [5556]
#   SERL_KEYS          CURVE key directory with server.key_secret and authorized/ [keys]
#                      (used whenever it holds server.key_secret)
#   SERL_INSECURE      1: no keys, plain TCP (trusted, isolated networks only) [0]
#   SERL_CONFIG        JSON file shared with the actors: env, agent, agent_cfg [none]
#   SERL_ENV           env id; overrides the config file's [the config's, else Pendulum-v1]
#   SERL_RUN_DIR       checkpoint, replay buffer and metrics [runs/learner]
#   SERL_DEVICE        torch device [cuda if available, else cpu]
#   SERL_RESUME        auto: resume when SERL_RUN_DIR holds a checkpoint; 0: never [auto]
#   SERL               the serl command [../.venv/bin/serl beside this folder, else serl on PATH]
set -euo pipefail
# shellcheck source=launch/serl_command.sh
source "$(dirname "${BASH_SOURCE[0]}")/serl_command.sh"

bind="${SERL_BIND:-0.0.0.0}"
data_port="${SERL_DATA_PORT:-5555}"
weights_port="${SERL_WEIGHTS_PORT:-5556}"
keys="${SERL_KEYS:-keys}"
run_dir="${SERL_RUN_DIR:-runs/learner}"

if [[ -z "${SERL_DEVICE:-}" ]]; then
  # The Python beside the serl command has its torch; python3 on PATH may have none.
  python="$(dirname "$(command -v "${serl}")")/python"
  [[ -x "${python}" ]] || python=python3
  if "${python}" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    SERL_DEVICE=cuda
  else
    SERL_DEVICE=cpu
  fi
fi

args=(learner
  --data-endpoint "tcp://${bind}:${data_port}"
  --weights-endpoint "tcp://${bind}:${weights_port}"
  --run-dir "${run_dir}"
  --device "${SERL_DEVICE}")
if [[ -n "${SERL_CONFIG:-}" ]]; then
  args+=(--config "${SERL_CONFIG}")
fi
if [[ -n "${SERL_ENV:-}" ]]; then
  args+=(--env "${SERL_ENV}")
fi
# Off loopback only with CURVE keys (or SERL_INSECURE=1), the bind policy of serl.transport.
if [[ "${SERL_INSECURE:-0}" == "1" ]]; then
  args+=(--insecure)
elif [[ -f "${keys}/server.key_secret" ]]; then
  args+=(--keys-dir "${keys}")
elif [[ "${bind}" != 127.* && "${bind}" != "localhost" ]]; then
  echo "error: binding ${bind} needs ${keys}/server.key_secret (not found); run" \
    "'${serl} keys generate ${keys} --clients robot-0' on this machine, set SERL_KEYS," \
    "SERL_BIND=127.0.0.1 for actors on this PC only, or SERL_INSECURE=1 on a trusted network" >&2
  exit 2
fi
if [[ "${SERL_RESUME:-auto}" != "0" && -f "${run_dir}/checkpoint.safetensors" ]]; then
  echo "resuming from ${run_dir}/checkpoint.safetensors" >&2
  args+=(--resume)
fi

exec "${serl}" "${args[@]}" "$@"
