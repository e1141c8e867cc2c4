#!/usr/bin/env bash
# Inpainting measured on the 297 held-out digits: half of each digit masked, filled by the model (RePaint with
# DDPM-100 and resampling, or DDIM-50 with known-region replacement) or naively (mean, blur); masked-region PSNR
# and the evaluation classifier's accuracy on the completed digits. Then the README's editing pictures.
# Usage: scripts/editing.sh [RUN_DIR]   (default runs/digits-ddpm, made by
#   diffuse train --data digits --out runs/digits-ddpm --seed 0 --objective diffusion). Needs python3.
set -euo pipefail
cd "$(dirname "$0")/.."
run=${1:-runs/digits-ddpm}
bin=${DIFFUSE_BIN:-target/release/diffuse}
clf=runs/quality/classifier
[ -f "$clf/classifier.json" ] || "$bin" classifier train --data digits --out "$clf" --seed 0
out=runs/editing
rm -rf "$out"; mkdir -p "$out"
rows=()
for mask in left-half bottom-half; do
  for method in repaint ddim mean blur; do
    case $method in
      repaint) flags=(--sampler ddpm --steps 100 --resample 5 --jump-length 5) ;;
      ddim) flags=(--sampler ddim --steps 50) ;;
      *) flags=(--naive "$method") ;;
    esac
    said=$("$bin" edit inpaint --run "$run" --data digits --mask "$mask" "${flags[@]}" --seed 1 \
      --out-dir "$out/$mask-$method" --grid "$out/$mask-$method.png")
    echo "$said"
    "$bin" classifier score --classifier "$clf" --images "$out/$mask-$method" --json > "$out/$mask-$method.json"
    rows+=("$mask $method $(echo "$said" | sed -E 's/.* in ([0-9.]+) s.*PSNR against the inputs ([0-9.]+) dB.*/\1 \2/')")
  done
done
printf '%s\n' "${rows[@]}" | python3 -c '
import json, sys
print("| mask | fill | masked-region PSNR | classifier accuracy | time (297 images) |")
print("|---|---|---|---|---|")
names = {"repaint": "RePaint, DDPM-100, 5 passes per jump of 5", "ddim": "DDIM-50, known region replaced", "mean": "naive: mean of kept pixels", "blur": "naive: kept pixels diffused in"}
for line in sys.stdin:
    mask, method, secs, psnr = line.split()
    acc = json.load(open(f"runs/editing/{mask}-{method}.json"))["accuracy"]
    print(f"| {mask} | {names[method]} | {float(psnr):.2f} dB | {acc*100:.1f}% | {float(secs):.1f} s |")
'
cp "$out/left-half-repaint.png" docs/inpaint-left-half.png
cp "$out/bottom-half-repaint.png" docs/inpaint-bottom-half.png
for s in 0.25 0.5; do
  "$bin" edit sdedit --run "$run" --data digits --limit 16 --strength "$s" --steps 50 --seed 1 --out-dir "$out/sdedit-$s" \
    --grid "docs/sdedit-$s.png"
done
for k in 10 50 250; do
  "$bin" edit invert --run "$run" --data digits --steps "$k" --out-dir "$out/invert-$k" --grid "docs/invert-$k.png"
done
"$bin" edit interpolate --run "$run" --seeds 3,4 --frames 10 --steps 50 --out-dir "$out/lerp" --grid docs/interpolate.png
"$bin" edit outpaint --run "$run" --data digits --limit 16 --pad 0,0,8,0 --sampler ddpm --steps 100 --resample 5 \
  --jump-length 5 --out-dir "$out/outpaint" --grid docs/outpaint.png
