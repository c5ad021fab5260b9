#!/usr/bin/env bash
# Regenerate varattn's result tables.
#
#   ./reproduce.sh [--preset smoke|cpu|paper] [--seed N]
#
# Today it builds the release binary, prepares and verifies the offline German-English corpus
# (ding-de-en, from Debian's trans-de-en package) and trains the synthetic reversal model with
# every objective of Deng et al. (2018), writing results/<preset>/demo/{table.md,table.csv,config.json}.
# The paper tables (NMT, VQA, VIMCO/NVIL, alignment and Bayesian attention) join as their
# experiments land; see README.md.
set -euo pipefail
cd "$(dirname "$0")"

preset=cpu
seed=3435
while [ $# -gt 0 ]; do
  case "$1" in
    --preset) preset="${2:?--preset needs a value}"; shift 2 ;;
    --preset=*) preset="${1#*=}"; shift ;;
    --seed) seed="${2:?--seed needs a value}"; shift 2 ;;
    --seed=*) seed="${1#*=}"; shift ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "reproduce.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done
case "$preset" in
  smoke) steps=30 ;;
  cpu) steps=150 ;;
  paper) steps=1000 ;;
  *) echo "reproduce.sh: unknown preset '$preset' (smoke, cpu or paper)" >&2; exit 2 ;;
esac

start=$(date +%s)
echo "== building varattn (release)"
cargo build --release --quiet
bin=target/release/varattn
out="results/$preset"
mkdir -p "$out"

echo "== data: ding-de-en"
"$bin" data prepare ding-de-en

echo "== demo: every objective on the synthetic reversal task (seed $seed)"
"$bin" demo --steps "$steps" --seed "$seed" --out "$out/demo"

echo "== done in $(( $(date +%s) - start )) s; tables under $out/"
