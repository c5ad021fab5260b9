#!/usr/bin/env bash
# Regenerate varattn's result tables.
#
#   ./reproduce.sh [--preset smoke|cpu|full|paper|reference] [--seeds N] [--only demo,nmt,vqa,vqa-bayes,g2p,wmt17]
#                  [--jobs N] [--device cpu|cuda|cuda:N] [--quiet]
#
# Builds the release binary, prepares and verifies the data (offline sets; the Hub for paper), trains and evaluates every
# run a table needs, and writes results/<preset>/: one Markdown and one CSV file per table, figures,
# and each run's directory under results/<preset>/runs/. The runs are the ones the table registry
# configs/tables.toml gives the preset (`varattn tables --preset P` prints them): each table's rows
# with their seeds (3435, 3436, ...), e.g. three seeds for the rows behind the main claims under
# cpu and full. --seeds N gives every row at least N seeds (a row the registry gives more keeps its
# count). Finished runs are skipped and interrupted runs resume from their checkpoints, so
# rerunning after a kill finishes without redoing work.
# --jobs N trains N runs at once, each on cores/N threads (RAYON_NUM_THREADS), its output in
# results/<preset>/logs/; default: one job per core for smoke and cpu (the models are small, so one
# thread per run uses a core better than two threads on one run), one job for paper. A run's
# numbers depend on its thread count (sums split across threads change order), which the run
# records: results/cpu was trained on one thread per run (the default on any machine with
# --jobs equal to its cores).
# --device cuda trains and evaluates every run on the GPU (the demo stays on the CPU) with a binary
# built with the `cuda` feature (cargo build --features cuda into target/cuda, unless VARATTN_BIN
# names one, e.g. scripts/cuda-build.sh's), and writes results/cuda/<preset>/ so that CPU and GPU
# runs never mix.
# --preset full trains at the sizes of the final tables (configs/<task>/presets.toml [full]).
# --preset reference trains the NMT rows soft, exact and var-enum at the settings of an
# independent PyTorch implementation (configs/nmt/presets.toml [reference]) into
# results/reference/; --only defaults to nmt there.
# Environment: VARATTN_BIN (use this binary instead of building one), VARATTN_RESULTS (results
# root instead of ./results), VARATTN_CACHE (data cache, default ~/.cache/varattn).
#   demo  every objective on a synthetic reversal task (seconds)
#   nmt   Deng et al. Tables 1-3 (NMT columns) on ding-de-en (paper preset: IWSLT14 from the Hub)
#   vqa   Deng et al. Table 1 (VQA columns) on easy-VQA, with low-data and noisy conditions
#   vqa-bayes  alignment attention (AA-CT/GAN/OT) and Bayesian attention (BAM, BABN) on easy-VQA
#   g2p   Lawson et al.'s hard monotonic alignments (REINFORCE, NVIL, VIMCO, per-step VIMCO) on the
#         CMU Pronouncing Dictionary, clean and noisy letters
#   wmt17 Deng et al.'s WMT17 English->German line (soft vs variational attention) on wmt/wmt17
#         from the Hub: paper preset only (5.9M pairs); under smoke and cpu it says so and skips
set -euo pipefail
cd "$(dirname "$0")"

preset=cpu
seeds=
only=
quiet=
jobs=
device=cpu
while [ $# -gt 0 ]; do
  case "$1" in
    --preset) preset="${2:?--preset needs a value}"; shift 2 ;;
    --preset=*) preset="${1#*=}"; shift ;;
    --seeds) seeds="${2:?--seeds needs a value}"; shift 2 ;;
    --seeds=*) seeds="${1#*=}"; shift ;;
    --only) only="${2:?--only needs a value}"; shift 2 ;;
    --only=*) only="${1#*=}"; shift ;;
    --jobs) jobs="${2:?--jobs needs a value}"; shift 2 ;;
    --jobs=*) jobs="${1#*=}"; shift ;;
    --device) device="${2:?--device needs a value}"; shift 2 ;;
    --device=*) device="${1#*=}"; shift ;;
    --quiet) quiet=--quiet; shift ;;
    -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1' "$0"; exit 0 ;;
    *) echo "reproduce.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done
case "$preset" in
  smoke) demo_steps=30 ;;
  cpu) demo_steps=150 ;;
  full) demo_steps=300 ;;
  paper) demo_steps=1000 ;;
  reference) demo_steps=150 ;;
  *) echo "reproduce.sh: unknown preset '$preset' (smoke, cpu, full, paper or reference)" >&2; exit 2 ;;
esac
if [ -z "$only" ]; then
  if [ "$preset" = reference ]; then only=nmt; else only=demo,nmt,vqa,vqa-bayes,g2p,wmt17; fi
fi
case "$seeds" in '') ;; 0|*[!0-9]*) echo "reproduce.sh: --seeds takes a positive number" >&2; exit 2 ;; esac
cores=$(nproc 2>/dev/null || echo 1)
if [ -z "$jobs" ]; then
  if [ "$preset" = paper ]; then jobs=1; else jobs=$cores; fi
fi
case "$jobs" in ''|0|*[!0-9]*) echo "reproduce.sh: --jobs takes a positive number" >&2; exit 2 ;; esac
[[ $device =~ ^(cpu|cuda(:[0-9]+)?)$ ]] || { echo "reproduce.sh: --device takes cpu, cuda or cuda:N, got '$device'" >&2; exit 2; }
wants() { case ",$only," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }

start=$(date +%s)
# CPU: the plain build and results/; a GPU: the `cuda` build in its own target dir and results/cuda/
if [ "$device" = cpu ]; then
  build=(--target-dir "${CARGO_TARGET_DIR:-target}"); results="${VARATTN_RESULTS:-results}"
else
  build=(--features cuda --target-dir "${CARGO_TARGET_DIR:-target}/cuda"); results="${VARATTN_RESULTS:-results/cuda}"
fi
if [ -n "${VARATTN_BIN:-}" ]; then
  bin="$VARATTN_BIN"
else
  echo "== building varattn (release, ${build[*]})"
  cargo build --release --quiet -p varattn-lab "${build[@]}"
  bin="${build[-1]}/release/varattn"
fi
out="$results/$preset"
mkdir -p "$out"

# The runs of the wanted tables (configs/tables.toml), one "group task row seed" line each; a run
# that two tables share comes once, under the first group that lists it.
groups=$(tr ',' '\n' <<<"$only" | grep -vx demo | paste -sd, -) || true
runs=
if [ -n "$groups" ]; then
  runs=$("$bin" tables --preset "$preset" --only "$groups" --with-group ${seeds:+--seeds "$seeds"})
fi
# count GROUP: how many runs the group's tables need under the preset
count() { grep -c "^$1 " <<<"$runs" || true; }

# The NMT corpus of the preset (configs/nmt/presets.toml): ding-de-en offline, iwslt14-de-en from
# the Hugging Face Hub for `paper` (HF_ENDPOINT, HF_TOKEN, HF_HOME / HF_HUB_CACHE and
# HF_HUB_OFFLINE=1 are honoured).
nmt_corpus=$(sed -n "/^\[$preset\]/,/^\[/p" configs/nmt/presets.toml | grep -o 'corpus = "[^"]*"' | head -n 1 | cut -d'"' -f2)
nmt_corpus=${nmt_corpus:-ding-de-en}
if wants nmt; then
  echo "== data: $nmt_corpus"
  "$bin" data prepare "$nmt_corpus"
fi

if wants demo; then
  echo "== demo: every objective on the synthetic reversal task"
  "$bin" demo --steps "$demo_steps" --seed 3435 --out "$out/demo"
fi

# run_group GROUP: train and evaluate every run of the group's tables, configs/<task>/<row>.toml with
# each of its seeds (finished runs are skipped, interrupted ones resume). A run that fails (e.g. a
# NaN loss) is reported and the other runs still go on; the script exits non-zero at the end,
# after the tables. With --jobs N > 1 the runs go to a pool of N background jobs whose output goes
# to $out/logs/.
failed_list=$(mktemp)
trap 'rm -f "$failed_list"' EXIT
if [ "$jobs" -gt 1 ]; then
  # a kill or Ctrl-C of the script stops the runs it started (they resume on the next call)
  trap 'kill $(jobs -p) 2>/dev/null; wait; rm -f "$failed_list"; exit 130' INT TERM
  export RAYON_NUM_THREADS=${RAYON_NUM_THREADS:-$(( cores / jobs > 0 ? cores / jobs : 1 ))}
  mkdir -p "$out/logs"
  echo "== $jobs jobs at once, $RAYON_NUM_THREADS thread(s) each; their output: $out/logs/"
fi
run_one() {
  local task=$1 row=$2 seed=$3 t0 log ok=
  t0=$(date +%s)
  local cmd=("$bin" train --config "configs/$task/$row.toml" --preset "$preset" --seed "$seed" --device "$device" $quiet
    --out "$out/runs/$task/$row/seed-$seed" --stale-to "$out/stale")
  if [ "$jobs" -gt 1 ]; then
    # appended, so that a rerun that skips or resumes the run keeps the earlier output
    log="$out/logs/$task-$row-seed-$seed.log"
    echo "== $(date -u +%Y-%m-%dT%H:%M:%SZ) ${cmd[*]}" >>"$log"
    "${cmd[@]}" >>"$log" 2>&1 &
    local child=$!
    trap 'kill "$child" 2>/dev/null; wait "$child"; exit 130' INT TERM
    wait "$child" && ok=1
    if [ -z "$ok" ]; then
      # the error and its causes (not the backtrace after them), else the log's last lines
      local why
      why=$(awk '/^Error:/ { p = 1 } /^Stack backtrace:/ { p = 0 } p' "$log" | sed '/^$/d' | head -n 12)
      [ -n "$why" ] || why=$(tail -n 5 "$log")
      printf '%s\n' "$why" | sed 's/^/   | /' >&2
    fi
  else
    "${cmd[@]}" && ok=1
  fi
  if [ -z "$ok" ]; then
    echo "   ($task $row, seed $seed: FAILED after $(( $(date +%s) - t0 )) s; the other rows go on)" >&2
    echo "$task/$row seed $seed" >>"$failed_list"
  elif [ -n "${log:-}" ] && tail -n 1 "$log" | grep -q ': finished already'; then
    echo "   ($task $row, seed $seed: finished already)"
  else
    echo "   ($task $row, seed $seed: $(( $(date +%s) - t0 )) s)"
  fi
}
run_group() {
  local group=$1 g task row seed
  while read -r -u 3 g task row seed; do
    [ "$g" = "$group" ] || continue
    if [ "$jobs" -gt 1 ]; then
      while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
      run_one "$task" "$row" "$seed" &
    else
      run_one "$task" "$row" "$seed"
    fi
  done 3<<<"$runs"
}

# wanted GROUP: the group is wanted and its tables train something under the preset (else it says so)
wanted() {
  wants "$1" || return 1
  [ "$(count "$1")" -gt 0 ] && return 0
  echo "== $1: nothing to train under preset $preset (configs/tables.toml)"
  return 1
}

if wanted nmt; then
  echo "== NMT (Deng et al. Tables 1-3) on $nmt_corpus, preset $preset, $(count nmt) run(s)"
  run_group nmt
fi

if wanted vqa; then
  echo "== VQA (Deng et al. Table 1, VQA columns) on easy-VQA, preset $preset, $(count vqa) run(s)"
  "$bin" data prepare easy-vqa
  run_group vqa
fi

if wanted vqa-bayes; then
  echo "== VQA: alignment attention and Bayesian attention (Zhang et al. 2021; Fan et al. 2020), preset $preset, $(count vqa-bayes) run(s)"
  "$bin" data prepare easy-vqa
  run_group vqa-bayes
fi

if wanted g2p; then
  echo "== G2P (Lawson et al. hard monotonic alignments) on cmudict, preset $preset, $(count g2p) run(s)"
  "$bin" data prepare cmudict
  run_group g2p
fi

if wants wmt17; then
  if [ "$(count wmt17)" -gt 0 ]; then
    echo "== WMT17 English->German (Deng et al., section 5): soft vs variational attention, preset $preset, $(count wmt17) run(s)"
    "$bin" data prepare wmt17-de-en
    run_group wmt17
  else
    echo "== WMT17 English->German: skipped under preset $preset (configs/tables.toml trains it under paper only: 5.9M pairs from the Hub, for a GPU)"
  fi
fi

wait
echo "== tables"
"$bin" report --preset "$preset" --results "$results"
echo "== done in $(( $(date +%s) - start )) s; tables under $out/"
if [ -s "$failed_list" ]; then
  echo "reproduce.sh: $(wc -l <"$failed_list") run(s) failed (their rows are missing from the tables): $(paste -sd, "$failed_list")" >&2
  exit 1
fi
