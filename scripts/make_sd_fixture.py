"""A tiny random-weight Stable Diffusion 1.x pipeline folder (diffusers StableDiffusionPipeline: CLIPTokenizer,
CLIPTextModel, UNet2DConditionModel, AutoencoderKL, PNDMScheduler) and what diffusers computes with it, for
diffuse's Stable Diffusion import parity test.

Usage: python3 scripts/make_sd_fixture.py OUT_DIR [--sd15 OUT2]
       (needs torch, diffusers, transformers, safetensors; made with diffusers 0.42.1, transformers 5.24, torch 2.x;
        builds everything from configs, nothing is downloaded)

Writes
  OUT_DIR/pipe/      laid out as a real Stable Diffusion 1.x folder: model_index.json, unet/, vae/, text_encoder/,
                     tokenizer/, scheduler/ (no safety checker, no feature extractor; every model as
                     diffusion_pytorch_model.safetensors or model.safetensors, float32). The configs:
      text_encoder   CLIPTextModel: hidden 24, MLP 48, 2 layers, 2 heads, 77 positions, quick_gelu, vocabulary of
                     the tiny tokenizer; eos_token_id 2 and pad_token_id 1 deliberately, as SD 1.5's legacy
                     config says (the ids of the bytes '#' and '"', not of <|endoftext|>)
      unet           UNet2DConditionModel: sample 8, channels (16, 32), one layer a block, CrossAttnDownBlock2D +
                     DownBlock2D / UpBlock2D + CrossAttnUpBlock2D, cross-attention 24, attention_head_dim 2,
                     8 groups; diffusers' defaults otherwise (flip_sin_to_cos, freq_shift 0,
                     UNetMidBlock2DCrossAttn, no linear projection)
      vae            AutoencoderKL: channels (16, 32), 4 latent channels, 8 groups, scaling 0.18215; a factor-2
                     VAE, so 8x8 latents are 16x16 images
      scheduler      PNDMScheduler with SD 1.5's scheduler_config.json: scaled_linear 0.00085 .. 0.012, 1000
                     steps, steps_offset 1, skip_prk_steps, set_alpha_to_one false, and clip_sample false (a key
                     PNDM ignores but the real file holds; DDIMScheduler.from_config takes it from there)
      tokenizer      vocab.json, merges.txt, tokenizer_config.json, special_tokens_map.json, as in SD 1.5's
                     folder (which has no tokenizer.json: the one transformers 5 writes is deleted, and the two
                     json configs are written in the form SD 1.5's hold). CLIP's byte-level BPE with a small
                     vocabulary: every byte, each with the end-of-word mark, merges for the prompts' words, then
                     <|startoftext|> and <|endoftext|>, in the order of CLIP's own vocabulary. 77 tokens.
                     Every parameter of the three models is perturbed by 0.05 N(0, 1) after diffusers' and
                     transformers' initialisation (torch.manual_seed(0)), so zero-initialised output layers are
                     not zero and norms are not the identity.
  OUT_DIR/expected.safetensors   computed in float32 on the CPU with the pipeline saved and loaded back:
      ids_<k>        int64 [1, 77]     token ids of prompt k (padding "max_length" to 77, no truncation)
      hidden_<k>     [1, 77, 24]       text_encoder(ids_<k>)[0], the last hidden state (after the final layer norm,
                                       causal mask only, as the pipeline calls it)
      latents        [2, 4, 8, 8]      torch.randn (generator seeded 1)
      timesteps      int64 [2]         981, 1
      context        [2, 77, 24]       cat(hidden_1, hidden_2)
      unet_out       [2, 4, 8, 8]      unet(latents, timesteps, encoder_hidden_states=context).sample
      init_latents   [1, 4, 8, 8]      torch.randn (generator seeded 2), passed to the pipeline as latents=
      ddim_timesteps int64 [10]        the DDIM scheduler's timesteps after set_timesteps(10): 901, 801, .., 1
      ddim_latents   [1, 4, 8, 8]      the final latent of the pipeline's own call (output_type "latent"):
                                       DDIMScheduler.from_config(pipe.scheduler.config, set_alpha_to_one=True),
                                       10 steps, guidance 4, eta 0, prompt "red heart", negative prompt "" (the
                                       default), 16x16. set_alpha_to_one is true deliberately: diffuse's DDIM
                                       ends at alpha-bar 1 (SD 1.5's config says false, which ends the last step
                                       at alpha-bar of timestep 0 instead)
      ddim_image     [1, 16, 16, 3]    the same call with output_type "np": in [0, 1], channels last
      ddim_neg_latents [1, 4, 8, 8]    as ddim_latents, with negative prompt "blue cat"
      vae_decoded    [1, 3, 16, 16]    vae.decode(ddim_latents / 0.18215).sample, before the pipeline's
                                       (x / 2 + 0.5).clamp(0, 1)
  OUT_DIR/expected.json  {"prompts": [...], "versions": {...}}; the prompts, k = 0, 1, 2, 3:
      "", "red heart", "a smiling cat face", "Blue  CAT,  red!"
  (Casing, runs of spaces and punctuation exercise the tokenizer's normaliser and pre-tokeniser.)

--sd15 OUT2 writes, instead of or besides the tiny fixture, a random-weight pipeline folder with the real SD 1.5
configs (UNet 320/640/1280/1280, cross-attention 768, attention_head_dim 8; AutoencoderKL 128/256/512/512; CLIP
ViT-L/14's text encoder, 768 wide, 12 layers, vocabulary 49408) and the same tiny tokenizer files, unperturbed,
float32, about 4.3 GB: for checking that diffuse loads and runs a folder of the real size and layout. It prints
each model's parameter count.
"""
import argparse
import json
import os
import shutil

import numpy as np
import torch
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

import diffusers
import transformers
from diffusers import AutoencoderKL, DDIMScheduler, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel

PROMPTS = ['', 'red heart', 'a smiling cat face', 'Blue  CAT,  red!']


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


# The vocabulary: bytes, bytes that end a word, merges for the prompts' words, the two special tokens.
MERGES = [('r', 'e'), ('re', 'd</w>'),                                                  # red
          ('h', 'e'), ('he', 'a'), ('hea', 'r'), ('hear', 't</w>'),                      # heart
          ('i', 'n'), ('in', 'g</w>'), ('s', 'm'), ('sm', 'i'), ('smi', 'l'),
          ('smil', 'ing</w>'), ('smil', 'e</w>'),                                        # smiling, smile
          ('f', 'a'), ('fa', 'c'), ('fac', 'e</w>'),                                     # face
          ('b', 'l'), ('bl', 'u'), ('blu', 'e</w>'),                                     # blue
          ('c', 'a'), ('ca', 't</w>')]                                                   # cat

# The tokenizer's two json files in the form SD 1.5's tokenizer/ folder holds them.
_SPECIAL = dict(lstrip=False, normalized=True, rstrip=False, single_word=False)
SPECIAL_TOKENS_MAP = {
    'bos_token': dict(content='<|startoftext|>', **_SPECIAL),
    'eos_token': dict(content='<|endoftext|>', **_SPECIAL),
    'pad_token': '<|endoftext|>',
    'unk_token': dict(content='<|endoftext|>', **_SPECIAL),
}
TOKENIZER_CONFIG = {
    'add_prefix_space': False,
    'bos_token': dict(__type='AddedToken', content='<|startoftext|>', **_SPECIAL),
    'do_lower_case': True,
    'eos_token': dict(__type='AddedToken', content='<|endoftext|>', **_SPECIAL),
    'errors': 'replace',
    'model_max_length': 77,
    'name_or_path': 'openai/clip-vit-large-patch14',
    'pad_token': '<|endoftext|>',
    'special_tokens_map_file': './special_tokens_map.json',
    'tokenizer_class': 'CLIPTokenizer',
    'unk_token': dict(__type='AddedToken', content='<|endoftext|>', **_SPECIAL),
}


def write_tokenizer_files(directory):
    """vocab.json, merges.txt and the two json configs, as in SD 1.5's tokenizer/ folder; the vocabulary's size."""
    os.makedirs(directory, exist_ok=True)
    chars = list(bytes_to_unicode().values())
    vocab = chars + [c + '</w>' for c in chars]
    vocab += [a + b for a, b in MERGES] + ['<|startoftext|>', '<|endoftext|>']
    assert len(set(vocab)) == len(vocab)
    with open(os.path.join(directory, 'vocab.json'), 'w', encoding='utf-8') as f:
        json.dump({t: i for i, t in enumerate(vocab)}, f, ensure_ascii=False)
    with open(os.path.join(directory, 'merges.txt'), 'w', encoding='utf-8') as f:
        f.write('#version: 0.2\n' + ''.join(f'{a} {b}\n' for a, b in MERGES))
    write_tokenizer_configs(directory)
    return len(vocab)


def write_tokenizer_configs(directory):
    with open(os.path.join(directory, 'special_tokens_map.json'), 'w') as f:
        json.dump(SPECIAL_TOKENS_MAP, f, indent=2)
    with open(os.path.join(directory, 'tokenizer_config.json'), 'w') as f:
        json.dump(TOKENIZER_CONFIG, f, indent=2)


def finish_tokenizer_folder(tok_dir, src_dir):
    """Make a saved pipeline's tokenizer/ hold what SD 1.5's does: no tokenizer.json, vocab.json and merges.txt."""
    for name in os.listdir(tok_dir):
        os.remove(os.path.join(tok_dir, name))
    for name in ('vocab.json', 'merges.txt'):
        shutil.copy(os.path.join(src_dir, name), os.path.join(tok_dir, name))
    write_tokenizer_configs(tok_dir)


def save_pipeline(out, vae, text_encoder, tokenizer, unet, src_tok):
    """The models as a StableDiffusionPipeline folder with SD 1.5's scheduler and tokenizer files."""
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=sd15_scheduler(), safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(out, safe_serialization=True)
    finish_tokenizer_folder(os.path.join(out, 'tokenizer'), src_tok)
    shutil.rmtree(src_tok)


def sd15_scheduler():
    scheduler = PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule='scaled_linear',
                              num_train_timesteps=1000, steps_offset=1, skip_prk_steps=True, set_alpha_to_one=False)
    # SD 1.5's scheduler_config.json holds "clip_sample": false; without it DDIMScheduler.from_config would clip
    # the predicted x0 to [-1, 1] (its default), which no SD 1.x pipeline does.
    scheduler.register_to_config(clip_sample=False)
    return scheduler


def tokenize(tokenizer, prompt):
    return tokenizer(prompt, padding='max_length', max_length=77, truncation=False, return_tensors='pt').input_ids


def size_of(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def tiny(out):
    pipe_dir = os.path.join(out, 'pipe')
    if os.path.exists(pipe_dir):
        shutil.rmtree(pipe_dir)
    os.makedirs(out, exist_ok=True)
    src_tok = os.path.join(out, '_tokenizer_src')
    vocab_size = write_tokenizer_files(src_tok)
    tokenizer = CLIPTokenizer.from_pretrained(src_tok, model_max_length=77)
    assert len(tokenizer) == vocab_size, (len(tokenizer), vocab_size)
    ids_before = [tokenize(tokenizer, p) for p in PROMPTS]

    torch.manual_seed(0)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=vocab_size, hidden_size=24, intermediate_size=48, num_hidden_layers=2, num_attention_heads=2,
        max_position_embeddings=77, hidden_act='quick_gelu', bos_token_id=tokenizer.bos_token_id, eos_token_id=2,
        pad_token_id=1))
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(16, 32), layers_per_block=1,
        down_block_types=('CrossAttnDownBlock2D', 'DownBlock2D'), up_block_types=('UpBlock2D', 'CrossAttnUpBlock2D'),
        cross_attention_dim=24, attention_head_dim=2, norm_num_groups=8)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=('DownEncoderBlock2D',) * 2,
        up_block_types=('UpDecoderBlock2D',) * 2, block_out_channels=(16, 32), latent_channels=4, norm_num_groups=8,
        layers_per_block=1, sample_size=16, scaling_factor=0.18215)
    with torch.no_grad():
        for model in (unet, vae, text_encoder):
            for p in model.parameters():
                p.add_(0.05 * torch.randn_like(p))
    save_pipeline(pipe_dir, vae, text_encoder, tokenizer, unet, src_tok)

    # Everything below is computed with the pipeline as loaded back from disk.
    pipe = StableDiffusionPipeline.from_pretrained(pipe_dir, torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    assert pipe.safety_checker is None and pipe.feature_extractor is None
    assert not os.path.exists(os.path.join(pipe_dir, 'tokenizer', 'tokenizer.json'))
    ref = {'unet': unet, 'vae': vae, 'text_encoder': text_encoder}
    for name, model in ref.items():
        loaded = dict(getattr(pipe, name).state_dict())
        for k, v in model.state_dict().items():
            assert torch.equal(loaded[k], v), (name, k)

    t = {}
    with torch.no_grad():
        for k, prompt in enumerate(PROMPTS):
            ids = tokenize(pipe.tokenizer, prompt)
            assert torch.equal(ids, ids_before[k]), (prompt, ids, ids_before[k])
            t[f'ids_{k}'] = ids.to(torch.int64)
            t[f'hidden_{k}'] = pipe.text_encoder(ids)[0]

        g = torch.Generator('cpu').manual_seed(1)
        t['latents'] = torch.randn([2, 4, 8, 8], generator=g)
        t['timesteps'] = torch.tensor([981, 1], dtype=torch.int64)
        t['context'] = torch.cat([t['hidden_1'], t['hidden_2']])
        t['unet_out'] = pipe.unet(t['latents'], t['timesteps'], encoder_hidden_states=t['context']).sample

        # set_alpha_to_one True deliberately: diffuse's DDIM ends at alpha-bar 1.
        pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config, set_alpha_to_one=True)
        assert pipe.scheduler.config.clip_sample is False
        g = torch.Generator('cpu').manual_seed(2)
        t['init_latents'] = torch.randn([1, 4, 8, 8], generator=g)
        call = dict(height=16, width=16, num_inference_steps=10, guidance_scale=4.0, eta=0.0)
        t['ddim_image'] = torch.from_numpy(np.ascontiguousarray(
            pipe('red heart', latents=t['init_latents'].clone(), output_type='np', **call).images)).float()
        t['ddim_latents'] = pipe('red heart', latents=t['init_latents'].clone(), output_type='latent', **call).images
        t['ddim_timesteps'] = pipe.scheduler.timesteps.to(torch.int64).clone()
        t['ddim_neg_latents'] = pipe('red heart', negative_prompt='blue cat', latents=t['init_latents'].clone(),
                                     output_type='latent', **call).images
        t['vae_decoded'] = pipe.vae.decode(t['ddim_latents'] / 0.18215).sample

    # The np image is the decoded latent, denormalised and clamped.
    again = (t['vae_decoded'] / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1)
    assert torch.allclose(again, t['ddim_image'], atol=1e-6), (again - t['ddim_image']).abs().max()
    pipe.scheduler.set_timesteps(10)
    assert torch.equal(pipe.scheduler.timesteps.to(torch.int64), t['ddim_timesteps'])

    t = {k: v.contiguous() for k, v in t.items()}
    save_file(t, os.path.join(out, 'expected.safetensors'), metadata={'prompts': json.dumps(PROMPTS)})
    versions = {'torch': torch.__version__, 'diffusers': diffusers.__version__, 'transformers': transformers.__version__}
    with open(os.path.join(out, 'expected.json'), 'w') as f:
        json.dump({'prompts': PROMPTS, 'versions': versions}, f, indent=1)

    for k, v in t.items():
        if v.dtype == torch.int64:
            nz = v.flatten().tolist()
            print(f'{k:17} {str(list(v.shape)):15} int64  {nz[:12]}{" ..." if len(nz) > 12 else ""}')
        else:
            print(f'{k:17} {str(list(v.shape)):15} f32    mean {v.mean():+.5f} std {v.std():.5f} '
                  f'min {v.min():+.4f} max {v.max():+.4f}')
    for name in ('unet', 'vae', 'text_encoder'):
        print(f'{name} parameters: {sum(p.numel() for p in getattr(pipe, name).parameters())}')
    for d in sorted(os.listdir(pipe_dir)):
        p = os.path.join(pipe_dir, d)
        print(f'{d}: {size_of(p) if os.path.isdir(p) else os.path.getsize(p)} bytes',
              sorted(os.listdir(p)) if os.path.isdir(p) else '')
    print(f'{out}: {size_of(out)} bytes in all')


def sd15(out):
    """Random-weight SD 1.5-config pipeline (unperturbed, float32) with the tiny tokenizer."""
    src_tok = os.path.join(out, '_tokenizer_src')
    write_tokenizer_files(src_tok)
    tokenizer = CLIPTokenizer.from_pretrained(src_tok, model_max_length=77)
    torch.manual_seed(0)
    # openai/clip-vit-large-patch14's text tower, as SD 1.5's text_encoder/config.json has it.
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
        max_position_embeddings=77, hidden_act='quick_gelu', projection_dim=768, layer_norm_eps=1e-5,
        bos_token_id=0, eos_token_id=2, pad_token_id=1))
    unet = UNet2DConditionModel(
        sample_size=64, in_channels=4, out_channels=4, block_out_channels=(320, 640, 1280, 1280), layers_per_block=2,
        down_block_types=('CrossAttnDownBlock2D',) * 3 + ('DownBlock2D',),
        up_block_types=('UpBlock2D',) + ('CrossAttnUpBlock2D',) * 3,
        cross_attention_dim=768, attention_head_dim=8, norm_num_groups=32, downsample_padding=1,
        mid_block_scale_factor=1, act_fn='silu', norm_eps=1e-5, flip_sin_to_cos=True, freq_shift=0,
        center_input_sample=False)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=('DownEncoderBlock2D',) * 4,
        up_block_types=('UpDecoderBlock2D',) * 4, block_out_channels=(128, 256, 512, 512), latent_channels=4,
        norm_num_groups=32, layers_per_block=2, sample_size=512, act_fn='silu', scaling_factor=0.18215)
    for name, model in (('unet', unet), ('vae', vae), ('text_encoder', text_encoder)):
        print(f'{name} parameters: {sum(p.numel() for p in model.parameters())}')
    save_pipeline(out, vae, text_encoder, tokenizer, unet, src_tok)
    print(f'{out}: {size_of(out)} bytes in all')


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('out', nargs='?', help='the tiny fixture folder (crates/diffuse/tests/fixtures/sd)')
    parser.add_argument('--sd15', metavar='OUT2', help='also write a random-weight SD 1.5-config pipeline here')
    args = parser.parse_args()
    if args.out is None and args.sd15 is None:
        parser.error('give OUT_DIR, --sd15 OUT2, or both')
    if args.out is not None:
        tiny(args.out)
    if args.sd15 is not None:
        sd15(args.sd15)


if __name__ == '__main__':
    main()
