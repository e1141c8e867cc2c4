"""DDIM-50 sampling throughput of a diffusers UNet2DModel under PyTorch on the CPU, for diffuse's comparison
(BENCHMARKS.md, "Sampling throughput"): a `DDIMPipeline`-style loop (the UNet's noise prediction, then
`DDIMScheduler.step`) without gradients, on a random-weight network of about the size of diffuse's network
for the data (the time does not depend on the weights).

    venv/bin/python scripts/diffusers_ddim_throughput.py --arch digits --n 256 --batch 64 --threads 2

Prints one JSON object: parameters, images, seconds, images per second.
"""

import argparse
import json
import time

import torch
from diffusers import DDIMScheduler, UNet2DModel

ARCHS = {
    # diffuse's digits default (1×8×8; base 32, mults 1, 2, one block per level, attention at 4×4, 4 heads):
    # 701,345 parameters in diffuse.
    "digits": dict(
        sample_size=8,
        block_out_channels=(32, 64),
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        layers_per_block=1,
        norm_num_groups=8,
        attention_head_dim=16,
    ),
    # diffuse's base-32 network for 28×28 (`UNetConfig::for_image`: mults 1, 2, 2, two blocks per level,
    # attention at 7×7; issue 18's run): 1,623,169 parameters in diffuse; scripts/diffusers_peer.py's "default".
    "mnist": dict(
        sample_size=28,
        block_out_channels=(32, 64, 64),
        down_block_types=("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
        layers_per_block=2,
    ),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", choices=sorted(ARCHS), required=True)
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    unet = UNet2DModel(in_channels=1, out_channels=1, **ARCHS[args.arch]).eval()
    size = ARCHS[args.arch]["sample_size"]
    scheduler = DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear")
    scheduler.set_timesteps(args.steps)
    started = time.perf_counter()
    with torch.no_grad():
        for first in range(0, args.n, args.batch):
            x = torch.randn(min(args.batch, args.n - first), 1, size, size)
            for t in scheduler.timesteps:
                eps = unet(x, t).sample
                x = scheduler.step(eps, t, x, eta=0.0).prev_sample
    seconds = time.perf_counter() - started
    print(json.dumps({
        "arch": args.arch,
        "params": sum(p.numel() for p in unet.parameters()),
        "images": args.n,
        "batch": args.batch,
        "seconds": seconds,
        "images_per_second": args.n / seconds,
    }))


if __name__ == "__main__":
    main()
