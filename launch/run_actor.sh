#!/usr/bin/env bash
# Start an actor on the robot PC: it connects to the learner, acts, streams transitions.
#
#   SERL_LEARNER_HOST=gpu-pc launch/run_actor.sh [more `serl actor` flags ...]
#
# Settings come from environment variables (defaults in brackets):
#   SERL_LEARNER_HOST  host name or address of the GPU PC (required)
#   SERL_DATA_PORT     the learner's data port [5555]
#   SERL_WEIGHTS_PORT  the learner's weights port [5556]
#   SERL_KEYS          key directory with server.key and <key name>.key_secret [keys]
#   SERL_KEY_NAME      this actor's key name, as given to `serl keys generate --clients` [actor]
#   SERL_INSECURE      1: no keys (the learner must run with SERL_INSECURE=1 too) [0]
#   SERL_CONFIG        the JSON file the learner uses (env, agent, agent_cfg) [none]
#   SERL_ENV           env id; overrides the config file's [the config's, else Pendulum-v1]
#   SERL_ACTOR_ID      stable name of this robot [the host name]
#   SERL_CONTROL_HZ    fixed control rate [10]
#   SERL_SOURCE        transition tag: real, sim or online [real]
#   SERL_SPILL_DIR     where chunks spill when the learner is unreachable [spill]
#   SERL_OUTBOX_LIMIT  chunks held in memory only, the most a power loss can lose [16]
#   SERL_SILENCE_S     reconnect after the learner was silent this long [10]
#   SERL               the serl command [../.venv/bin/serl beside this folder, else serl on PATH]
set -euo pipefail
# shellcheck source=launch/serl_command.sh
source "$(dirname "${BASH_SOURCE[0]}")/serl_command.sh"

host="${SERL_LEARNER_HOST:?set SERL_LEARNER_HOST to the host name or address of the GPU PC}"
keys="${SERL_KEYS:-keys}"
key_name="${SERL_KEY_NAME:-actor}"

args=(actor
  --learner-host "${host}"
  --data-port "${SERL_DATA_PORT:-5555}"
  --weights-port "${SERL_WEIGHTS_PORT:-5556}"
  --actor-id "${SERL_ACTOR_ID:-$(hostname)}"
  --control-hz "${SERL_CONTROL_HZ:-10}"
  --source "${SERL_SOURCE:-real}"
  --spill-dir "${SERL_SPILL_DIR:-spill}"
  --outbox-limit "${SERL_OUTBOX_LIMIT:-16}"
  --silence-timeout-s "${SERL_SILENCE_S:-10}")
if [[ -n "${SERL_CONFIG:-}" ]]; then
  args+=(--config "${SERL_CONFIG}")
fi
if [[ -n "${SERL_ENV:-}" ]]; then
  args+=(--env "${SERL_ENV}")
fi
if [[ "${SERL_INSECURE:-0}" != "1" ]]; then
  for file in "${keys}/server.key" "${keys}/${key_name}.key_secret"; do
    if [[ ! -f "${file}" ]]; then
      echo "error: ${file} not found; copy server.key and ${key_name}.key_secret from the" \
        "learner's key directory (see launch/README.md)" >&2
      exit 2
    fi
  done
  args+=(--keys-dir "${keys}" --key-name "${key_name}")
fi

exec "${serl}" "${args[@]}" "$@"
