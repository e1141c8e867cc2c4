"""diffusers' StableDiffusionPipeline on a random SD 1.5-config folder (scripts/make_sd_fixture.py --sd15 DIR): one
512x512 image, 20 DDIM steps, guidance 7.5, on the CPU in float32 with 2 threads; prints seconds and the peak RSS.

Usage: python3 scripts/sd_torch_cost.py DIR   (needs torch, diffusers, transformers)
"""
import resource, sys, time
import torch
from diffusers import DDIMScheduler, StableDiffusionPipeline
torch.set_num_threads(2)
pipe = StableDiffusionPipeline.from_pretrained(sys.argv[1], safety_checker=None, requires_safety_checker=False)
pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
pipe.set_progress_bar_config(disable=True)
g = torch.Generator().manual_seed(0)
t = time.time()
with torch.inference_mode():
    pipe("a red heart", num_inference_steps=20, guidance_scale=7.5, height=512, width=512, generator=g)
print(f"torch {torch.__version__}: one 512x512 image, DDIM 20, guidance 7.5: {time.time() - t:.1f} s; "
      f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.2f} GB")
