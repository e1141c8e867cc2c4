#!/usr/bin/env bash
# Reproduces the README's FID table: the DDPM digits run and the class-conditional digits run, sampled and
# measured by `diffuse eval` against the 297 held-out digits in the reference Inception's features (needs the
# weights: ../shared/weights, $DIFFUSE_INCEPTION or `diffuse fetch inception`).
# Usage: scripts/fid.sh [UNCOND_RUN] [COND_RUN]   (defaults runs/digits-ddpm, made by
#   diffuse train --data digits --out runs/digits-ddpm --seed 0 --objective diffusion,
# and runs/digits-cond, made by
#   diffuse train --data digits --out runs/digits-cond --seed 0 --conditional --objective diffusion)
set -euo pipefail
cd "$(dirname "$0")/.."
run=${1:-runs/digits-ddpm}
cond=${2:-runs/digits-cond}
bin=${DIFFUSE_BIN:-target/release/diffuse}
[ -x "$bin" ] || { cargo build --release; bin=${CARGO_TARGET_DIR:-target}/release/diffuse; }
clf=runs/quality/classifier
[ -f "$clf/classifier.json" ] || "$bin" classifier train --data digits --out "$clf" --seed 0
row() { # label, then eval flags
  local label=$1; shift
  "$bin" eval --json --classifier "$clf" --seed 1 "$@" | python3 -c "
import json, sys; r = json.load(sys.stdin); c = r['classifier']
acc = '–' if c['accuracy'] is None else f\"{100 * c['accuracy']:.1f}%\"
print(f\"| $label | {r['nfe_per_image']} | {r['sampling_seconds_per_image'] * 1000:.0f} ms | {r['fid']:.1f} | {1000 * r['kid']:.1f} | {r['precision']:.2f} | {r['recall']:.2f} | {c['classes_present']}/10 | {acc} |\")"
}
echo "| model, sampler | NFE | time per image | FID | KID ×10³ | precision | recall | classes | accuracy |"
echo "|---|---|---|---|---|---|---|---|---|"
row "DDPM, DDIM-50" --run "$run" --sampler ddim --steps 50 --n 297
row "DDPM, DDPM-1000" --run "$run" --sampler ddpm --steps 1000 --n 297
row "DDPM, DPM-Solver++(2M) 20" --run "$run" --sampler dpmpp-2m --steps 20 --n 297
for w in 1 3 7.5; do
  row "conditional, DDIM-50, w = $w" --run "$cond" --sampler ddim --steps 50 --n 30 --class all --guidance "$w"
done
