"""PyTorch side of benches/train_step.rs: the same two models (quickstart
fmnist_clip: CNN 16/32/64 + 1-layer text transformer; CLIP ViT-B/32 shape),
same batch, CLIP loss, AdamW step, same thread count."""
import math, os, time

import torch
import torch.nn as nn
import torch.nn.functional as F

threads = int(os.environ.get("BENCH_THREADS", "2"))
torch.set_num_threads(threads)
torch.manual_seed(0)


class Text(nn.Module):
    def __init__(self, vocab, length, dim, layers, heads, ratio):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(torch.randn(length, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, dim * ratio, dropout=0.0, activation="gelu", batch_first=True, norm_first=True)
        self.body = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)

    def forward(self, ids):
        x = self.emb(ids) + self.pos[: ids.shape[1]]
        return self.norm(self.body(x)).mean(1)


class Cnn(nn.Module):
    def __init__(self, widths, dim):
        super().__init__()
        convs, cin = [], 1
        for w in widths:
            convs += [nn.Conv2d(cin, w, 3, 2, 1), nn.ReLU()]
            cin = w
        self.convs = nn.Sequential(*convs)
        self.proj = nn.Linear(cin, dim)

    def forward(self, x):
        x = self.convs(x)
        return self.proj(x.flatten(2).transpose(1, 2)).mean(1)


class Vit(nn.Module):
    def __init__(self, size, patch, dim, layers, heads):
        super().__init__()
        n = (size // patch) ** 2
        self.patch = patch
        self.embed = nn.Linear(3 * patch * patch, dim)
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.pos = nn.Parameter(torch.randn(1, n + 1, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, dim * 4, dropout=0.0, activation="gelu", batch_first=True, norm_first=True)
        self.body = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x):
        b, c, h, w = x.shape
        p = self.patch
        x = x.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5).reshape(b, -1, c * p * p)
        x = torch.cat([self.cls.expand(b, -1, -1), self.embed(x)], 1) + self.pos
        return self.norm(self.body(x))[:, 0]


class Clip(nn.Module):
    def __init__(self, image, text, di, dt, fused, joint):
        super().__init__()
        self.image, self.text = image, text
        self.fi, self.ft = nn.Linear(di, fused), nn.Linear(dt, fused)
        self.pi, self.pt = nn.Linear(fused, joint, bias=False), nn.Linear(fused, joint, bias=False)
        self.scale = nn.Parameter(torch.tensor([math.log(1 / 0.07)]))

    def forward(self, px, ids):
        a = F.normalize(self.pi(self.fi(self.image(px))), dim=-1)
        b = F.normalize(self.pt(self.ft(self.text(ids))), dim=-1)
        logits = a @ b.t() * self.scale.exp()
        y = torch.arange(len(a))
        return (F.cross_entropy(logits, y) + F.cross_entropy(logits.t(), y)) / 2


def bench(name, model, px, ids, steps):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)

    def step():
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = model(px, ids)
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        opt.step()
        t3 = time.perf_counter()
        return t1 - t0, t2 - t1, t3 - t2

    step()
    t = time.perf_counter()
    parts = [0.0, 0.0, 0.0]
    for _ in range(steps):
        for i, x in enumerate(step()):
            parts[i] += x
    dt = (time.perf_counter() - t) / steps
    n = sum(p.numel() for p in model.parameters())
    f, b, u = (p / steps for p in parts)
    print(f"{name} batch {len(px)}: {dt:.3f} s/step, {len(px) / dt:.1f} samples/s ({n} parameters); "
          f"forward {f:.3f} s, backward {b:.3f} s, update {u:.3f} s (PyTorch {torch.__version__})")


q = Clip(Cnn([16, 32, 64], 64), Text(30522, 16, 64, 1, 4, 2), 64, 64, 64, 64)
bench("quickstart (fmnist_clip)", q, torch.randn(128, 1, 28, 28), torch.randint(0, 30522, (128, 16)), 30)
b32 = Clip(Vit(224, 32, 768, 12, 12), Text(49408, 77, 512, 12, 8, 4), 768, 512, 512, 512)
bench("CLIP ViT-B/32 shape", b32, torch.randn(8, 3, 224, 224), torch.randint(0, 49408, (8, 77)), 5)
