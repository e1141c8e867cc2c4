#!/usr/bin/env bash
# The guidance curve: class accuracy, confidence, diversity, Inception-style score and classifier-feature FID of
# DDIM-50 samples against the classifier-free guidance scale w, for a class-conditional run (default
# runs/digits-cond, made by
#   diffuse train --data digits --out runs/digits-cond --seed 0 --conditional --objective diffusion).
# Then the guidance options at large w: rescaling (φ = 0.7) and a limited interval (σ/α in [0.3, 5]).
# Usage: scripts/guidance.sh [RUN_DIR] [N_PER_CLASS]   Needs python3 for the tables.
set -euo pipefail
cd "$(dirname "$0")/.."
run=${1:-runs/digits-cond}
per=${2:-20}
bin=${DIFFUSE_BIN:-target/release/diffuse}
clf=runs/quality/classifier
[ -f "$clf/classifier.json" ] || "$bin" classifier train --data digits --out "$clf" --seed 0
out=runs/guidance
rm -rf "$out"; mkdir -p "$out"

# draw NAME W [FLAGS…]: per-class folders $out/NAME/cK, scored one class at a time (accuracy, diversity within
# the class) and pooled (Inception-style score, FID against the held-out digits; the labels are the folders).
draw() {
  local name=$1 w=$2; shift 2
  for k in 0 1 2 3 4 5 6 7 8 9; do
    "$bin" sample --run "$run" --sampler ddim --steps 50 --n "$per" --seed 1 --class "$k" --guidance "$w" "$@" \
      --out-dir "$out/$name/c$k" > /dev/null
    "$bin" classifier score --classifier "$clf" --images "$out/$name/c$k" --class "$k" --json > "$out/$name-c$k.json"
  done
  "$bin" classifier score --classifier "$clf" --images "$out/$name" --reference digits --json > "$out/$name.json"
}
ws="0 1 2 3 5 7.5 10 15"
for w in $ws; do draw "w$w" "$w"; done
for w in 7.5 15; do
  draw "w$w-rescale" "$w" --guidance-rescale 0.7
  draw "w$w-interval" "$w" --guidance-interval 0.3,5
done

python3 - "$out" $ws <<'PY'
import json, sys, os
out, ws = sys.argv[1], sys.argv[2:]
def row(name):
    rs = [json.load(open(os.path.join(out, f"{name}-c{k}.json"))) for k in range(10)]
    pooled = json.load(open(os.path.join(out, f"{name}.json")))
    mean = lambda key: sum(r[key] for r in rs) / 10
    return (mean("accuracy"), mean("confident_share"), mean("mean_pairwise_distance"),
            pooled["inception_score"], pooled["fid"])
head = "| accuracy (asked class) | p ≥ 0.9 | diversity within a class | Inception-style score | classifier FID |"
print("| w " + head); print("|---" * 6 + "|")
with open(os.path.join(out, "curve.csv"), "w") as csv:
    csv.write("w,accuracy,confident,diversity,inception_score,fid\n")
    for w in ws:
        a, c, d, i, f = row(f"w{w}")
        print(f"| {w} | {a*100:.1f}% | {c*100:.1f}% | {d:.3f} | {i:.2f} | {f:.2f} |")
        csv.write(f"{w},{a},{c},{d},{i},{f}\n")
print("\n| w | option " + head); print("|---" * 7 + "|")
for w in ["7.5", "15"]:
    for name, what in [(f"w{w}", "none"), (f"w{w}-rescale", "rescale φ = 0.7"), (f"w{w}-interval", "interval σ/α ∈ [0.3, 5]")]:
        a, c, d, i, f = row(name)
        print(f"| {w} | {what} | {a*100:.1f}% | {c*100:.1f}% | {d:.3f} | {i:.2f} | {f:.2f} |")
PY
"$bin" plot --csv "$out/curve.csv" --x w --y accuracy,confident --out docs/guidance-accuracy.png
"$bin" plot --csv "$out/curve.csv" --x w --y diversity --out docs/guidance-diversity.png
"$bin" plot --csv "$out/curve.csv" --x w --y fid --out docs/guidance-fid.png
