#!/usr/bin/env bash
# Restoration, measured: held-out MNIST and Fashion-MNIST images degraded (super-resolution ×2/×4, Gaussian
# deblurring, denoising, MRI from random or radial k-space at 4× and 8×), restored with DDRM and ΠGDM using a
# trained run as the prior, beside the task's naive inverse. Three measures: PSNR and SSIM against the
# originals, and the accuracy of an independent classifier on the results (does the restoration keep the
# digit or garment?). The originals' accuracy is the classifier's ceiling.
#   scripts/restore.sh [N] [MNIST_RUN] [FASHION_RUN] [MNIST_CLASSIFIER] [FASHION_CLASSIFIER]
# Defaults: 256 images; runs/mnist15/bf16 and runs/fashion15 (`diffuse train --data mnist --minutes 15 …`, see
# docs/guide/applications.md), runs/quality/mnist-classifier-6k and runs/quality/fashion-classifier
# (`diffuse classifier train --data mnist|fashion-mnist --out …`). Needs DIFFUSE_DATA (or --data DIR specs).
set -euo pipefail
n=${1:-256}
runs=("${2:-runs/mnist15/bf16}" "${3:-runs/fashion15}")
clfs=("${4:-runs/quality/mnist-classifier-6k}" "${5:-runs/quality/fashion-classifier}")
sets=(mnist fashion-mnist)
bin=${DIFFUSE_BIN:-target/release/diffuse}
out=runs/restore
mkdir -p "$out"
acc() { "$bin" classifier score --classifier "$1" --images "$2" --json | jq -r '.accuracy * 100 | . * 10 | round / 10'; }
echo "| data | task | σ_y | method | PSNR (dB) | SSIM | classifier accuracy | seconds |"
echo "|---|---|---|---|---|---|---|---|"
for i in 0 1; do
  data=${sets[$i]}
  base="$out/$data-original"
  rm -rf "$base"
  for spec in "sr:2 0.05" "sr:4 0.05" "blur:2 0.05" "denoise 0.2" "mri:random:4 0.05" "mri:random:8 0.05" \
    "mri:radial:4 0.05" "mri:radial:8 0.05"; do
    read -r task noise <<<"$spec"
    for method in ddrm pigdm; do
      dir="$out/$data-${task//:/-}-$method"
      rm -rf "$dir"
      "$bin" edit restore --run "${runs[$i]}" --data "$data" --limit "$n" --task "$task" --noise "$noise" \
        --method "$method" --steps 20 --out-dir "$dir" --grid "$dir.png" >/dev/null 2>&1
      s="$dir/scores.json"
      if [ "$method" = ddrm ]; then
        [ -d "$base" ] || { cp -r "$dir/original" "$base"; echo "| $data | (originals) | | | | | $(acc "${clfs[$i]}" "$base")% | |"; }
        echo "| $data | $task | $noise | naive: $(jq -r .naive.inverse "$s") | $(jq -r '.naive.psnr*100|round/100' "$s") |" \
          "$(jq -r '.naive.ssim*1000|round/1000' "$s") | $(acc "${clfs[$i]}" "$dir/naive")% | |"
      fi
      echo "| $data | $task | $noise | $method | $(jq -r '.restored.psnr*100|round/100' "$s") |" \
        "$(jq -r '.restored.ssim*1000|round/1000' "$s") | $(acc "${clfs[$i]}" "$dir/restored")% | $(jq -r '.seconds|round' "$s") |"
    done
  done
done
