#!/usr/bin/env bash
# Data augmentation, measured: the project's classifier trained on the real training split of a data set, on
# real + k× class-conditional samples, and on samples alone, each over several seeds; the held-out accuracy on
# real images, with its mean and a 95% confidence interval (Student's t over the seeds).
#   scripts/augment.sh [RUN] [DATA] [SEEDS] [STEPS] [PER_CLASS]
# RUN: a class-conditional run of DATA (default runs/augment/digits-cond, trained here by
# `diffuse train --data digits --conditional` if missing); SEEDS default 5; STEPS: classifier steps (default 1500);
# PER_CLASS: train on the first K real images of each class only (e.g. 10 for MNIST-100; default: all).
set -euo pipefail
run=${1:-runs/augment/digits-cond}
data=${2:-digits}
seeds=${3:-5}
steps=${4:-1500}
subset=()
if [ -n "${5:-}" ]; then subset=(--per-class "$5"); fi
bin=${DIFFUSE_BIN:-target/release/diffuse}
out=runs/augment/classifiers
if [ ! -f "$run/checkpoint.safetensors" ]; then
  "$bin" train --data "$data" --conditional --out "$run" --seed 0
fi
mkdir -p "$out"
results="$out/results.csv"
echo "mix,seed,accuracy" > "$results"
for seed in $(seq 0 $((seeds - 1))); do
  for mix in "real" "real+1x" "real+4x" "synthetic-1x" "synthetic-4x"; do
    case $mix in
      real) extra=() ;;
      real+*) k=${mix#real+}; extra=(--synthetic "$run" --ratio "${k%x}") ;;
      synthetic-*) k=${mix#synthetic-}; extra=(--synthetic "$run" --ratio "${k%x}" --synthetic-only) ;;
    esac
    dir="$out/$mix-$seed"
    rm -rf "$dir"
    said=$("$bin" classifier train --data "$data" --steps "$steps" --seed "$seed" --out "$dir" "${subset[@]}" "${extra[@]}")
    acc=$(echo "$said" | sed -n 's/.*held-out accuracy \([0-9.]*\)%.*/\1/p')
    echo "$mix,$seed,$acc" | tee -a "$results"
  done
done
# Mean and 95% interval per mix (t quantiles for 2–10 seeds).
awk -F, 'NR > 1 { n[$1]++; s[$1] += $3; q[$1] += $3 * $3; if (!($1 in order)) { order[$1] = ++k; name[k] = $1 } }
  END {
    split("12.706 4.303 3.182 2.776 2.571 2.447 2.365 2.306 2.262", t, " ")
    print "| mix | seeds | held-out accuracy (mean ± 95% CI) |"; print "|---|---|---|"
    for (i = 1; i <= k; i++) { m = name[i]; c = n[m]; mean = s[m] / c
      sd = c > 1 ? sqrt((q[m] - c * mean * mean) / (c - 1)) : 0
      half = c > 1 ? t[c - 1] * sd / sqrt(c) : 0
      printf "| %s | %d | %.2f%% ± %.2f |\n", m, c, mean, half }
  }' "$results"
