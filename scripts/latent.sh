#!/usr/bin/env bash
# Latent diffusion on the emoji sprites, and what it saves: a KL-VAE (factor 4: 3×32×32 → 4×8×8), a
# class-conditional UNet on its latents, and the same sampling and training measured against a pixel-space
# UNet of the default shape for 32×32 (timed over a short training only: CPU time for a pixel model of comparable
# quality was not available).
# Usage: scripts/latent.sh [EMOJI_DIR] [LATENT_STEPS]   Writes runs/emoji-*, docs/emoji-*.png.
set -euo pipefail
cd "$(dirname "$0")/.."
emoji=${1:-../shared/data/emoji-noto}
steps=${2:-3000}
bin=${DIFFUSE_BIN:-target/release/diffuse}
data="emoji:$emoji"
timed() { /usr/bin/time -f "peak RSS %M KB, wall %e s" "$@"; }

[ -f runs/emoji-vae/vae.json ] || timed "$bin" vae train --data "$data" --out runs/emoji-vae \
  --base-channels 16 --batch-size 16 --steps 1500 --quiet
cp runs/emoji-vae/reconstructions.png docs/emoji-vae-reconstructions.png
[ -f runs/emoji-latent/checkpoint.safetensors ] || timed "$bin" train --data "$data" --vae runs/emoji-vae \
  --out runs/emoji-latent --conditional --steps "$steps" --quiet
rm -rf runs/emoji-pixel
timed "$bin" train --data "$data" --out runs/emoji-pixel --steps 20 --sample-every 0 --quiet

echo "--- sampling, DDIM-50, 64 images in one batch"
for run in emoji-latent emoji-pixel; do
  timed "$bin" sample --run "runs/$run" --sampler ddim --steps 50 --n 64 --seed 1 --out-dir "runs/$run-samples" \
    --grid "runs/$run-samples.png"
done
"$bin" sample --run runs/emoji-latent --sampler ddim --steps 50 --n 8 --seed 1 --class all --guidance 3 \
  --out-dir runs/emoji-latent-classes --grid docs/emoji-latent-classes.png
cp runs/emoji-latent-samples.png docs/emoji-latent-samples.png
