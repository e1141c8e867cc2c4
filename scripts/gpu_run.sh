#!/usr/bin/env bash
# One call on a lent GPU machine (see BENCHMARKS.md): the reference-UNet bench of each vulkan build beside
# PyTorch on the same card, then (when TRAIN_SECONDS > 0) an MNIST class-conditional model trained and sampled.
#
# Expects, in the working tree: .gl/*.deb (the Vulkan loader packages), .gpu/*.xz (stripped release builds
# with `--features vulkan` or `--features vulkan-fusion`, xz-compressed to fit the trip; each is benched in
# turn), .gpu/ref_unet.py, and for training .gpu/mnist/ (the four IDX files). Writes into $OUT.
# LEVELS: burn's autotune levels to bench each build at (default "minimal"); ROUNDS, BENCH_SECONDS per bench;
# BATCHES: training batch sizes (default 32, the reference's); TASKS: how many kernels cubecl's wgpu backend
# queues before it submits them (CUBECL_WGPU_MAX_TASKS, default 32: more means fewer submissions, which is
# what a small network waits on); PROFILE=1 adds one run of the first build with cubecl's per-kernel
# profiling log in $OUT; TRAIN_SECONDS bounds the training (default 0).
set -u
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[ -f "$icd" ] && export VK_DRIVER_FILES=$icd
export XDG_RUNTIME_DIR=/tmp
log() { echo "== $(date +%T) $*" | tee -a "$OUT/log.txt"; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"

# The card's memory while `$@` runs, sampled every 100 ms: the peak in use, and each process's peak (PyTorch
# and diffuse alternate within one bench).
peak_gpu_mb() {
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 >/tmp/mem.csv &
  local total=$!
  nvidia-smi --query-compute-apps=process_name,used_memory --format=csv,noheader,nounits -lms 100 >/tmp/apps.csv &
  local apps=$!
  "$@"
  local rc=$?
  kill "$total" "$apps" 2>/dev/null; wait "$total" "$apps" 2>/dev/null
  log "peak GPU memory in use: $(sort -n /tmp/mem.csv | tail -1) MiB (idle: $(head -1 /tmp/mem.csv) MiB)"
  log "per process (peak MiB): $(awk -F', ' 'NF==2 && $2+0>m[$1] {m[$1]=$2+0} END {for (p in m) printf "%s %d; ", p, m[p]}' /tmp/apps.csv)"
  return $rc
}

log "PyTorch CUDA alone"
peak_gpu_mb timeout 60 python3 scripts/torch_bench.py 32 --device cuda --ref .gpu/ref_unet.py 2>&1 |
  tee -a "$OUT/log.txt"
for packed in .gpu/*.xz; do
  name=$(basename "$packed" .xz)
  # xz where the machine has it, else Python's lzma.
  xz -dc "$packed" >"/tmp/$name" 2>/dev/null ||
    python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' \
      "$packed" "/tmp/$name"
  chmod +x "/tmp/$name"
  for level in ${LEVELS:-minimal}; do
    for batch in ${BATCHES:-32}; do
      for tasks in ${TASKS:-32}; do
        tag="$name-$level-$batch-$tasks"
        log "bench: $name, autotune $level, batch $batch, $tasks tasks a submission, against PyTorch CUDA"
        # burn's autotuner tries many kernels on each new shape; its shortest level keeps the first run short.
        CUBECL_AUTOTUNE_LEVEL=$level CUBECL_WGPU_MAX_TASKS=$tasks peak_gpu_mb timeout "${BENCH_SECONDS:-150}" \
          "/tmp/$name" bench --reference-unet --batch "$batch" --warmup 3 --rounds "${ROUNDS:-3}" --torch python3 \
          --torch-script scripts/torch_bench.py --torch-arg=--device=cuda --torch-arg=--ref=.gpu/ref_unet.py \
          >"$OUT/bench-$tag.txt" 2>&1
        log "bench done ($?)"; tail -8 "$OUT/bench-$tag.txt" | tee -a "$OUT/log.txt"
      done
    done
  done
done

if [ "${PROFILE:-0}" = 1 ]; then
  first=/tmp/$(basename "$(ls .gpu/*.xz | head -1)" .xz)
  log "profile: one round of $first with cubecl's per-kernel log"
  CUBECL_AUTOTUNE_LEVEL=minimal CUBECL_DEBUG_LOG=/tmp/cubecl.log CUBECL_DEBUG_OPTION=profile-medium \
    timeout "${BENCH_SECONDS:-150}" "$first" bench --reference-unet --rounds 1 --warmup 3 --repeats 3 \
    >>"$OUT/log.txt" 2>&1
  log "profile done ($?)"
  # The compilation log is long; its end holds the timed repeats.
  tail -c 15000000 /tmp/cubecl.log >"$OUT/cubecl-profile.log"
fi

[ "${TRAIN_SECONDS:-0}" -gt 0 ] || exit 0
D=/tmp/$(basename "$(ls .gpu/*.xz | head -1)" .xz)
log "train: MNIST, class-conditional, $TRAIN_SECONDS s at most, with $D"
R=/tmp/mnist-cond
timeout "$TRAIN_SECONDS" $D train --data mnist:.gpu/mnist --conditional --out $R --steps 40000 \
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
