#!/usr/bin/env bash
# Training-step throughput of varattn against its PyTorch reference, on this machine, in one run.
#
#   bench/run.sh [--python PY] [varattn bench options...]
#
# Without --python, installs bench/requirements.txt into bench/.venv (once) and uses it. On a
# machine with PyTorch installed already (the GPU machine), pass --python python3. Every other
# option goes to `varattn bench` (e.g. --presets smoke,cpu,paper --steps 20). Writes
# results/bench/bench.{md,csv,json} and prints the table.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/setup.sh "$@"
exec "$bin" bench --pytorch "$python" "${args[@]}"
