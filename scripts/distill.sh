#!/usr/bin/env bash
# Progressive distillation of the default digits run (issue 18): the teacher at several step counts beside
# students of 4 and 1 steps, judged as scripts/sweep-digits.sh judges (FID/precision/recall against the 297
# held-out digits, the classifier's confident share). Usage: scripts/distill.sh [RUN] (default runs/digits, the
# README's main job); writes RUN-4 and RUN-1 and prints a table.
set -euo pipefail
cd "$(dirname "$0")/.."
run=${1:-runs/digits}
bin=${DIFFUSE_BIN:-target/release/diffuse}
[ -x "$bin" ] || { cargo build --release; bin=${CARGO_TARGET_DIR:-target}/release/diffuse; }
clf=runs/quality/classifier
[ -f "$clf/classifier.json" ] || "$bin" classifier train --data digits --out "$clf" --seed 0
[ -f "$run-4/checkpoint.safetensors" ] || "$bin" distill --run "$run" --out "$run-4" --from-steps 64 --to-steps 4 --quiet
[ -f "$run-1/checkpoint.safetensors" ] || "$bin" distill --run "$run-4" --out "$run-1" --from-steps 4 --to-steps 1 --quiet
row() {
  local name=$1; shift
  "$bin" eval --n 297 --seed 1 --classifier "$clf" --json "$@" 2>/dev/null | python3 -c '
import json, sys
r = json.load(sys.stdin)
c = r["classifier"]
cells = [sys.argv[1], r["sampler"], r["nfe_per_image"], "%.1f" % r["fid"], "%.2f" % r["precision"],
         "%.2f" % r["recall"], "%.1f%%" % (100 * c["confident_share"]), c["classes_present"]]
print("| " + " | ".join(str(x) for x in cells) + " |", flush=True)' "$name"
}
echo "| model | sampler | NFE | FID | precision | recall | confident (p ≥ 0.9) | classes |"
echo "|---|---|---|---|---|---|---|---|"
row "teacher (its default)" --run "$run"
row "teacher" --run "$run" --sampler flow-euler --steps 64
row "teacher" --run "$run" --sampler flow-heun --steps 3
row "teacher" --run "$run" --sampler ddim --steps 4 --time-grid flow-t
row "student, 4 steps" --run "$run-4"
row "teacher" --run "$run" --sampler ddim --steps 1 --time-grid flow-t
row "student, 1 step" --run "$run-1"
