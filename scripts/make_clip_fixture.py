"""A tiny random-weight CLIP folder (transformers CLIPModel, CLIPTokenizerFast, CLIPImageProcessor) and what
transformers computes with it, for diffuse's CLIP-score parity test.

Usage: python3 scripts/make_clip_fixture.py OUT_DIR   (needs torch, transformers, pillow)

Writes OUT_DIR/model/ (config.json, model.safetensors, tokenizer.json, preprocessor_config.json, …),
OUT_DIR/images/*.png and OUT_DIR/expected.json: token ids, image and text embeddings (projected, not normalised)
and the CLIP score 100 · max(cos, 0) of each image–text pair (Hessel et al. 2021, as torchmetrics computes it).
The tokenizer is CLIP's byte-level BPE with a small vocabulary: every byte, each with the end-of-word mark, and a
few merges, so that the files stay small.
"""
import json
import os
import sys

import numpy as np
import torch
from PIL import Image
from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer


def bytes_to_unicode():
    """GPT-2's map of the 256 bytes to printable characters, which CLIP's byte-level BPE uses."""
    bs = list(range(ord('!'), ord('~') + 1)) + list(range(ord('¡'), ord('¬') + 1)) + list(range(ord('®'), ord('ÿ') + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))

out = sys.argv[1]
model_dir = os.path.join(out, 'model')
os.makedirs(model_dir, exist_ok=True)
os.makedirs(os.path.join(out, 'images'), exist_ok=True)

# The vocabulary: bytes, bytes that end a word, merges for the prompts' words, the two special tokens.
chars = list(bytes_to_unicode().values())
vocab = chars + [c + '</w>' for c in chars]
merges = [('r', 'e'), ('re', 'd</w>'), ('h', 'e'), ('he', 'a'), ('hea', 'r'), ('hear', 't</w>'), ('s', 'm'),
          ('sm', 'i'), ('f', 'a'), ('fa', 'c'), ('fac', 'e</w>')]
vocab += [a + b for a, b in merges] + ['<|startoftext|>', '<|endoftext|>']
fast = CLIPTokenizer(vocab={t: i for i, t in enumerate(vocab)}, merges=merges)
fast.save_pretrained(model_dir)

config = CLIPConfig(
    text_config=dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                     num_attention_heads=2, max_position_embeddings=16, hidden_act='quick_gelu',
                     bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id),
    vision_config=dict(image_size=32, patch_size=8, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                       num_attention_heads=2, hidden_act='quick_gelu'),
    projection_dim=16)
processor = CLIPImageProcessor(size={'shortest_edge': 32}, crop_size={'height': 32, 'width': 32})
processor.save_pretrained(model_dir)

rng = np.random.default_rng(0)
images = {
    # At the model's size: resizing and cropping do nothing, so the parity is exact.
    'square.png': rng.integers(0, 256, (32, 32, 3), dtype=np.uint8),
    'smooth.png': (np.stack(list(np.meshgrid(np.linspace(0, 255, 32), np.linspace(255, 0, 32))) + [np.full((32, 32), 90.0)],
                            -1)).astype(np.uint8),
    # Larger and not square: shortest edge resized to 32 (bicubic), then the centre cropped.
    'wide.png': rng.integers(0, 256, (40, 56, 3), dtype=np.uint8),
}
for name, pixels in images.items():
    Image.fromarray(pixels).save(os.path.join(out, 'images', name))
texts = ['a red heart', 'smiling face', 'RED   Heart!!']

# The first seed whose random model gives both clamped (negative cosine) and positive scores, so that the test
# sees both sides of the max.
for seed in range(100):
    torch.manual_seed(seed)
    model = CLIPModel(config).eval()
    with torch.no_grad():
        tok = fast(texts, padding='max_length', max_length=16, truncation=True, return_tensors='pt')
        text_embeds = model.get_text_features(input_ids=tok['input_ids'], attention_mask=tok['attention_mask'])
        # The text encoder's last hidden states (after its final layer norm), which Stable Diffusion's UNet
        # attends to; the causal mask alone is used there, as diffusers' pipelines call CLIPTextModel.
        hidden = model.text_model(input_ids=tok['input_ids']).last_hidden_state
        pil = [Image.open(os.path.join(out, 'images', n)).convert('RGB') for n in images]
        pixel_values = processor(images=pil, return_tensors='pt')['pixel_values']
        image_embeds = model.get_image_features(pixel_values=pixel_values)
        if not torch.is_tensor(text_embeds):
            text_embeds, image_embeds = text_embeds.pooler_output, image_embeds.pooler_output
        ti = torch.nn.functional.normalize(image_embeds, dim=-1)
        tt = torch.nn.functional.normalize(text_embeds, dim=-1)
        cosines = ti @ tt.T
        scores = (100 * cosines).clamp(min=0)
    if (cosines > 0).any() and (cosines < 0).any():
        break
model.save_pretrained(model_dir, safe_serialization=True)

expected = {
    'texts': texts,
    'images': list(images),
    'input_ids': tok['input_ids'].tolist(),
    'pixel_values': pixel_values.flatten(1).tolist(),
    'text_embeds': text_embeds.tolist(),
    'text_hidden': hidden.flatten(1).tolist(),
    'image_embeds': image_embeds.tolist(),
    'seed': seed,
    'cosines': cosines.tolist(),
    'scores': scores.tolist(),
}
with open(os.path.join(out, 'expected.json'), 'w') as f:
    json.dump(expected, f)
print('wrote', out, 'ids', tok['input_ids'].tolist())
