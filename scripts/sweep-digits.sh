#!/usr/bin/env bash
# The sweep that chose the digits defaults (issue 18): each training recipe at the main job's step count, then its
# samples judged by FID/precision/recall against the 297 held-out digits (reference Inception, ../shared/weights)
# and by the evaluation classifier (confident: p ≥ 0.9; real held-out digits: 95.3%).
# Usage: scripts/sweep-digits.sh [OUT] [NAME...]   (default runs/sweep-digits, every recipe); prints a table.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/sweep-digits}; shift || true
bin=${DIFFUSE_BIN:-target/release/diffuse}
[ -x "$bin" ] || { cargo build --release; bin=${CARGO_TARGET_DIR:-target}/release/diffuse; }
clf=runs/quality/classifier
[ -f "$clf/classifier.json" ] || "$bin" classifier train --data digits --out "$clf" --seed 0
# name | train flags | samplers to judge it with (';'-separated eval flags; empty: the run's default)
recipes=(
  "eps|--objective diffusion|--sampler ddim --steps 50;--sampler dpmpp-2m --time-grid karras --steps 10"
  "v-minsnr5|--objective diffusion --prediction v --min-snr-gamma 5|--sampler ddim --steps 50"
  "edm|--objective edm|;--sampler heun --steps 10"
  "edm2-p|--objective edm --p-mean-std -0.4 1.0|"
  "flow-logit|--objective flow|;--sampler flow-euler --steps 50"
  "flow-uniform|--objective flow --flow-times uniform|"
  "eps-lr1e-3|--objective diffusion --lr 1e-3|--sampler ddim --steps 50"
  "edm-lr1e-3|--objective edm --lr 1e-3|"
  "edm-lr2e-3|--objective edm --lr 2e-3|"
  "flow-lr1e-3|--objective flow --lr 1e-3|"
)
want=("$@")
mkdir -p "$out"
row() {
  local name=$1 run=$2 flags=$3 seconds=$4
  # shellcheck disable=SC2086
  "$bin" eval --run "$run" --n 297 --seed 1 --classifier "$clf" --json $flags 2>/dev/null | python3 -c '
import json, sys
r = json.load(sys.stdin)
c = r["classifier"]
cells = [sys.argv[1], r["sampler"], r["nfe_per_image"], sys.argv[2], "%.1f" % r["fid"], "%.2f" % r["precision"],
         "%.2f" % r["recall"], "%.1f%%" % (100 * c["confident_share"]), c["classes_present"]]
print("| " + " | ".join(str(x) for x in cells) + " |", flush=True)' "$name" "$seconds"
}
echo "| recipe | sampler | NFE | train s | FID | precision | recall | confident (p ≥ 0.9) | classes |"
echo "|---|---|---|---|---|---|---|---|---|"
for r in "${recipes[@]}"; do
  IFS='|' read -r name train samplers <<<"$r"
  if [ ${#want[@]} -gt 0 ] && [[ ! " ${want[*]} " == *" $name "* ]]; then continue; fi
  run=$out/$name
  if [ ! -f "$run/checkpoint.safetensors" ]; then
    # shellcheck disable=SC2086
    "$bin" train --data digits --out "$run" --seed 0 --quiet $train >"$run.log" 2>&1
  fi
  seconds=$(grep -o 'in [0-9.]* s' "$run.log" 2>/dev/null | head -1 | tr -dc '0-9.' || true)
  IFS=';' read -ra evals <<<"$samplers"
  [ ${#evals[@]} -eq 0 ] && evals=("")
  for e in "${evals[@]}"; do row "$name" "$run" "$e" "$seconds"; done
done
