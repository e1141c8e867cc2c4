#!/usr/bin/env bash
# Attribute editing, measured: held-out digits of one class edited into another with a class-conditional run,
# by SDEdit under the target class (swept over strength and guidance) and by DDIM inversion under the source class
# then drawing under the target; the classifier's accuracy on the target class, and the PSNR of the edits against
# their inputs (how much of the input is kept).
#   scripts/attribute_edit.sh [RUN] [CLASSIFIER] [FROM] [TO]
# Defaults: runs/augment/digits-cond (scripts/augment.sh trains it), runs/quality/classifier
# (`diffuse classifier train --data digits --out runs/quality/classifier`), 3, 8.
set -euo pipefail
run=${1:-runs/augment/digits-cond}
clf=${2:-runs/quality/classifier}
from=${3:-3}
to=${4:-8}
bin=${DIFFUSE_BIN:-target/release/diffuse}
out=runs/attribute-edit
mkdir -p "$out"
echo "| guidance | strength | target-class accuracy | PSNR against the input |"
echo "|---|---|---|---|"
for w in 1 3; do
  for s in 0.3 0.4 0.5 0.6 0.7 0.8 1.0; do
    dir="$out/$from-to-$to-w$w-s$s"
    rm -rf "$dir"
    said=$("$bin" edit sdedit --run "$run" --data digits --of-class "$from" --class "$to" --guidance "$w" \
      --strength "$s" --out-dir "$dir" --grid "$dir.png" 2>/dev/null)
    psnr=$(echo "$said" | sed -n 's/.*PSNR against the inputs \([0-9.]*\) dB.*/\1/p')
    acc=$("$bin" classifier score --classifier "$clf" --images "$dir" --class "$to" | sed -n 's/.*accuracy \([0-9.]*\)%.*/\1/p')
    echo "| $w | $s | $acc% | $psnr dB |"
  done
done
echo
echo "| guidance | DDIM-50 inversion under $from, drawn as $to: target-class accuracy | PSNR against the input |"
echo "|---|---|---|"
for w in 1 3; do
  dir="$out/$from-to-$to-w$w-inversion"
  rm -rf "$dir"
  said=$("$bin" edit invert --run "$run" --data digits --of-class "$from" --class "$from" --to-class "$to" \
    --guidance "$w" --sampler ddim --steps 50 --out-dir "$dir" --grid "$dir.png" 2>/dev/null)
  psnr=$(echo "$said" | sed -n 's/.*PSNR against the inputs \([0-9.]*\) dB.*/\1/p')
  acc=$("$bin" classifier score --classifier "$clf" --images "$dir" --class "$to" | sed -n 's/.*accuracy \([0-9.]*\)%.*/\1/p')
  echo "| $w | $acc% | $psnr dB |"
done
