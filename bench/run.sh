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
python=""
if [[ "${1:-}" == "--python" ]]; then
    python="$2"
    shift 2
fi
if [[ -z "$python" ]]; then
    venv="${VARATTN_BENCH_VENV:-bench/.venv}"
    if ! "$venv/bin/python" -c 'import torch' 2>/dev/null; then
        echo "bench: installing PyTorch into $venv (once; several GB)" >&2
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet -r bench/requirements.txt
    fi
    python="$venv/bin/python"
fi
bin="${VARATTN_BIN:-}"
if [[ -z "$bin" ]]; then
    cargo build --release --locked --quiet
    bin="${CARGO_TARGET_DIR:-target}/release/varattn"
fi
exec "$bin" bench --pytorch "$python" "$@"
