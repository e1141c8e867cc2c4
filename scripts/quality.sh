#!/usr/bin/env bash
# Reproduces the README's quality table: trains the evaluation classifier on the real digits, samples the
# DDPM run with DDIM-50 (and DDPM-1000), and scores both next to the held-out real digits.
# Usage: scripts/quality.sh [RUN_DIR]   (default runs/digits-ddpm, made by
#   diffuse train --data digits --out runs/digits-ddpm --seed 0 --objective diffusion)
set -euo pipefail
cd "$(dirname "$0")/.."
run=${1:-runs/digits-ddpm}
bin=${DIFFUSE_BIN:-target/release/diffuse}
[ -x "$bin" ] || { cargo build --release; bin=${CARGO_TARGET_DIR:-target}/release/diffuse; }
out=runs/quality
mkdir -p "$out"
rm -rf "$out/ddim50" "$out/ddpm1000" # sample refuses a folder that holds an earlier draw
[ -f "$out/classifier/classifier.json" ] || "$bin" classifier train --data digits --out "$out/classifier" --seed 0
"$bin" sample --run "$run" --sampler ddim --steps 50 --n 500 --seed 1 --out-dir "$out/ddim50" --grid "$out/ddim50.png"
"$bin" sample --run "$run" --sampler ddpm --steps 1000 --n 128 --seed 1 --out-dir "$out/ddpm1000" --grid "$out/ddpm1000.png"
echo "real held-out digits:"; "$bin" classifier score --classifier "$out/classifier" --data digits --split test
echo "DDIM-50 samples:";      "$bin" classifier score --classifier "$out/classifier" --images "$out/ddim50"
echo "DDPM-1000 samples:";    "$bin" classifier score --classifier "$out/classifier" --images "$out/ddpm1000"
