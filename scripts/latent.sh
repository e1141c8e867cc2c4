#!/usr/bin/env bash
# Latent diffusion on the emoji sprites, and what it saves. A KL-VAE (factor 4: 3×32×32 → 4×8×8), a
# class-conditional UNet on its latents, then training steps and DDIM-50 sampling timed against pixel-space UNets on
# the same 32×32 images: the same UNet shape (16× the positions) and the project's default shape for 32×32. The
# pixel runs are trained for 20 steps only, enough to time them: CPU time for a pixel model of comparable quality
# was not available, so quality is not compared here.
# Usage: scripts/latent.sh [EMOJI_DIR] [LATENT_STEPS]   Writes runs/emoji-*, docs/emoji-*.png.
set -euo pipefail
cd "$(dirname "$0")/.."
emoji=${1:-../shared/data/emoji-noto}
steps=${2:-3000}
bin=${DIFFUSE_BIN:-target/release/diffuse}
data="emoji:$emoji"
timed() { /usr/bin/time -f "  peak RSS %M KB, wall %e s" "$@"; }

[ -f runs/emoji-vae/vae.json ] || timed "$bin" vae train --data "$data" --out runs/emoji-vae \
  --base-channels 16 --batch-size 16 --steps 1500 --quiet
cp runs/emoji-vae/reconstructions.png docs/emoji-vae-reconstructions.png
[ -f runs/emoji-latent/checkpoint.safetensors ] || timed "$bin" train --data "$data" --vae runs/emoji-vae \
  --out runs/emoji-latent --conditional --objective diffusion --steps "$steps" --quiet

echo "--- training: 20 steps of batch 64 (optimiser-step time is printed)"
rm -rf runs/emoji-pixel-same runs/emoji-pixel-default runs/emoji-latent-timing
timed "$bin" train --data "$data" --vae runs/emoji-vae --out runs/emoji-latent-timing --conditional \
  --objective diffusion --steps 20 --sample-every 0 --quiet
timed "$bin" train --data "$data" --out runs/emoji-pixel-same --conditional --objective diffusion --steps 20 \
  --sample-every 0 --quiet --channel-mults 1,2 --blocks-per-level 1 --attention 16
timed "$bin" train --data "$data" --out runs/emoji-pixel-default --conditional --objective diffusion --steps 20 \
  --sample-every 0 --quiet

echo "--- sampling: DDIM-50, 64 images in one batch, unconditional (one network call per step)"
rm -rf runs/emoji-latent-samples runs/emoji-pixel-same-samples runs/emoji-pixel-default-samples runs/emoji-latent-classes
for run in emoji-latent emoji-pixel-same emoji-pixel-default; do
  timed "$bin" sample --run "runs/$run" --sampler ddim --steps 50 --n 64 --seed 1 --out-dir "runs/$run-samples" \
    --grid "runs/$run-samples.png"
done
"$bin" sample --run runs/emoji-latent --sampler ddim --steps 50 --n 8 --seed 1 --class all --guidance 3 \
  --out-dir runs/emoji-latent-classes --grid docs/emoji-latent-classes.png
cp runs/emoji-latent-samples.png docs/emoji-latent-samples.png
