#!/usr/bin/env bash
# Execute the notebooks headless with the evcxr Jupyter kernel (`rust`); fail on any error or
# failed assertion (a panic or an error returned with `?` prints to stderr, which evcxr does not
# report as a failed cell: any stderr output fails the notebook), when the last cell does not print
# "all checks passed", or when a notebook shows no figure.
#
#   notebooks/run.sh [--update] [NOTEBOOK.ipynb ...]     (default: every notebooks/*.ipynb)
#
# Each notebook is executed by `jupyter nbconvert --execute --to notebook --allow-errors` (no
# per-cell timeout; every cell runs, errors are recorded and judged afterwards) into a temporary
# copy; with --update the executed copies, outputs and figures included, are written back into
# notebooks/. A failed notebook's executed copy is kept under $EVCXR_TMPDIR/failed/.
#
# Installs what is missing, and only that:
#   * evcxr_jupyter 0.22.0   `cargo install --locked evcxr_jupyter --version 0.22.0` (~/.cargo/bin);
#   * its kernel spec        `evcxr_jupyter --install` (~/.local/share/jupyter/kernels/rust);
#   * Jupyter's executor     nbconvert, nbclient, ipykernel (pinned below) with pip into a virtual
#                            environment at $VARATTN_NB_VENV (default <repo>/.cache/notebooks/venv,
#                            git-ignored).
#
# One evcxr build directory for all notebooks: EVCXR_TMPDIR (default
# <cargo target dir>/evcxr-notebooks), seeded with the repository's Cargo.lock, so varattn and its
# dependencies compile once (the first notebook) at opt-level 3 without debug assertions (see below),
# and every later notebook only compiles its own cells. Notebooks run one after another (the build directory is shared).
#
# Environment: VARATTN_CACHE (data cache the NMT/VQA notebooks prepare data into; default
# ~/.cache/varattn), VARATTN_NB_VENV, EVCXR_TMPDIR, CARGO_TARGET_DIR.
set -euo pipefail

EVCXR_VERSION=0.22.0
PIP_PINS=(nbconvert==7.17.2 nbclient==0.11.0 ipykernel==7.4.0 jupyter_client==8.10.0 jupyter_core==5.9.1 nbformat==5.11.1)

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
update=0
notebooks=()
for arg in "$@"; do
  case "$arg" in
    --update) update=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d'; exit 0 ;;
    *.ipynb) notebooks+=("$(cd "$(dirname "$arg")" && pwd)/$(basename "$arg")") ;;
    *) echo "run.sh: unknown argument '$arg' (expected --update or a .ipynb file)" >&2; exit 2 ;;
  esac
done
if [ ${#notebooks[@]} -eq 0 ]; then
  notebooks=("$here"/*.ipynb)
fi

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# --- evcxr_jupyter --------------------------------------------------------------------------
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
if ! cargo install --list 2>/dev/null | grep -q "^evcxr_jupyter v$EVCXR_VERSION:"; then
  echo "[notebooks] installing evcxr_jupyter $EVCXR_VERSION (cargo install --locked)"
  t0=$(now)
  cargo install --locked evcxr_jupyter --version "$EVCXR_VERSION"
  echo "[notebooks] evcxr_jupyter installed in $(since "$t0") s"
fi
kernel_json="${XDG_DATA_HOME:-$HOME/.local/share}/jupyter/kernels/rust/kernel.json"
if ! grep -q evcxr_jupyter "$kernel_json" 2>/dev/null; then
  echo "[notebooks] installing the rust kernel spec (evcxr_jupyter --install)"
  evcxr_jupyter --install
fi

# --- Jupyter's executor in a virtual environment ----------------------------------------------
venv="${VARATTN_NB_VENV:-$root/.cache/notebooks/venv}"
if ! "$venv/bin/python" -c 'import nbconvert, nbclient, ipykernel' 2>/dev/null \
   || [ "$("$venv/bin/python" -c 'import nbconvert; print(nbconvert.__version__)' 2>/dev/null)" != "7.17.2" ]; then
  echo "[notebooks] installing ${PIP_PINS[*]} into $venv"
  t0=$(now)
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${PIP_PINS[@]}"
  echo "[notebooks] Python packages installed in $(since "$t0") s"
fi

# --- one shared evcxr build directory -------------------------------------------------------
target_dir="${CARGO_TARGET_DIR:-$root/target}"
export EVCXR_TMPDIR="${EVCXR_TMPDIR:-$target_dir/evcxr-notebooks}"
mkdir -p "$EVCXR_TMPDIR"
cp "$root/Cargo.lock" "$EVCXR_TMPDIR/Cargo.lock"   # the versions the repository is tested with
# evcxr builds in cargo's dev profile with debug assertions and overflow checks on, whatever `:opt`
# says; cargo's profile variables override that, so the notebooks (two of which train a model to
# convergence) run the code `cargo build --release` makes. Numbers do not depend on these settings
# (no fast-math, no contraction): they only change speed.
export CARGO_PROFILE_DEV_OPT_LEVEL=3 CARGO_PROFILE_DEV_DEBUG_ASSERTIONS=false CARGO_PROFILE_DEV_OVERFLOW_CHECKS=false

work="$(mktemp -d "${TMPDIR:-/tmp}/varattn-notebooks.XXXXXX")"
trap 'rm -rf "$work"' EXIT
export VARATTN_NOTEBOOK_FIGURES="$work/figures"

failed=()
total0=$(now)
for nb in "${notebooks[@]}"; do
  name="$(basename "$nb")"
  t0=$(now)
  # The kernel starts in the notebook's folder, so `:dep varattn = { path = ".." }` is the repository root and `:dep varattn-lab = { path = "../lab" }` its lab/.
  if "$venv/bin/jupyter" nbconvert --to notebook --execute "$nb" --output-dir "$work" --output "$name" \
       --ExecutePreprocessor.kernel_name=rust --ExecutePreprocessor.timeout=-1 \
       --ExecutePreprocessor.record_timing=False --allow-errors --log-level=WARN \
     && "$venv/bin/python" - "$work/$name" <<'PY'
# evcxr 0.22 answers "ok" to a cell that panicked (a failed assert!) or returned an error through
# `?`: both only print to stderr. So: no error output, no stderr at all, the last code cell
# prints "all checks passed", and at least one figure.
import json, sys
path = sys.argv[1]
cells = [c for c in json.load(open(path))["cells"] if c["cell_type"] == "code"]
problems = []
figures = 0
for i, c in enumerate(cells):
    for o in c.get("outputs", []):
        figures += "image/png" in o.get("data", {})
        if o.get("output_type") == "error":
            problems.append(f"code cell {i + 1}: error {o.get('ename')}: {o.get('evalue')}")
        elif o.get("output_type") == "stream" and o.get("name") == "stderr" and "".join(o["text"]).strip():
            problems.append(f"code cell {i + 1}: stderr: {''.join(o['text']).strip()[:300]}")
last = "".join("".join(o.get("text", [])) for o in cells[-1].get("outputs", []) if o.get("name") == "stdout")
if "all checks passed" not in last.splitlines():
    problems.append('the last code cell did not print "all checks passed"')
if figures == 0:
    problems.append("no figure (image/png output)")
if problems:
    sys.exit(path + ":\n  " + "\n  ".join(problems[:20]))
print(f"  {figures} figure(s), {len(cells)} code cells")
PY
  then
    echo "[notebooks] $name: ok in $(since "$t0") s"
    if [ "$update" = 1 ]; then
      cp "$work/$name" "$nb"
    fi
  else
    echo "[notebooks] $name: FAILED after $(since "$t0") s" >&2
    failed+=("$name")
    if [ -f "$work/$name" ]; then   # keep the executed copy to read its outputs
      mkdir -p "$EVCXR_TMPDIR/failed" && cp "$work/$name" "$EVCXR_TMPDIR/failed/$name"
      echo "[notebooks] executed copy kept at $EVCXR_TMPDIR/failed/$name" >&2
    fi
  fi
done
echo "[notebooks] ${#notebooks[@]} notebook(s) in $(since "$total0") s; build directory $EVCXR_TMPDIR"
if [ ${#failed[@]} -gt 0 ]; then
  echo "[notebooks] failed: ${failed[*]}" >&2
  exit 1
fi
