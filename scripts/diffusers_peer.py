"""The diffusers peer for diffuse's time-budget comparisons (BENCHMARKS.md): trains a diffusers UNet2DModel on
an MNIST-format data set for a wall-clock budget, as diffusers' unconditional training example does (DDPM
noise-prediction loss, linear betas, AdamW, EMA with warm-up), then draws samples with DDIM.

    venv/bin/python scripts/diffusers_peer.py --data ../shared/data/mnist --out runs/peer/mnist \
        --time-budget 900 --threads 1 --samples 500

Writes OUT/samples/00000.png … (8-bit greyscale, as diffuse writes its samples) and OUT/summary.json (steps
made, parameters, seconds). Score both systems the same way with `diffuse fid` and `diffuse classifier score`.
Only data from files; nothing is downloaded.
"""

import argparse
import gzip
import json
import os
import struct
import time

import numpy as np
import torch
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel
from diffusers.training_utils import EMAModel
from PIL import Image

ARCHS = {
    # The peer: 1,707,009 parameters at 28×28 (attention at the two lower resolutions).
    "default": dict(
        block_out_channels=(32, 64, 64),
        down_block_types=("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
        layers_per_block=2,
    ),
    # About diffuse's small greyscale default: base 16, one block per level, attention at the lowest.
    "small": dict(
        block_out_channels=(16, 32, 32),
        down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        layers_per_block=1,
        norm_num_groups=8,
    ),
}


def read_idx_images(path):
    with gzip.open(path, "rb") as f:
        magic, n, h, w = struct.unpack(">IIII", f.read(16))
        assert magic == 2051, f"{path}: not an idx3 image file"
        return np.frombuffer(f.read(n * h * w), dtype=np.uint8).reshape(n, 1, h, w)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True, help="folder with train-images-idx3-ubyte.gz")
    ap.add_argument("--out", required=True)
    ap.add_argument("--arch", choices=sorted(ARCHS), default="default")
    ap.add_argument("--time-budget", type=float, default=900.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--samples", type=int, default=500)
    ap.add_argument("--sample-steps", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    data = read_idx_images(os.path.join(args.data, "train-images-idx3-ubyte.gz"))
    x_all = torch.from_numpy(data.astype(np.float32) / 127.5 - 1.0)
    size = data.shape[-1]

    model = UNet2DModel(sample_size=size, in_channels=1, out_channels=1, **ARCHS[args.arch])
    params = sum(p.numel() for p in model.parameters())
    noise_sched = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear")
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-6)
    ema = EMAModel(model.parameters(), decay=0.9999, use_ema_warmup=True, inv_gamma=1.0, power=0.75)

    start = time.time()
    steps = 0
    model.train()
    while time.time() - start < args.time_budget:
        idx = torch.from_numpy(rng.integers(0, len(x_all), args.batch))
        x0 = x_all[idx]
        noise = torch.randn_like(x0)
        t = torch.randint(0, 1000, (args.batch,))
        loss = torch.nn.functional.mse_loss(model(noise_sched.add_noise(x0, noise, t), t).sample, noise)
        opt.zero_grad()
        loss.backward()
        opt.step()
        ema.step(model.parameters())
        steps += 1
        if steps % 100 == 0:
            print(f"step {steps} loss {loss.item():.4f} {time.time() - start:.0f} s", flush=True)
    train_s = time.time() - start

    ema.copy_to(model.parameters())
    model.eval()
    sched = DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear")
    sched.set_timesteps(args.sample_steps)
    os.makedirs(os.path.join(args.out, "samples"), exist_ok=True)
    gen = torch.Generator().manual_seed(args.seed + 1)
    start = time.time()
    done = 0
    with torch.no_grad():
        while done < args.samples:
            n = min(100, args.samples - done)
            x = torch.randn((n, 1, size, size), generator=gen)
            for t in sched.timesteps:
                x = sched.step(model(x, t).sample, t, x, eta=0.0).prev_sample
            pix = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
            for i in range(n):
                Image.fromarray(pix[i, 0], mode="L").save(os.path.join(args.out, "samples", f"{done + i:05}.png"))
            done += n
    sample_s = time.time() - start
    summary = dict(arch=args.arch, parameters=params, steps=steps, batch=args.batch, lr=args.lr,
                   train_seconds=round(train_s, 1), samples=args.samples, sample_steps=args.sample_steps,
                   sample_seconds=round(sample_s, 1), threads=args.threads, final_loss=float(loss.item()),
                   torch=torch.__version__, diffusers=__import__("diffusers").__version__)
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
