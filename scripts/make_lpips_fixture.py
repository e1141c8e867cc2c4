"""Make the LPIPS reference fixture for diffuse's Rust LPIPS (AlexNet and VGG16 trunks).

torchvision's pretrained backbones cannot be shipped, so the backbone here is
*synthetic*: every tensor is filled from SplitMix64 (recipe below), and Rust can
regenerate it without torch. The images come from the same generator. The
fixture therefore holds only the reference distances, per-layer terms and a few
probe values (a few KB). The LPIPS linear heads are read from
lpips_v0.1_{alex,vgg}_lin.safetensors and checked against the heads that the
`lpips` package bundles.

Run (needs torch, numpy, safetensors, plus lpips==0.1.4 and torchvision, whose
imports also need pillow, scipy and tqdm):
    pip install --target /tmp/lp --no-deps lpips==0.1.4 torchvision==0.29.2 pillow scipy tqdm  # tv matching torch (2.15 here)
    PYTHONPATH=/tmp/lp python scripts/make_lpips_fixture.py \
        --heads-dir shared/weights --out fixture.safetensors [--backbone-dir DIR]
--backbone-dir also writes {alexnet,vgg16}_random.safetensors (torchvision names
`features.N.weight|bias`; 9.8 MB / 58.9 MB, do not commit).

Generator (all arithmetic mod 2^64, floats in f64 and cast to f32 only at the end):
    mix(z): z = (z ^ z>>30) * 0xBF58476D1CE4E5B9; z = (z ^ z>>27) * 0x94D049BB133111EB; z ^ z>>31
    sm(s, i) = mix(s + (i+1) * 0x9E3779B97F4A7C15)      check: sm(0, 0) = 0xe220a8397b1dcdaf
    u(s, i)  = (sm(s, i) >> 11) * 2^-53                 in [0, 1)
    conv weight k-th tensor in torchvision order, flat row-major [out,in,kh,kw] index i:
        f32( sqrt(6 / (in*kh*kw)) * (2u(k,i) - 1) )    (He-uniform: keeps activations O(1) through ReLUs)
    conv bias (k-th tensor):  f32( 0.01 * (2u(k,i) - 1) )
    k counts features.*.weight / .bias in torchvision order (weight, bias, next conv, ...),
    independently per network: alex k = 0..9, vgg16 k = 0..25.
    image pair p (shape [1,3,H,W], flat NCHW index i): a = 2u(1000+2p, i) - 1,
    b = 2u(1001+2p, i) - 1; x0 = f32(a), x1 = f32((1-t)*a + t*b).
"""
import argparse
import hashlib
import importlib.metadata
import json

import numpy as np
import torch
from safetensors.torch import load_file, save_file

GOLDEN = 0x9E3779B97F4A7C15
SM00 = 0xE220A8397B1DCDAF
IMG_SEED = 1000
# name -> (H, W, [t per pair]); pairs are numbered consecutively across cases.
CASES = [("b64", 64, 64, [1.0, 0.5, 0.1]), ("s32", 32, 32, [1.0]), ("r40x56", 40, 56, [0.5])]
NETS = ["alex", "vgg"]
TV_CTOR = {"alex": "alexnet", "vgg": "vgg16"}


def splitmix(seed, n):
    """sm(seed, 0..n) as uint64 (numpy wraps mod 2^64)."""
    z = np.uint64(seed) + np.arange(1, n + 1, dtype=np.uint64) * np.uint64(GOLDEN)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def sym_uniform(seed, n):
    """2u - 1 in [-1, 1), f64."""
    return 2.0 * ((splitmix(seed, n) >> np.uint64(11)).astype(np.float64) * 2.0**-53) - 1.0


def synthetic_backbone(template):
    """Fill a torchvision `features` state dict template (names/shapes) from the generator."""
    out = {}
    for k, (name, t) in enumerate(template.items()):
        r = sym_uniform(k, t.numel())
        scale = np.sqrt(6.0 / np.prod(t.shape[1:])) if name.endswith("weight") else 0.01
        out[name] = torch.from_numpy((scale * r).astype(np.float32).reshape(t.shape))
    return out


def image_pairs():
    """{case: (x0, x1)} with x* of shape [N,3,H,W] in [-1, 1)."""
    pairs, p = {}, 0
    for name, h, w, ts in CASES:
        x0, x1 = [], []
        for t in ts:
            a = sym_uniform(IMG_SEED + 2 * p, 3 * h * w)
            b = sym_uniform(IMG_SEED + 2 * p + 1, 3 * h * w)
            x0.append(a.astype(np.float32).reshape(1, 3, h, w))
            x1.append(((1.0 - t) * a + t * b).astype(np.float32).reshape(1, 3, h, w))
            p += 1
        pairs[name] = (torch.from_numpy(np.concatenate(x0)), torch.from_numpy(np.concatenate(x1)))
    return pairs


def probe(tensors, prefix, fix):
    for name, t in tensors.items():
        flat = t.reshape(-1)
        fix[f"probe.{prefix}.{name}.head"] = flat[:8].clone()
        fix[f"probe.{prefix}.{name}.sum"] = flat.double().sum().reshape(1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--heads-dir", default="/work/shared/weights")
    ap.add_argument("--out", default="fixture.safetensors")
    ap.add_argument("--backbone-dir", default=None)
    args = ap.parse_args()

    import lpips
    import torchvision

    assert int(splitmix(0, 1)[0]) == SM00
    torch.set_grad_enabled(False)
    fix, meta = {}, {}
    pairs = image_pairs()
    for case, (x0, x1) in pairs.items():
        probe({"x0": x0, "x1": x1}, f"img.{case}", fix)

    for net in NETS:
        tv_sd = getattr(torchvision.models, TV_CTOR[net])(weights=None).state_dict()
        template = {k: v for k, v in tv_sd.items() if k.startswith("features.")}
        backbone = synthetic_backbone(template)
        probe(backbone, net, fix)
        if args.backbone_dir:
            save_file(backbone, f"{args.backbone_dir}/{TV_CTOR[net]}_random.safetensors")

        model = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False).eval()
        heads_path = f"{args.heads_dir}/lpips_v0.1_{net}_lin.safetensors"
        heads = load_file(heads_path)
        bundled = model.state_dict()
        for k, v in heads.items():  # shared file == package's bundled v0.1 heads
            assert torch.equal(v, bundled[k]), k
        missing, unexpected = model.load_state_dict(heads, strict=False)
        # `lins.N.*` alias `linN.*` (same Parameter); only trunk and scaling buffers stay unloaded.
        assert not unexpected and all(k.split(".")[0] in ("net", "scaling_layer", "lins") for k in missing)
        # lpips wraps torchvision's features into slices; child names keep the features index.
        for name, p in model.net.named_parameters():  # e.g. "slice2.3.weight"
            _, idx, kind = name.split(".")
            p.copy_(backbone[f"features.{idx}.{kind}"])

        for case, (x0, x1) in pairs.items():
            d, per_layer = model(x0, x1, retPerLayer=True)
            fix[f"{net}.{case}.dist"] = d.reshape(-1).clone()
            fix[f"{net}.{case}.per_layer"] = torch.cat([r.reshape(-1, 1) for r in per_layer], 1)
            dn = model((x0 + 1) / 2, (x1 + 1) / 2, normalize=True)  # [0,1] convention
            assert torch.allclose(dn.reshape(-1), d.reshape(-1), rtol=1e-5, atol=0)
        meta[f"heads_sha256.{net}"] = hashlib.sha256(open(heads_path, "rb").read()).hexdigest()

    meta.update({
        "generator": __doc__[__doc__.index("Generator"):].strip(),
        "sm00": hex(SM00),
        "cases": json.dumps([{"name": n, "H": h, "W": w, "t": ts} for n, h, w, ts in CASES]),
        "versions": f"lpips {importlib.metadata.version('lpips')}, "
                    f"torchvision {torchvision.__version__}, torch {torch.__version__}",
        "call": "lpips.LPIPS(net=NET, version='0.1', pretrained=True, pnet_rand=True)(x0, x1, retPerLayer=True); "
                "inputs in [-1,1], normalize=False",
    })
    save_file({k: v.contiguous() for k, v in fix.items()}, args.out, metadata=meta)
    for k, v in fix.items():
        if not k.startswith("probe"):
            print(k, v.tolist())


if __name__ == "__main__":
    main()
