#!/usr/bin/env bash
# Style transfer in the SDEdit sense between two data sets: held-out images of one data set edited by a model of
# the other (MNIST digits drawn as Fashion-MNIST garments, and back), swept over strength; how far the edits are
# from the target data set (the FID in the target classifier's features against its held-out split; lower is
# more like the target; a classifier's own confidence is no measure here, as it is confident on images from
# outside its data too), and the PSNR against the inputs (how much of the input is kept). Strength 0.01 stands
# for the inputs themselves, 1.0 for the target model's own samples.
#   scripts/style_transfer.sh MNIST_RUN FASHION_RUN MNIST_CLASSIFIER FASHION_CLASSIFIER [N]
# MNIST and FASHION (environment) give the data specs, e.g. mnist:../shared/data/mnist.
set -euo pipefail
mnist_run=$1; fashion_run=$2; mnist_clf=$3; fashion_clf=$4; n=${5:-200}
bin=${DIFFUSE_BIN:-target/release/diffuse}
mnist=${MNIST:-mnist}; fashion=${FASHION:-fashion-mnist}
out=runs/style-transfer
mkdir -p "$out"
echo "| inputs → model | strength | classifier FID to the target | PSNR against the input |"
echo "|---|---|---|---|"
# Edits of data inputs land in class folders named by the input's class; the target classifier knows other
# names, so it scores a flat copy.
transfer() {
  local spec=$1 run=$2 clf=$3 name=$4 target=$5
  for s in 0.01 0.3 0.5 0.7 0.85 1.0; do
    dir="$out/$name-s$s"
    rm -rf "$dir" "$dir-flat"
    said=$("$bin" edit sdedit --run "$run" --data "$spec" --limit "$n" --strength "$s" --out-dir "$dir" \
      --grid "$dir.png" 2>/dev/null)
    psnr=$(echo "$said" | sed -n 's/.*PSNR against the inputs \([0-9.]*\) dB.*/\1/p')
    mkdir -p "$dir-flat"
    i=0
    find "$dir" -name '*.png' | sort | while read -r f; do cp "$f" "$dir-flat/$(printf %05d "$i").png"; i=$((i + 1)); done
    fid=$("$bin" classifier score --classifier "$clf" --images "$dir-flat" --reference "$target" |
      sed -n 's/.*classifier FID \([0-9.]*\).*/\1/p')
    echo "| $name | $s | $fid | $psnr dB |"
  done
}
transfer "$mnist" "$fashion_run" "$fashion_clf" mnist-as-fashion "$fashion"
transfer "$fashion" "$mnist_run" "$mnist_clf" fashion-as-mnist "$mnist"
