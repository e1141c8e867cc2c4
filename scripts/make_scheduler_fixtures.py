"""Make crates/diffuse/tests/fixtures/diffusers_schedulers.json: the outcomes of diffusers' schedulers on the
exact Gaussian denoiser, which diffuse's samplers must reproduce (crates/diffuse/src/sample/tests.rs).

Run (writes the version of diffusers and torch it used into the file):
    python -m venv venv && venv/bin/pip install torch diffusers
    venv/bin/python scripts/make_scheduler_fixtures.py --out crates/diffuse/tests/fixtures/diffusers_schedulers.json

The model. Data x0 ~ N(m, s^2) per value. A scheduler's sample lives in one of three frames:
    ve:   x = x0 + sigma * eps                                (Euler, Heun, EDM schedulers; sigma as listed)
    vp:   x = a x0 + b eps, a = 1/sqrt(1 + sigma^2), b = sigma a  (DPM-Solver, UniPC)
    flow: x = (1 - t) x0 + t eps                              (flow-matching schedulers; t as listed)
With (a, b) the frame's coefficients at the scheduler's current sigma, the exact denoiser is
    D(x) = E[x0 | x] = m + a s^2 / (a^2 s^2 + b^2) (x - a m),   eps(x) = (x - a D) / b,
and the model returns what the scheduler's prediction type asks: eps, the velocity eps - x0, or for EDM's
preconditioning the F with c_skip x + c_out F = D.

The outcome. Every update is affine in the starting sample x_T and in each fresh normal draw z_k, so the
output is x_out = gain * x_T + sum_k w_k z_k + offset. The script reads offset and gain from two runs with the
draws set to zero, and each w_k from a run with a one-hot draw (the scheduler module's randn_tensor is
replaced). x_T ~ N(0, init_noise_sigma^2), so the outcome is N(offset, std^2) with
std^2 = (gain * init_noise_sigma)^2 + sum_k w_k^2. All arithmetic on samples is float64; diffusers keeps its
sigmas in float32, which moves results by ~1e-6 relative.
"""

import argparse
import json
import math

import diffusers
import torch
from diffusers import (
    DPMSolverMultistepScheduler,
    EDMEulerScheduler,
    EulerAncestralDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
    FlowMatchHeunDiscreteScheduler,
    HeunDiscreteScheduler,
    UniPCMultistepScheduler,
)

DATA_MEAN, DATA_STD = 0.1, 0.8


def frame_coefs(frame, sigma):
    if frame == "ve":
        return 1.0, sigma
    if frame == "vp":
        a = 1.0 / (1.0 + sigma * sigma) ** 0.5
        return a, sigma * a
    return 1.0 - sigma, sigma  # flow: the listed sigma is t


def model_output(kind, frame, sigma, x, sched):
    a, b = frame_coefs(frame, sigma)
    m, s2 = DATA_MEAN, DATA_STD**2
    d = m + a * s2 / (a * a * s2 + b * b) * (x - a * m)
    eps = (x - a * d) / b
    if kind == "eps":
        return eps
    if kind == "velocity":
        return eps - d
    # EDM: c_skip x + c_out F = D (diffusers' precondition_outputs, epsilon type).
    sd = sched.config.sigma_data
    c_skip = sd**2 / (sigma**2 + sd**2)
    c_out = sigma * sd / (sigma**2 + sd**2) ** 0.5
    return (d - c_skip * x) / c_out


def json_safe(v):
    """Config values as strict JSON has them (-inf as the string "-inf")."""
    return str(v) if isinstance(v, float) and not math.isfinite(v) else v


def run_once(make, steps, set_kw, kind, frame, x_t, draws):
    """One walk from x_T with the k-th fresh normal draw replaced by draws(k); returns (x_out, nfe, n_draws)."""
    sched = make()
    sched.set_timesteps(steps, **set_kw)
    module = __import__(type(sched).__module__, fromlist=["randn_tensor"])
    count = [0]

    def fake_randn(shape, **_):
        k = count[0]
        count[0] += 1
        return torch.full(shape, draws(k), dtype=torch.float64)

    saved = getattr(module, "randn_tensor", None)
    module.randn_tensor = fake_randn
    try:
        x = torch.full((1, 1, 1, 1), x_t, dtype=torch.float64)
        nfe = 0
        for t in sched.timesteps:
            if hasattr(sched, "scale_model_input"):  # it sets the step index where the scheduler keeps one
                sched.scale_model_input(x, t)  # the exact model reads the unscaled sample and the current sigma
            if sched.step_index is None:
                sched._init_step_index(t)
            sigma = float(sched.sigmas[sched.step_index])
            out = model_output(kind, frame, sigma, x, sched)
            nfe += 1
            x = sched.step(out, t, x).prev_sample.to(torch.float64)
    finally:
        if saved is not None:
            module.randn_tensor = saved
    return float(x.flatten()[0]), nfe, count[0]


def case(name, make, steps, kind, frame, plan, set_kw=None):
    set_kw = set_kw or {}
    zero = lambda k: 0.0  # noqa: E731
    offset, nfe, n_draws = run_once(make, steps, set_kw, kind, frame, 0.0, zero)
    gain = run_once(make, steps, set_kw, kind, frame, 1.0, zero)[0] - offset
    weights = [
        run_once(make, steps, set_kw, kind, frame, 0.0, lambda k, j=j: 1.0 if k == j else 0.0)[0] - offset
        for j in range(n_draws)
    ]
    sched = make()
    sched.set_timesteps(steps, **set_kw)
    init = float(getattr(sched, "init_noise_sigma", 1.0))  # flow matching starts from N(0, 1)
    std = ((gain * init) ** 2 + sum(w * w for w in weights)) ** 0.5
    plan = {**plan, "steps": plan.get("steps", steps)}
    return {
        "name": name,
        "scheduler": type(sched).__name__,
        "config": {k: json_safe(v) for k, v in sched.config.items() if not k.startswith("_") and k != "trained_betas"},
        "set_timesteps": {"num_inference_steps": steps, **set_kw},
        "plan": plan,
        "frame": frame,
        "sigmas": [float(v) for v in sched.sigmas],
        "timesteps": [float(v) for v in sched.timesteps],
        "data_mean": DATA_MEAN,
        "data_std": DATA_STD,
        "nfe": nfe,
        "noise_draws": n_draws,
        "offset": offset,
        "gain": gain,
        "init_noise_sigma": init,
        "expected_mean": offset,
        "expected_std": std,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    lin = dict(beta_schedule="linear", beta_start=1e-4, beta_end=0.02, num_train_timesteps=1000)
    scaled = dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, num_train_timesteps=1000)
    cases = []
    # plan: what diffuse runs (sampler, grid, steps, process); the test lays that grid and checks it against
    # the listed sigmas before comparing outcomes.
    for n in (10, 25):
        cases.append(case(
            f"edm-euler-{n}", lambda: EDMEulerScheduler(sigma_min=0.002, sigma_max=80.0, sigma_data=0.5, rho=7.0),
            n, "edm", "ve",
            {"sampler": "euler", "grid": "karras", "sigma_min": 0.002, "sigma_max": 80.0, "process": "flow"},
        ))
    for n in (10, 25):
        cases.append(case(
            f"heun-karras-{n}", lambda: HeunDiscreteScheduler(**lin, use_karras_sigmas=True),
            n, "eps", "ve", {"sampler": "heun", "grid": "karras", "process": "linear"},
        ))
    for n in (20, 50):
        cases.append(case(
            f"euler-ancestral-{n}",
            lambda: EulerAncestralDiscreteScheduler(**lin, timestep_spacing="trailing"),
            n, "eps", "ve", {"sampler": "euler-ancestral", "grid": "timesteps", "process": "linear"},
        ))
    for sde in (False, True):
        for n in (10, 20):
            algo = "sde-dpmsolver++" if sde else "dpmsolver++"
            name = "dpmpp-2m-sde" if sde else "dpmpp-2m"
            cases.append(case(
                f"{name}-karras-{n}",
                lambda algo=algo: DPMSolverMultistepScheduler(**lin, algorithm_type=algo, use_karras_sigmas=True),
                n, "eps", "vp", {"sampler": name, "grid": "karras", "process": "linear"},
            ))
    for sched_kw, proc in ((lin, "linear"), (scaled, "scaled_linear")):
        for n in (5, 10, 20):
            cases.append(case(
                f"unipc-{proc}-{n}", lambda kw=sched_kw: UniPCMultistepScheduler(**kw),
                n, "eps", "vp", {"sampler": "unipc", "grid": "solver-timesteps", "process": proc},
            ))
    cases.append(case(
        "unipc-karras-10", lambda: UniPCMultistepScheduler(**lin, use_karras_sigmas=True),
        10, "eps", "vp", {"sampler": "unipc", "grid": "karras", "process": "linear"},
    ))
    # Flow matching: Euler on diffuse's flow-t grid, given to diffusers as custom sigmas (before its shift);
    # Heun, whose diffusers scheduler takes no custom sigmas, on diffusers' own grid ("as-listed": the test
    # walks the listed sigmas).
    n = 10
    for shift in (1.0, 3.0):
        cases.append(case(
            f"flow-euler-shift{shift:g}-{n}", lambda shift=shift: FlowMatchEulerDiscreteScheduler(shift=shift),
            None, "velocity", "flow",
            {"sampler": "flow-euler", "grid": "flow-t", "shift": shift, "process": "flow", "steps": n},
            set_kw={"sigmas": [1.0 - i / n for i in range(n)]},
        ))
        cases.append(case(
            f"flow-heun-shift{shift:g}-{n}", lambda shift=shift: FlowMatchHeunDiscreteScheduler(shift=shift),
            n, "velocity", "flow", {"sampler": "flow-heun", "grid": "as-listed", "process": "flow"},
        ))
    out = {
        "generator": f"diffusers {diffusers.__version__}, torch {torch.__version__}, float64 samples",
        "notes": __doc__,
        "cases": cases,
    }
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print(f"{len(cases)} cases -> {args.out}")


if __name__ == "__main__":
    main()
