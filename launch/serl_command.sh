# Sourced by the launch scripts: sets `serl` to the serl command they run, the first of
#   $SERL (if set), the checkout's .venv/bin/serl (what scripts/setup.sh makes), serl on PATH.
# shellcheck shell=bash disable=SC2034  # `serl` is used by the script that sources this file

launch_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv_serl="$(dirname "${launch_dir}")/.venv/bin/serl"
if [[ -n "${SERL:-}" ]]; then
  serl="${SERL}"
elif [[ -x "${venv_serl}" ]]; then
  serl="${venv_serl}"
elif command -v serl >/dev/null; then
  serl=serl
else
  echo "error: no serl command: not ${venv_serl} (run scripts/setup.sh) nor on PATH;" \
    "activate the environment serl-suite is installed in, or set SERL=/path/to/serl" >&2
  exit 2
fi
