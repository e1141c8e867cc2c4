#!/usr/bin/env bash
# What a published DDPM pipeline costs per image on this machine: random-weight models of the DDPM CIFAR-10 (32×32)
# and LSUN/CelebA-HQ (256×256) configs, made by diffusers, imported, and sampled with DDIM by diffuse in f32 and
# bf16, interleaved with diffusers' own UNet forward on the same inputs. Prints time per image per network
# evaluation (sampling only, the weights already loaded) and each process's peak RSS.
#   scripts/diffusers_cost.sh [WORKDIR] [ROUNDS]      (PYTHON: a Python with torch and diffusers; default venv/bin/python)
set -euo pipefail
work=${1:-runs/diffusers-cost}
rounds=${2:-2}
bin=${DIFFUSE_BIN:-target/release/diffuse}
py=${PYTHON:-venv/bin/python}
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$work"
"$py" - "$work" "$root/scripts" <<'PY'
import importlib.util, sys, torch
from pathlib import Path
from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel
work, scripts = Path(sys.argv[1]), Path(sys.argv[2])
spec = importlib.util.spec_from_file_location("fixture", scripts / "make_diffusers_unet_fixture.py")
fx = importlib.util.module_from_spec(spec); spec.loader.exec_module(fx)
for name, cfg in [("cifar10", fx.CIFAR10), ("ddpm-256", fx.DDPM_256)]:
    if not (work / name / "model_index.json").exists():
        torch.manual_seed(0)
        DDPMPipeline(UNet2DModel(**cfg), DDPMScheduler(**fx.SCHEDULER)).save_pretrained(work / name)
PY
cat > "$work/forward.py" <<'PY'
import sys, time, torch
from diffusers import UNet2DModel
torch.set_grad_enabled(False)
folder, b, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
u = UNet2DModel.from_pretrained(f"{folder}/unet").eval()
s = u.config.sample_size
x = torch.randn(b, 3, s, s)
t0 = time.perf_counter()
for i in range(steps):
    x = u(x, torch.tensor([900 - 50 * i] * b)).sample
print(f"pytorch-f32: {(time.perf_counter() - t0) / steps / b:.3f} s per image per NFE")
PY
for m in cifar10 ddpm-256; do
  [ -d "$work/runs/$m" ] || "$bin" import --diffusers "$work/$m" --out "$work/runs/$m" > /dev/null
done
for round in $(seq "$rounds"); do
  for spec in "cifar10 8 10" "ddpm-256 1 2"; do
    set -- $spec
    for precision in f32 bf16; do
      rm -rf "$work/out"
      line=$(/usr/bin/time -f "RSS %M KB" "$bin" sample --run "$work/runs/$1" --sampler ddim --steps "$3" --n "$2" \
        --batch-size "$2" --precision "$precision" --out-dir "$work/out" 2>&1 | tail -2 | tr '\n' ' ')
      echo "round $round $1 diffuse-$precision: $line"
    done
    line=$(/usr/bin/time -f "RSS %M KB" "$py" "$work/forward.py" "$work/$1" "$2" "$3" 2>&1 | grep -E "pytorch|RSS" | tr '\n' ' ')
    echo "round $round $1 $line"
  done
done
