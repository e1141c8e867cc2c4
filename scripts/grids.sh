#!/usr/bin/env bash
# Samplers on different time grids, on the DDPM digits model: FID, precision and recall against the 297
# held-out digits (reference Inception, needs ../shared/weights) and the evaluation classifier's confident share.
# Usage: scripts/grids.sh [RUN_DIR]   (default runs/digits-ddpm, made by
#   diffuse train --data digits --out runs/digits-ddpm --seed 0 --objective diffusion); prints a table.
set -euo pipefail
cd "$(dirname "$0")/.."
run=${1:-runs/digits-ddpm}
bin=${DIFFUSE_BIN:-target/release/diffuse}
[ -x "$bin" ] || { cargo build --release; bin=${CARGO_TARGET_DIR:-target}/release/diffuse; }
clf=runs/quality/classifier
[ -f "$clf/classifier.json" ] || "$bin" classifier train --data digits --out "$clf" --seed 0
row() {
  local name=$1; shift
  "$bin" eval --run "$run" --n 297 --seed 1 --classifier "$clf" --json "$@" 2>/dev/null | python3 -c '
import json, sys
r = json.load(sys.stdin)
c = r["classifier"]
cells = [sys.argv[1], r["nfe_per_image"], "%.1f" % r["fid"], "%.2f" % r["precision"], "%.2f" % r["recall"],
         "%.1f%%" % (100 * c["confident_share"]), "%.1f" % (1000 * r["sampling_seconds_per_image"])]
print("| " + " | ".join(str(x) for x in cells) + " |")' "$name"
}
echo "| sampler, grid, steps | NFE | FID | precision | recall | confident (p ≥ 0.9) | ms per image |"
echo "|---|---|---|---|---|---|---|"
for k in 10 20 50; do row "ddim, trailing timesteps, $k" --sampler ddim --steps "$k"; done
for k in 10 20 50; do row "ddim, karras, $k" --sampler ddim --time-grid karras --steps "$k"; done
for k in 10 20; do row "dpmpp-2m, linspace timesteps, $k" --sampler dpmpp-2m --steps "$k"; done
for k in 10 20; do row "dpmpp-2m, karras, $k" --sampler dpmpp-2m --time-grid karras --steps "$k"; done
for k in 10 20; do
  row "heun ODE, karras on ve:0.002,80, $k" --sampler ode --ode-solver heun --sde ve:0.002,80 --time-grid karras --steps "$k"
done
row "ddpm, trailing timesteps, 1000" --sampler ddpm --steps 1000
