#!/usr/bin/env bash
# The guidance curve: class accuracy, confidence and diversity of DDIM-50 samples against the classifier-free
# guidance scale w, for a class-conditional run (default runs/digits-cond, made by
#   diffuse train --data digits --out runs/digits-cond --seed 0 --conditional).
# Usage: scripts/guidance.sh [RUN_DIR] [N_PER_CLASS]   Needs python3 for the table.
set -euo pipefail
cd "$(dirname "$0")/.."
run=${1:-runs/digits-cond}
per=${2:-20}
bin=${DIFFUSE_BIN:-target/release/diffuse}
clf=runs/quality/classifier
[ -f "$clf/classifier.json" ] || "$bin" classifier train --data digits --out "$clf" --seed 0
out=runs/guidance
rm -rf "$out"; mkdir -p "$out"
for w in 0 1 2 3 5 7.5 10 15; do
  for k in 0 1 2 3 4 5 6 7 8 9; do
    "$bin" sample --run "$run" --sampler ddim --steps 50 --n "$per" --seed 1 --class "$k" --guidance "$w" \
      --out-dir "$out/w$w/c$k" > /dev/null
    "$bin" classifier score --classifier "$clf" --images "$out/w$w/c$k" --class "$k" --json > "$out/w$w/c$k.json"
  done
done
python3 - "$out" <<'PY'
import json, sys, os
out = sys.argv[1]
csv = open(os.path.join(out, "curve.csv"), "w")
csv.write("w,accuracy,confident,diversity\n")
print("| w | accuracy (asked class) | p ≥ 0.9 | mean pairwise distance |")
print("|---|---|---|---|")
for w in ["0", "1", "2", "3", "5", "7.5", "10", "15"]:
    rs = [json.load(open(os.path.join(out, f"w{w}", f"c{k}.json"))) for k in range(10)]
    acc = sum(r["accuracy"] for r in rs) / 10
    conf = sum(r["confident_share"] for r in rs) / 10
    div = sum(r["mean_pairwise_distance"] for r in rs) / 10
    print(f"| {w} | {acc*100:.1f}% | {conf*100:.1f}% | {div:.3f} |")
    csv.write(f"{w},{acc},{conf},{div}\n")
csv.close()
PY
"$bin" plot --csv "$out/curve.csv" --x w --y accuracy,confident --out docs/guidance-accuracy.png
"$bin" plot --csv "$out/curve.csv" --x w --y diversity --out docs/guidance-diversity.png
