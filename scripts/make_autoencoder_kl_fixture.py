"""Generate a tiny diffusers `AutoencoderKL` fixture plus reference outputs for parity tests.

Writes into OUT_DIR (default: ./fixture):
  config.json, diffusion_pytorch_model.safetensors   -- via `save_pretrained` (diffusers' own names)
  parity.safetensors                                  -- float32 tensors:
      input [2,3,16,16], posterior_mean / posterior_logvar [2,4,8,8],
      latent [2,4,8,8], decoded [2,3,16,16]

All parameters are perturbed with 0.1 * randn so that GroupNorm affines, biases etc. are
non-trivial and a parity test actually exercises them.

Run (diffusers and torch must be importable, e.g. installed with `pip install --target DIR diffusers`):
  PYTHONPATH=DIR python make_autoencoder_kl_fixture.py [OUT_DIR]
"""

import sys

import torch
from diffusers import AutoencoderKL
from safetensors.torch import save_file


def main(out_dir: str) -> None:
    torch.manual_seed(0)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(8, 16),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=16,
    ).eval()

    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in vae.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=gen))

    vae.save_pretrained(out_dir, safe_serialization=True)

    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    size = vae.config.sample_size
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, size, size, generator=gen).clamp(-1.0, 1.0)
    latent = torch.randn(2, vae.config.latent_channels, size // factor, size // factor, generator=gen)

    with torch.no_grad():
        dist = vae.encode(x).latent_dist
        decoded = vae.decode(latent).sample

    tensors = {
        "input": x,
        "posterior_mean": dist.mean,
        "posterior_logvar": dist.logvar,
        "latent": latent,
        "decoded": decoded,
    }
    tensors = {k: v.float().contiguous() for k, v in tensors.items()}
    save_file(tensors, f"{out_dir}/parity.safetensors")

    for k, v in tensors.items():
        print(f"{k:18s} {tuple(v.shape)}  min {v.min():+.4f}  max {v.max():+.4f}")
    for key in ("scaling_factor", "shift_factor", "use_quant_conv", "use_post_quant_conv",
                "mid_block_add_attention", "force_upcast"):
        print(f"config.{key} = {vae.config.get(key, '<absent>')!r}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "fixture")
