#!/usr/bin/env bash
# How the default networks' training step grows with batch size and image size, and with threads (issue 19,
# item 4): one `diffuse bench --image` process per cell, so that each peak RSS is its own. Prints a Markdown
# table (time per step in ms / peak RSS in MB).
# Usage: scripts/cost_growth.sh [--precision bf16]   (DIFFUSE_BIN overrides the binary)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${DIFFUSE_BIN:-${CARGO_TARGET_DIR:-target}/release/diffuse}
[ -x "$bin" ] || { cargo build --release; bin=${CARGO_TARGET_DIR:-target}/release/diffuse; }
extra=("$@")
images=(1x8x8 1x16x16 1x28x28 3x32x32 3x64x64)
batches=(8 32 128 256)
cell() { # IMAGE BATCH -> "ms / MB"
  "$bin" bench --image "$1" --batch "$2" --warmup 1 --repeats 3 --json "${extra[@]}" 2>/dev/null |
    python3 -c 'import json,sys; r=json.load(sys.stdin)[0]; print("%.0f / %.0f %d" % (r["train_step_ms"], r["peak_rss_mb"], r["params"]))'
}
echo "| image (params) | $(printf 'batch %s | ' "${batches[@]}")"
echo "|---|$(printf -- '---|%.0s' "${batches[@]}")"
for image in "${images[@]}"; do
  row="" params=""
  for batch in "${batches[@]}"; do
    read -r ms _ mb params < <(cell "$image" "$batch")
    row+="$ms / $mb | "
  done
  echo "| $image ($params) | $row"
done
echo
echo "Threads (batch 32):"
echo "| image | 1 thread | 2 threads | speed-up |"
echo "|---|---|---|---|"
for image in 1x8x8 1x28x28 3x32x32; do
  one=$(RAYON_NUM_THREADS=1 cell "$image" 32 | cut -d' ' -f1)
  two=$(RAYON_NUM_THREADS=2 cell "$image" 32 | cut -d' ' -f1)
  echo "| $image | $one ms | $two ms | $(python3 -c "print(f'{$one/$two:.2f}×')") |"
done
