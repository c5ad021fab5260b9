# Sourced by bench/run.sh and bench/parity.sh: sets `python` (an interpreter with torch) and `bin`
# (the varattn binary) and leaves the remaining arguments in `args`.
#
# `--python PY` first uses PY; otherwise bench/requirements.txt is installed into bench/.venv
# (once) and its interpreter used. $VARATTN_BIN names a built binary; otherwise a release build.
python=""
args=("$@")
if [[ "${args[0]:-}" == "--python" ]]; then
    python="${args[1]}"
    args=("${args[@]:2}")
fi
if [[ -z "$python" ]]; then
    venv="${VARATTN_BENCH_VENV:-bench/.venv}"
    if ! "$venv/bin/python" -c 'import torch' 2>/dev/null; then
        echo "$(basename "$0"): installing PyTorch into $venv (once; several GB)" >&2
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet -r bench/requirements.txt
    fi
    python="$venv/bin/python"
fi
bin="${VARATTN_BIN:-}"
if [[ -z "$bin" ]]; then
    cargo build --release --locked --quiet -p varattn-lab
    bin="${CARGO_TARGET_DIR:-target}/release/varattn"
fi
