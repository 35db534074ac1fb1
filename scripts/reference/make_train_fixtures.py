"""Reference fixtures for mosaic-train (objectives, optimisers, schedules).

Writes crates/mosaic-train/tests/fixtures/{losses,optim,schedules}.json
(or into the folder given as argv[1]). Everything is float64 and seeded;
the Rust tests (crates/mosaic-train/tests/parity.rs) recompute each value
and compare at 1e-6 or tighter.

References:
- losses: PyTorch 2.9.1 functional ops, written exactly as open_clip's
  `ClipLoss` / `SigLipLoss` (open_clip/loss.py: logits = scale * a @ b.T
  (+ bias); CLIP = mean of the two cross-entropies; SigLIP =
  -logsigmoid(labels * logits).sum() / batch with labels = 2*eye - 1),
  `F.cross_entropy(label_smoothing=...)`,
  `F.binary_cross_entropy_with_logits`, Hinton KD as
  `F.kl_div(log_softmax(s/T), softmax(t/T), reduction="batchmean") * T*T`,
  `F.mse_loss`, `1 - F.cosine_similarity`. Gradients via autograd.
- optimisers: `torch.optim.AdamW`, `torch.optim.SGD` (momentum,
  dampening, Nesterov) and `lion_pytorch.Lion` 0.2.5 (`pip install
  --no-deps lion-pytorch==0.2.5`; it only needs torch), 20 steps on fixed
  parameters with fixed per-step gradients, with parameter groups
  (per-group lr and weight decay), `torch.nn.utils.clip_grad_norm_` and
  a transformers `get_cosine_schedule_with_warmup` LambdaLR. Lion is also
  checked here against a NumPy write-up of the paper's update.
- schedules: transformers 5.24 `get_constant_schedule_with_warmup`,
  `get_linear_schedule_with_warmup`, `get_cosine_schedule_with_warmup`,
  `get_cosine_with_min_lr_schedule_with_warmup`: the lr of every step.
"""

import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(REPO, "crates", "mosaic-train", "tests", "fixtures")


def lst(t):
    return t.detach().cpu().double().reshape(-1).tolist()


def tensor(t):
    return {"shape": list(t.shape), "data": lst(t)}


def save(name, obj):
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, name), "w") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")


def leaf(t):
    return t.clone().requires_grad_(True)


def losses():
    g = torch.Generator().manual_seed(7)
    out = {}

    # Cross-entropy with label smoothing.
    logits = leaf(torch.randn(6, 5, generator=g) * 2)
    targets = torch.tensor([0, 4, 2, 2, 1, 3])
    loss = F.cross_entropy(logits, targets, label_smoothing=0.1)
    loss.backward()
    out["cross_entropy"] = {
        "logits": tensor(logits), "targets": targets.tolist(), "smoothing": 0.1,
        "loss": loss.item(), "grad_logits": tensor(logits.grad),
    }

    # open_clip ClipLoss on normalised embeddings.
    a = leaf(F.normalize(torch.randn(6, 8, generator=g), dim=-1))
    b = leaf(F.normalize(torch.randn(6, 8, generator=g), dim=-1))
    s = leaf(torch.tensor([math.log(1 / 0.07)]))
    logits_per_image = s.exp() * a @ b.T
    logits_per_text = s.exp() * b @ a.T
    labels = torch.arange(6)
    loss = (F.cross_entropy(logits_per_image, labels) + F.cross_entropy(logits_per_text, labels)) / 2
    loss.backward()
    out["clip"] = {
        "a": tensor(a), "b": tensor(b), "logit_scale": s.item(), "loss": loss.item(),
        "grad_a": tensor(a.grad), "grad_b": tensor(b.grad), "grad_logit_scale": s.grad.item(),
    }

    # open_clip SigLipLoss: SigLIP init (t' = ln 10, b = -10) and another point.
    for key, (t0, b0) in {"siglip_init": (math.log(10.0), -10.0), "siglip": (math.log(5.3), -3.1)}.items():
        a = leaf(F.normalize(torch.randn(6, 8, generator=g), dim=-1))
        b = leaf(F.normalize(torch.randn(6, 8, generator=g), dim=-1))
        t = leaf(torch.tensor([t0]))
        bias = leaf(torch.tensor([b0]))
        logits = t.exp() * a @ b.T + bias
        z = 2 * torch.eye(6) - torch.ones(6, 6)
        loss = -F.logsigmoid(z * logits).sum() / a.shape[0]
        loss.backward()
        out[key] = {
            "a": tensor(a), "b": tensor(b), "logit_scale": t.item(), "logit_bias": bias.item(),
            "loss": loss.item(), "grad_a": tensor(a.grad), "grad_b": tensor(b.grad),
            "grad_logit_scale": t.grad.item(), "grad_logit_bias": bias.grad.item(),
        }

    # BCE with logits (modality discriminator); large |x| included.
    x = leaf(torch.cat([torch.randn(8, generator=g) * 3, torch.tensor([40.0, -40.0])]))
    y = torch.tensor([1.0, 0, 1, 1, 0, 0, 1, 0, 0, 1])
    loss = F.binary_cross_entropy_with_logits(x, y)
    loss.backward()
    out["bce"] = {"logits": lst(x), "targets": lst(y), "loss": loss.item(), "grad_logits": lst(x.grad)}

    # Knowledge distillation: KL at temperature T (x T^2), MSE, cosine.
    st = leaf(torch.randn(5, 7, generator=g) * 2)
    te = torch.randn(5, 7, generator=g) * 2
    T = 2.5
    loss = F.kl_div(F.log_softmax(st / T, dim=-1), F.softmax(te / T, dim=-1), reduction="batchmean") * T * T
    loss.backward()
    out["kd_kl"] = {"student": tensor(st), "teacher": tensor(te), "temperature": T,
                    "loss": loss.item(), "grad_student": tensor(st.grad)}
    se = leaf(torch.randn(4, 6, generator=g))
    tt = torch.randn(4, 6, generator=g)
    loss = F.mse_loss(se, tt)
    loss.backward()
    out["kd_mse"] = {"student": tensor(se), "teacher": tensor(tt), "loss": loss.item(), "grad_student": tensor(se.grad)}
    se = leaf(se.detach())
    loss = (1 - F.cosine_similarity(se, tt, dim=-1)).mean()
    loss.backward()
    out["kd_cosine"] = {"student": tensor(se), "teacher": tensor(tt), "loss": loss.item(), "grad_student": tensor(se.grad)}
    save("losses.json", out)


def lion_numpy(w, grads, lr, wd, b1, b2):
    """Chen et al. 2023, Algorithm 2 (decoupled decay), in NumPy."""
    w = w.copy()
    m = np.zeros_like(w)
    for gr in grads:
        c = b1 * m + (1 - b1) * gr
        w = w * (1 - lr * wd) - lr * np.sign(c)
        m = b2 * m + (1 - b2) * gr
    return w


def optimisers():
    from lion_pytorch import Lion
    from transformers import get_cosine_schedule_with_warmup

    g = torch.Generator().manual_seed(11)
    p0 = torch.randn(3, 4, generator=g)
    p1 = torch.randn(5, generator=g)
    steps = 20
    g0 = [torch.randn(3, 4, generator=g) for _ in range(steps)]
    g1 = [torch.randn(5, generator=g) for _ in range(steps)]
    out = {"init": {"p0": tensor(p0), "p1": tensor(p1)},
           "grads": {"p0": [lst(x) for x in g0], "p1": [lst(x) for x in g1]},
           "steps": steps, "cases": {}}

    def run(name, make, clip=None, schedule=None, note=""):
        w0 = p0.clone().requires_grad_(True)
        w1 = p1.clone().requires_grad_(True)
        opt = make(w0, w1)
        sched = schedule(opt) if schedule else None
        traj = {"p0": [], "p1": []}
        norms = []
        lrs = []
        for k in range(steps):
            w0.grad = g0[k].clone()
            w1.grad = g1[k].clone()
            if clip is not None:
                norms.append(torch.nn.utils.clip_grad_norm_([w0, w1], clip).item())
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            if sched:
                sched.step()
            traj["p0"].append(lst(w0))
            traj["p1"].append(lst(w1))
        out["cases"][name] = {"trajectory": traj, "clip_norms": norms, "lrs": lrs, "note": note}
        return w0, w1

    groups = lambda w0, w1, lr, wd0, wd1, s1: [
        {"params": [w0], "lr": lr, "weight_decay": wd0},
        {"params": [w1], "lr": lr * s1, "weight_decay": wd1},
    ]
    run("adamw", lambda w0, w1: torch.optim.AdamW(groups(w0, w1, 1e-2, 0.1, 0.0, 0.5), lr=1e-2),
        clip=1.0, schedule=lambda o: get_cosine_schedule_with_warmup(o, 3, steps),
        note="AdamW lr 1e-2 (cosine, 3 warm-up, 20 total), groups p0 wd 0.1, p1 wd 0 lr x0.5; clip 1.0")
    run("sgd_momentum", lambda w0, w1: torch.optim.SGD([w0, w1], lr=0.05, momentum=0.9, weight_decay=1e-2),
        note="SGD lr 0.05 momentum 0.9 wd 1e-2")
    run("sgd_nesterov", lambda w0, w1: torch.optim.SGD([w0, w1], lr=0.05, momentum=0.9, weight_decay=1e-2, nesterov=True),
        note="SGD lr 0.05 momentum 0.9 wd 1e-2 nesterov")
    run("sgd_dampening", lambda w0, w1: torch.optim.SGD([w0, w1], lr=0.05, momentum=0.8, dampening=0.3),
        note="SGD lr 0.05 momentum 0.8 dampening 0.3")
    w0, w1 = run("lion", lambda w0, w1: Lion(groups(w0, w1, 1e-3, 0.1, 0.0, 2.0), lr=1e-3, weight_decay=0.1),
                 note="lion_pytorch.Lion lr 1e-3 betas (0.9, 0.99), groups p0 wd 0.1, p1 wd 0 lr x2")
    # The NumPy write-up agrees with lion-pytorch.
    n0 = lion_numpy(p0.numpy(), [x.numpy() for x in g0], 1e-3, 0.1, 0.9, 0.99)
    n1 = lion_numpy(p1.numpy(), [x.numpy() for x in g1], 2e-3, 0.0, 0.9, 0.99)
    assert np.abs(n0 - w0.detach().numpy()).max() < 1e-15, "lion numpy p0"
    assert np.abs(n1 - w1.detach().numpy()).max() < 1e-15, "lion numpy p1"
    save("optim.json", out)


def schedules():
    from transformers import (
        get_constant_schedule_with_warmup,
        get_cosine_schedule_with_warmup,
        get_cosine_with_min_lr_schedule_with_warmup,
        get_linear_schedule_with_warmup,
    )

    base = 3e-4
    cases = {
        "constant": (lambda o: get_constant_schedule_with_warmup(o, 5), 5, 30, {}),
        "linear": (lambda o: get_linear_schedule_with_warmup(o, 5, 30), 5, 30, {}),
        "cosine": (lambda o: get_cosine_schedule_with_warmup(o, 5, 30), 5, 30, {"num_cycles": 0.5}),
        "cosine_cycles": (lambda o: get_cosine_schedule_with_warmup(o, 4, 40, num_cycles=2.0), 4, 40, {"num_cycles": 2.0}),
        "cosine_no_warmup": (lambda o: get_cosine_schedule_with_warmup(o, 0, 25), 0, 25, {"num_cycles": 0.5}),
        "cosine_with_min_lr": (lambda o: get_cosine_with_min_lr_schedule_with_warmup(o, 5, 30, min_lr_rate=0.1), 5, 30,
                               {"num_cycles": 0.5, "min_lr_ratio": 0.1}),
    }
    out = {"base_lr": base, "cases": {}}
    for name, (make, w, n, extra) in cases.items():
        p = torch.zeros(1, requires_grad=True)
        opt = torch.optim.SGD([p], lr=base)
        s = make(opt)
        lrs = []
        for _ in range(n + 6):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            s.step()
        out["cases"][name] = {"warmup_steps": w, "total_steps": n, **extra, "lrs": lrs}
    save("schedules.json", out)


if __name__ == "__main__":
    losses()
    optimisers()
    schedules()
    print("wrote", OUT)
