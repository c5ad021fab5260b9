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
source bench/setup.sh "$@"
exec "$bin" parity --pytorch "$python" "${args[@]}"
