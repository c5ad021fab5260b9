#!/usr/bin/env bash
# Loss and every parameter gradient of varattn's NMT model against the PyTorch reference
# (bench/nmt_reference.py) at shared weights, on the same batch and sampled alignments, in f64
# without dropout, for the smoke and cpu presets and the objectives soft, exact, var-enum and
# var-sample (docs/parity.md).
#
#   bench/parity.sh [--python PY] [varattn parity options...]
#
# Without --python, installs bench/requirements.txt into bench/.venv (once) and uses it. Other
# options go to `varattn parity` (e.g. --presets smoke --rows soft,hard-enum --tolerance 1e-6).
# Writes results/parity/parity.{md,json}, prints the table, and exits non-zero when the loss or
# any gradient is beyond the tolerance (default 1e-4, max-abs error / max-abs reference value).
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
        echo "parity: installing PyTorch into $venv (once; several GB)" >&2
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
exec "$bin" parity --pytorch "$python" "$@"
