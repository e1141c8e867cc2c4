"""Make crates/diffuse/tests/fixtures/diffusers_unet/: diffusers' UNet2DModel outputs and DDIM/DDPM pipeline
trajectories that diffuse's import must reproduce (crates/diffuse/src/diffusers/parity_tests.rs), and diffusers'
outputs on a folder that `diffuse export` wrote.

Run (diffusers 0.42.1, torch 2.x; writes the versions it used into cases.json):
    python -m venv venv && venv/bin/pip install torch diffusers safetensors
    cargo build --release
    venv/bin/python scripts/make_diffusers_unet_fixture.py --diffuse target/release/diffuse \
        --out crates/diffuse/tests/fixtures/diffusers_unet

The weights. Every case's parameters are set by a formula that the Rust tests compute too, so the fixture holds
no weights (the DDPM CIFAR-10 and LSUN church networks have 35.7 M and 113.7 M parameters). For a tensor named
`name` (diffusers' name) with n values and shape S:
    phase = (FNV-1a 64 of the name's UTF-8 bytes mod 10007) / 1000
    v_i   = sin(0.7 i + phase) / sqrt(prod(S[1:]))         tensors of two or more dimensions
    v_i   = [1 if the name ends in "weight"] + 0.1 sin(0.7 i + phase)   vectors (GroupNorm scales, biases)
computed in float64 and rounded to float32. Every parameter is perturbed (no zero-initialised output layers),
so a mix-up of any two tensors shows in the outputs.

The cases:
  ddpm-cifar10-32   the UNet2DModel config of google/ddpm-cifar10-32 (Ho et al. 2020's CIFAR-10 network),
                    run at 16x16 (the network is convolutional) on two timesteps
  ddpm-256          the config of google/ddpm-church-256 (the same network as the CelebA-HQ and bedroom
                    256x256 models: channels 128 x (1, 1, 2, 2, 4, 4), attention at 16x16), run at 32x32
  options           a small class-conditional config with every option import maps: scale-shift ResBlocks
                    (no GroupNorm in the middle attention), attention_head_dim, attention at different levels
                    on the down and up paths, flip_sin_to_cos, norm_num_groups 8, centred downsampling padding
  trajectories      a small unconditional network with the DDPM CIFAR-10 pipeline's scheduler config: the
                    DDIMPipeline (10 steps, eta 0, use_clipped_model_output=True: diffuse recomputes eps from
                    the clipped x0, as that flag does; also with steps_offset 1) and the DDPMPipeline (10
                    steps) from the same initial noise, the DDPM step noise replaced by stored draws
  exported          a class-conditional flow-matching run of the digits trained by `diffuse train` for a few
                    steps and written by `diffuse export`; diffusers loads it as a UNet2DModel and a
                    DDPMPipeline, and its UNet outputs are stored (the null class included)
"""

import argparse
import json
import math
import shutil
import subprocess
import tempfile
from pathlib import Path

import diffusers
import diffusers.pipelines.ddim.pipeline_ddim as ddim_module
import diffusers.pipelines.ddpm.pipeline_ddpm as ddpm_module
import diffusers.schedulers.scheduling_ddpm as ddpm_sched_module
import torch
from diffusers import DDIMPipeline, DDIMScheduler, DDPMPipeline, DDPMScheduler, UNet2DModel
from safetensors.torch import save_file

CIFAR10 = {
    "act_fn": "silu",
    "attention_head_dim": None,
    "block_out_channels": [128, 256, 256, 256],
    "center_input_sample": False,
    "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"],
    "downsample_padding": 0,
    "flip_sin_to_cos": False,
    "freq_shift": 1,
    "in_channels": 3,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-06,
    "norm_num_groups": 32,
    "out_channels": 3,
    "sample_size": 32,
    "time_embedding_type": "positional",
    "up_block_types": ["UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
}

DDPM_256 = {
    **CIFAR10,
    "block_out_channels": [128, 128, 256, 256, 512, 512],
    "down_block_types": ["DownBlock2D"] * 4 + ["AttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "AttnUpBlock2D"] + ["UpBlock2D"] * 4,
    "sample_size": 256,
}

OPTIONS = {
    "attention_head_dim": 16,
    "block_out_channels": [32, 64, 64],
    "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["AttnUpBlock2D", "UpBlock2D", "AttnUpBlock2D"],
    "layers_per_block": 1,
    "norm_num_groups": 8,
    "resnet_time_scale_shift": "scale_shift",
    "num_class_embeds": 5,
    "sample_size": 16,
}

TINY = {
    **CIFAR10,
    "block_out_channels": [32, 64],
    "down_block_types": ["DownBlock2D", "AttnDownBlock2D"],
    "up_block_types": ["AttnUpBlock2D", "UpBlock2D"],
    "layers_per_block": 1,
    "norm_num_groups": 8,
    "in_channels": 1,
    "out_channels": 1,
    "sample_size": 8,
}

# The scheduler config of google/ddpm-cifar10-32.
SCHEDULER = {
    "beta_end": 0.02,
    "beta_schedule": "linear",
    "beta_start": 0.0001,
    "clip_sample": True,
    "num_train_timesteps": 1000,
    "trained_betas": None,
    "variance_type": "fixed_small",
}


def fnv1a(name):
    h = 0xCBF29CE484222325
    for b in name.encode():
        h = ((h ^ b) * 0x100000001B3) % (1 << 64)
    return h


def formula(name, shape):
    n = math.prod(shape)
    phase = (fnv1a(name) % 10007) / 1000.0
    s = torch.sin(0.7 * torch.arange(n, dtype=torch.float64) + phase)
    if len(shape) >= 2:
        v = s / math.sqrt(math.prod(shape[1:]))
    else:
        v = (1.0 if name.endswith("weight") else 0.0) + 0.1 * s
    return v.to(torch.float32).reshape(shape)


def with_formula(unet):
    with torch.no_grad():
        for name, p in unet.named_parameters():
            p.copy_(formula(name, tuple(p.shape)))
    return unet.eval()


def grid_input(shape, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g)


def forward_case(name, config, size, t, labels, tensors, cases):
    unet = with_formula(UNet2DModel(**config))
    b = len(t)
    x = grid_input((b, unet.config.in_channels, size, size), seed=len(cases))
    with torch.no_grad():
        out = unet(x, torch.tensor(t), class_labels=None if labels is None else torch.tensor(labels)).sample
    tensors[f"{name}.x"] = x
    tensors[f"{name}.t"] = torch.tensor(t, dtype=torch.float32)
    tensors[f"{name}.out"] = out
    if labels is not None:
        tensors[f"{name}.labels"] = torch.tensor(labels, dtype=torch.float32)
    cases.append({"name": name, "config": dict(unet.config), "size": size, "params": unet.num_parameters()})
    print(f"{name}: {unet.num_parameters():,} parameters, |out| max {out.abs().max():.3f}")


class Replay:
    """Stands in for diffusers' randn_tensor: hands out the given draws in order."""

    def __init__(self, draws):
        self.draws = list(draws)

    def __call__(self, shape, generator=None, device=None, dtype=None, **_):
        z = self.draws.pop(0)
        assert tuple(z.shape) == tuple(shape), (z.shape, shape)
        return z.clone()


def trajectories(tensors, info):
    unet = with_formula(UNet2DModel(**TINY))
    shape = (2, 1, 8, 8)
    x_t = grid_input(shape, seed=100)
    ddpm_draws = [grid_input(shape, seed=200 + k) for k in range(9)]
    steps = 10
    ddim_module.randn_tensor = Replay([x_t])
    ddim = DDIMPipeline(unet, DDIMScheduler.from_config(DDPMScheduler(**SCHEDULER).config))
    ddim_images = ddim(batch_size=2, num_inference_steps=steps, eta=0.0, use_clipped_model_output=True,
                       output_type="np").images
    # The same loop by hand, to keep the sample itself rather than the clamped image.
    sched = DDIMScheduler.from_config(ddim.scheduler.config)
    sched.set_timesteps(steps)
    x = x_t.clone()
    with torch.no_grad():
        for t in sched.timesteps:
            x = sched.step(unet(x, t).sample, t, x, eta=0.0, use_clipped_model_output=True).prev_sample
    assert torch.allclose(torch.from_numpy(ddim_images).permute(0, 3, 1, 2), (x / 2 + 0.5).clamp(0, 1), atol=1e-6)
    tensors["ddim.x_t"] = x_t
    tensors["ddim.out"] = x
    # steps_offset 1 moves every leading timestep up by one (901, 801, ..., 1).
    ddim_module.randn_tensor = Replay([x_t])
    offset = DDIMPipeline(unet, DDIMScheduler.from_config(ddim.scheduler.config, steps_offset=1))
    assert offset.scheduler.config.steps_offset == 1
    images = offset(batch_size=2, num_inference_steps=steps, eta=0.0, use_clipped_model_output=True,
                    output_type="np").images
    tensors["ddim_offset.image"] = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    ddpm_module.randn_tensor = Replay([x_t])
    ddpm_sched_module.randn_tensor = Replay(ddpm_draws)
    ddpm = DDPMPipeline(unet, DDPMScheduler(**SCHEDULER))
    images = ddpm(batch_size=2, num_inference_steps=steps, output_type="np").images
    tensors["ddpm.draws"] = torch.stack(ddpm_draws)
    # The image is (x / 2 + 0.5) clamped; the sample is kept where it is inside (0, 1).
    tensors["ddpm.image"] = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    info["trajectories"] = {"config": dict(unet.config), "scheduler": SCHEDULER, "steps": steps,
                            "ddim_timesteps": sched.timesteps.tolist()}
    print(f"trajectories: DDIM timesteps {sched.timesteps.tolist()}")


def exported(diffuse, out_dir, tensors, info):
    work = Path(tempfile.mkdtemp())
    run = work / "run"
    subprocess.run([diffuse, "train", "--data", "digits", "--conditional", "--steps", "40", "--base-channels", "16",
                    "--heads", "2", "--out", str(run)],
                   check=True)
    folder = out_dir / "exported"
    shutil.rmtree(folder, ignore_errors=True)
    subprocess.run([diffuse, "export", "--diffusers", str(run), "--out", str(folder)], check=True)
    unet = UNet2DModel.from_pretrained(folder / "unet").eval()
    pipe = DDPMPipeline.from_pretrained(folder)
    # DDPMPipeline loads the folder (a class-conditional UNet needs labels, which the pipeline does not pass).
    x = grid_input((3, 1, 8, 8), seed=300)
    t = torch.tensor([10.0, 500.0, 990.0])
    labels = torch.tensor([0, 9, 10])  # 10 is the null class
    with torch.no_grad():
        out = unet(x, t, class_labels=labels).sample
    tensors["exported.x"] = x
    tensors["exported.t"] = t
    tensors["exported.labels"] = labels.to(torch.float32)
    tensors["exported.out"] = out
    info["exported"] = {"scheduler": type(pipe.scheduler).__name__, "params": unet.num_parameters()}
    print(f"exported: {unet.num_parameters():,} parameters, scheduler {type(pipe.scheduler).__name__}")
    shutil.rmtree(work)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--diffuse", required=True, help="the diffuse binary (for the exported case)")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    out_dir = Path(a.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.set_grad_enabled(False)
    tensors, cases = {}, []
    info = {"diffusers": diffusers.__version__, "torch": torch.__version__, "notes": __doc__}
    forward_case("ddpm-cifar10-32", CIFAR10, 16, [10, 900], None, tensors, cases)
    forward_case("ddpm-256", DDPM_256, 32, [500], None, tensors, cases)
    forward_case("options", OPTIONS, 16, [3, 700], [1, 4], tensors, cases)
    trajectories(tensors, info)
    exported(a.diffuse, out_dir, tensors, info)
    info["cases"] = cases
    save_file({k: v.contiguous() for k, v in tensors.items()}, out_dir / "parity.safetensors")
    (out_dir / "cases.json").write_text(json.dumps(info, indent=1) + "\n")


if __name__ == "__main__":
    main()
