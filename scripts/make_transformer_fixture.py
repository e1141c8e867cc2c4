"""diffusers' Transformer2DModel (Stable Diffusion 1.x's spatial transformer: GroupNorm, 1x1 projections, blocks
of self-attention, cross-attention to a context sequence and a GEGLU MLP) on a tiny random config, with an input
and a context, for diffuse's parity test (nn::transformer::tests).

Usage: python3 scripts/make_transformer_fixture.py OUT.safetensors   (needs torch, diffusers 0.42, safetensors)

The file holds the model's tensors under diffusers' names, plus `x` (2 x 16 x 4 x 6), `context` (2 x 5 x 12) and
`out`, the model's output. The config is in the file's metadata.
"""
import json
import sys

import torch
from diffusers.models.transformers.transformer_2d import Transformer2DModel
from safetensors.torch import save_file

config = dict(num_attention_heads=2, attention_head_dim=8, in_channels=16, num_layers=2, cross_attention_dim=12,
              norm_num_groups=4)
torch.manual_seed(0)
model = Transformer2DModel(**config).eval()
# Every tensor perturbed, so that a mix-up of any two shows in the output.
with torch.no_grad():
    for p in model.parameters():
        p.add_(0.2 * torch.randn_like(p))
x = torch.randn(2, 16, 4, 6)
context = torch.randn(2, 5, 12)
with torch.no_grad():
    out = model(x, encoder_hidden_states=context).sample
tensors = {k: v.contiguous() for k, v in model.state_dict().items()}
tensors.update(x=x, context=context, out=out)
save_file(tensors, sys.argv[1], metadata={'config': json.dumps(config)})
print('wrote', sys.argv[1], 'output std', out.std().item())
