#!/usr/bin/env bash
# One call on a lent GPU machine (see BENCHMARKS.md): the reference-UNet bench of the vulkan build beside
# PyTorch on the same card, then an MNIST class-conditional model trained and sampled there.
#
# Expects, in the working tree: .gl/*.deb (the Vulkan loader packages), .gpu/diffuse.gz (a release build with
# `--features vulkan`), .gpu/ref_unet.py, .gpu/mnist/ (the four IDX files). Writes into $OUT.
# TRAIN_SECONDS bounds the training (default 240).
set -u
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[ -f "$icd" ] && export VK_DRIVER_FILES=$icd
gunzip -c .gpu/diffuse.gz >/tmp/diffuse && chmod +x /tmp/diffuse
D=/tmp/diffuse
export XDG_RUNTIME_DIR=/tmp
log() { echo "== $(date +%T) $*" | tee -a "$OUT/log.txt"; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"

log "PyTorch CUDA alone"
timeout 60 python3 scripts/torch_bench.py 32 --device cuda --ref .gpu/ref_unet.py 2>&1 | tee -a "$OUT/log.txt"
log "bench: reference UNet, vulkan vs PyTorch CUDA"
# burn's autotuner tries many kernels on each new shape; its shortest level keeps the first run short.
export CUBECL_AUTOTUNE_LEVEL=${CUBECL_AUTOTUNE_LEVEL:-minimal}
timeout "${BENCH_SECONDS:-150}" $D bench --reference-unet --rounds "${ROUNDS:-3}" --torch python3 \
  --torch-script scripts/torch_bench.py --torch-arg=--device=cuda --torch-arg=--ref=.gpu/ref_unet.py 2>&1 |
  tee "$OUT/bench_ref.txt"
rc=${PIPESTATUS[0]}
if [ "$rc" -ne 0 ]; then log "bench failed ($rc)"; exit 1; fi

log "train: MNIST, class-conditional, ${TRAIN_SECONDS:-240} s at most"
R=/tmp/mnist-cond
timeout "${TRAIN_SECONDS:-240}" $D train --data mnist:.gpu/mnist --conditional --out $R --steps 40000 \
  --batch-size 128 --ema-decay 0.999 --checkpoint-every 100 --sample-every 100000 --quiet >>"$OUT/log.txt" 2>&1
log "train stopped ($?)"; tail -3 $R/loss.csv 2>/dev/null | tee -a "$OUT/log.txt"

log "sample: DDIM-50, 1000 unguided and 100 per class at w = 1 and 3"
S=/tmp/samples
timeout 30 $D sample --run $R --sampler ddim --steps 50 --n 1000 --seed 1 --batch-size 500 --out-dir $S/uncond \
  --grid $S/uncond.png >>"$OUT/log.txt" 2>&1
for w in 1 3; do
  timeout 30 $D sample --run $R --sampler ddim --steps 50 --n 100 --class all --guidance $w --seed 2 \
    --batch-size 500 --out-dir $S/w$w >>"$OUT/log.txt" 2>&1
done
log "sampled ($?)"
tar czf "$OUT/mnist-samples.tgz" -C /tmp samples
tar czf - -C /tmp mnist-cond | split -b 15000000 - "$OUT/mnist-run.tgz."
ls -la "$OUT" | tee -a "$OUT/log.txt"
