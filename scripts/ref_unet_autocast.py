"""The reference UNet's benchmark (the shared folder's reference/ref_unet.py) under PyTorch's CPU mixed precision,
`torch.autocast("cpu", dtype=torch.bfloat16)`: the comparison for `diffuse bench --precision bf16`.

    diffuse bench --reference-unet --precision bf16 --torch venv/bin/python --torch-script scripts/ref_unet_autocast.py

It imports the reference network unchanged and times it with the reference script's protocol (seed 0, two threads,
2 warm-up steps, the median of 5 training steps at the given batch and of 5 inference passes at batch 64), printing
the same lines. The shared folder is $DIFFUSE_SHARED, else ../shared beside the repository.
"""

import importlib.util
import os
import resource
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

shared = Path(os.environ.get("DIFFUSE_SHARED", Path(__file__).resolve().parents[2] / "shared"))
spec = importlib.util.spec_from_file_location("ref_unet", shared / "reference" / "ref_unet.py")
ref = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ref)


def autocast():
    return torch.autocast("cpu", dtype=torch.bfloat16)


def median_ms(f, repeats=5):
    ts = []
    for _ in range(repeats):
        s = time.perf_counter()
        f()
        ts.append(time.perf_counter() - s)
    return sorted(ts)[repeats // 2] * 1000


if __name__ == "__main__":
    torch.manual_seed(0)
    torch.set_num_threads(2)
    batch = int(sys.argv[1]) if len(sys.argv) > 1 else 32
    m = ref.UNet()
    print("params", sum(p.numel() for p in m.parameters()))
    opt = torch.optim.AdamW(m.parameters(), lr=2e-4)
    x = torch.randn(batch, 3, 32, 32)
    t = torch.randint(0, 1000, (batch,))
    noise = torch.randn_like(x)

    def step():
        with autocast():
            loss = F.mse_loss(m(x, t).float(), noise)
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(2):
        step()
    print("train_step_ms median", median_ms(step))
    m.eval()
    xb = torch.randn(64, 3, 32, 32)
    tb = torch.randint(0, 1000, (64,))
    with torch.no_grad(), autocast():
        m(xb, tb)
        print("infer_b64_ms median", median_ms(lambda: m(xb, tb)))
    print("peak_rss_mb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
