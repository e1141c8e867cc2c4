"""The reference UNet's timing protocol (reference/ref_unet.py in the shared folder) on any PyTorch device,
for `diffuse bench --torch python3 --torch-script scripts/torch_bench.py --torch-arg=--device=cuda`.

Usage: python3 scripts/torch_bench.py BATCH [--device cuda] [--ref PATH/ref_unet.py]
Prints the lines ref_unet.py prints (params, train_step_ms median, infer_b64_ms median, peak_rss_mb), the
device synchronised inside each timing, plus gpu_peak_mb on CUDA.
"""
import argparse, importlib.util, os, resource, time
import torch, torch.nn.functional as F

p = argparse.ArgumentParser()
p.add_argument('batch', type=int)
p.add_argument('--device', default='cpu')
default_ref = os.path.join(os.environ.get('DIFFUSE_SHARED', '../shared'), 'reference/ref_unet.py')
p.add_argument('--ref', default=default_ref)
a = p.parse_args()

spec = importlib.util.spec_from_file_location('ref_unet', a.ref)
ref = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ref)

dev = torch.device(a.device)
_embedding = ref.timestep_embedding
def timestep_embedding(t, dim):
    # The reference builds its frequencies on the CPU; the same maths, computed there and moved to t's device.
    return _embedding(t.cpu(), dim).to(t.device)
ref.timestep_embedding = timestep_embedding
def sync():
    if dev.type == 'cuda':
        torch.cuda.synchronize()

def median_ms(f, warmup, repeats=5):
    for _ in range(warmup):
        f()
    sync(); ts = []
    for _ in range(repeats):
        s = time.perf_counter(); f(); sync(); ts.append(time.perf_counter() - s)
    return sorted(ts)[repeats // 2] * 1000

torch.manual_seed(0)
if dev.type == 'cpu':
    torch.set_num_threads(2)
m = ref.UNet().to(dev)
print('params', sum(p.numel() for p in m.parameters()))
opt = torch.optim.AdamW(m.parameters(), lr=2e-4)
x = torch.randn(a.batch, 3, 32, 32, device=dev); t = torch.randint(0, 1000, (a.batch,), device=dev)
noise = torch.randn_like(x)
def step():
    loss = F.mse_loss(m(x, t), noise); opt.zero_grad(); loss.backward(); opt.step()
print('train_step_ms median', median_ms(step, 2))
m.eval(); xb = torch.randn(64, 3, 32, 32, device=dev); tb = torch.randint(0, 1000, (64,), device=dev)
with torch.no_grad():
    print('infer_b64_ms median', median_ms(lambda: m(xb, tb), 1))
print('peak_rss_mb', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
if dev.type == 'cuda':
    print('gpu_peak_mb', torch.cuda.max_memory_allocated() / 2**20)
