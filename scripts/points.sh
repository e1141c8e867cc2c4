#!/usr/bin/env bash
# Point clouds, measured: the torus and the letter A trained with several choices (objective, training times,
# Fourier features, steps, width; the default is flow matching with uniform times and `--fourier 6`), each
# scored by `diffuse eval` against the held-out draw of its shape (Chamfer distance, coverage and fidelity at
# 0.05, and for the torus the distance of the samples from the core circle, 0.3 on the surface).
#   scripts/points.sh [OUT] [N]          (N: points drawn per run, default 2000)
set -euo pipefail
out=${1:-runs/points}
n=${2:-2000}
bin=${DIFFUSE_BIN:-target/release/diffuse}
mkdir -p "$out"
configs=(
  "torus default:"
  "torus ddpm:--lr 1e-3 --objective diffusion --fourier 0"
  "torus flow:--lr 1e-3 --objective flow --fourier 0"
  "torus flow-uniform:--lr 1e-3 --objective flow --flow-times uniform --fourier 0"
  "torus ddpm-fourier6:--lr 1e-3 --objective diffusion --fourier 6"
  "torus 4x-steps:--lr 1e-3 --objective diffusion --fourier 0 --steps 12000"
  "torus 8x-steps:--lr 1e-3 --objective diffusion --fourier 0 --steps 24000"
  "torus wide-flow-2x:--lr 1e-3 --objective flow --fourier 0 --hidden 512 --steps 6000"
  "letter default:"
  "letter ddpm:--lr 1e-3 --objective diffusion --fourier 0"
  "letter ddpm-fourier6:--lr 1e-3 --objective diffusion --fourier 6"
  "letter flow-4x:--lr 1e-3 --objective flow --fourier 0 --steps 12000"
  "letter flow-6k:--lr 1e-3 --objective flow --fourier 0 --steps 6000"
  "letter flow-uniform-6k:--lr 1e-3 --objective flow --flow-times uniform --fourier 0 --steps 6000"
  "letter flow-fourier6-6k:--lr 1e-3 --objective flow --fourier 6 --steps 6000"
  "letter default-6k:--steps 6000"
  "letter default-12k:--steps 12000"
  "circle default:"
  "sphere default:"
)
for c in "${configs[@]}"; do
  name=${c%%:*}; flags=${c#*:}
  shape=${name%% *}; tag=${name#* }
  run="$out/$shape-$tag"
  if [ ! -f "$run/checkpoint.safetensors" ]; then
    # shellcheck disable=SC2086
    "$bin" train --data "points:$shape" --out "$run" --seed 0 --quiet $flags
  fi
  echo "== $shape $tag ($flags)"
  "$bin" eval --run "$run" --n "$n" --batch-size "$n"
  rm -rf "$out/samples-$shape-$tag"
  "$bin" sample --run "$run" --n "$n" --batch-size "$n" --out-dir "$out/samples-$shape-$tag" \
    --grid "$out/$shape-$tag.png" > /dev/null
done
