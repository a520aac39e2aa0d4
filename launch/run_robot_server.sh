#!/usr/bin/env bash
# Start the robot server on the robot PC: it owns the arm and serves it over ZeroMQ.
#
#   SERL_ROBOT_BACKEND=franka SERL_ROBOT_IP=172.16.0.2 launch/run_robot_server.sh [more flags ...]
#
# A Franka simulated over the real protocol (franky-sim, see launch/README.md):
#   SERL_ROBOT_BACKEND=franka SERL_ROBOT_IP=127.0.0.1 launch/run_robot_server.sh \
#     --franka.realtime-config ignore
#
# Settings come from environment variables (defaults in brackets):
#   SERL_ROBOT_BACKEND  sim, franka or ur [sim]
#   SERL_ROBOT_IP       the arm's address (franka: FCI address, or the one franky-sim prints;
#                       ur: control box) [backend default]
#   SERL_ROBOT_CONFIG   server config JSON: safety limits, profiles, reset poses [none]
#   SERL_ROBOT_BIND     address to bind [127.0.0.1: only clients on this PC]
#   SERL_ROBOT_PORT     port [5560]
#   SERL_KEYS           CURVE key directory with server.key_secret and authorized/ [keys]
#   SERL_INSECURE       1: bind a non-loopback address without keys [0]
#   SERL                the serl command [../.venv/bin/serl beside this folder, else on PATH]
set -euo pipefail
# shellcheck source=launch/serl_command.sh
source "$(dirname "${BASH_SOURCE[0]}")/serl_command.sh"

backend="${SERL_ROBOT_BACKEND:-sim}"
bind="${SERL_ROBOT_BIND:-127.0.0.1}"
keys="${SERL_KEYS:-keys}"

# --config is read first and the flags after override it, wherever it stands.
args=(robot-server --backend "${backend}" --endpoint "tcp://${bind}:${SERL_ROBOT_PORT:-5560}")
if [[ -n "${SERL_ROBOT_CONFIG:-}" ]]; then
  args+=(--config "${SERL_ROBOT_CONFIG}")
fi
if [[ -n "${SERL_ROBOT_IP:-}" ]]; then
  case "${backend}" in
    franka) args+=(--franka.robot-ip "${SERL_ROBOT_IP}") ;;
    ur) args+=(--ur.robot-ip "${SERL_ROBOT_IP}") ;;
  esac
fi
if [[ "${bind}" != "127.0.0.1" && "${bind}" != "localhost" ]]; then
  if [[ "${SERL_INSECURE:-0}" == "1" ]]; then
    args+=(--insecure)
  elif [[ -f "${keys}/server.key_secret" ]]; then
    args+=(--keys-dir "${keys}")
  else
    echo "error: binding ${bind} needs CURVE keys in ${keys}/ (server.key_secret, authorized/)" \
      "or SERL_INSECURE=1 on a trusted network (see launch/README.md)" >&2
    exit 2
  fi
fi

exec "${serl}" "${args[@]}" "$@"
