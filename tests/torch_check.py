#!/usr/bin/python3
"""torch_check.py DIR — the PyTorch side of the engine's cross-check.

DIR holds what tests/test_net.c wrote: net.json (the resolved network and the
SGD settings), tensors.json (names, shapes and layouts of the parameters, in
order), params0.bin (the engine's initial parameters), x.bin and labels.bin
(one batch, NHWC). This builds the same network in PyTorch, loads the same
weights, takes `steps` SGD steps (Nesterov, weight decay on conv and linear
weights only) on that batch in training mode, and writes torch_losses.bin
(float64 per step) and torch_params.bin (the updated parameters, in the
engine's layouts) for the C test to compare. Run with Debian's /usr/bin/python3.
"""
import json
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ACTS = {
    "relu": F.relu, "relu6": F.relu6, "hswish": F.hardswish, "swish": F.silu,
    "sigmoid": torch.sigmoid, "hsigmoid": F.hardsigmoid, "none": lambda x: x,
}


def bn(c):
    return nn.BatchNorm2d(c, eps=1e-5, momentum=0.1)


class Block(nn.Module):
    def __init__(self, b, se_act, se_gate):
        super().__init__()
        self.b = b
        self.act = ACTS[b["act"]]
        self.se_act, self.se_gate = ACTS[se_act], ACTS[se_gate]
        e, k, s = b["exp"], b["k"], b["s"]
        if e != b["in"]:
            self.expand = nn.Conv2d(b["in"], e, 1, bias=False)
            self.expand_bn = bn(e)
        self.dw = nn.Conv2d(e, e, k, s, (k - 1) // 2, groups=e, bias=False)
        self.dw_bn = bn(e)
        if b["se"] > 0:
            self.se_reduce = nn.Linear(e, b["se"])
            self.se_expand = nn.Linear(b["se"], e)
        self.project = nn.Conv2d(e, b["out"], 1, bias=False)
        self.project_bn = bn(b["out"])

    def forward(self, x):
        h = x
        if self.b["exp"] != self.b["in"]:
            h = self.act(self.expand_bn(self.expand(h)))
        h = self.act(self.dw_bn(self.dw(h)))
        if self.b["se"] > 0:
            s = h.mean(dim=(2, 3))
            s = self.se_gate(self.se_expand(self.se_act(self.se_reduce(s))))
            h = h * s[:, :, None, None]
        h = self.project_bn(self.project(h))
        return h + x if self.b["residual"] else h


class Net(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.a = a
        k = a["stem_kernel"]
        self.stem = nn.Conv2d(a["in_ch"], a["stem_ch"], k, a["stem_stride"], (k - 1) // 2, bias=False)
        self.stem_bn = bn(a["stem_ch"])
        self.blocks = nn.ModuleList(Block(b, a["se_act"], a["se_gate"]) for b in a["blocks"])
        if a["head_ch"] > 0:
            self.head = nn.Conv2d(a["head_in_ch"], a["head_ch"], 1, bias=False)
            self.head_bn = bn(a["head_ch"])
        if a["fc_ch"] > 0:
            self.fc = nn.Linear(a["pool_ch"], a["fc_ch"])
        self.classifier = nn.Linear(a["classifier_in"], a["num_classes"])

    def forward(self, x):
        a = self.a
        h = ACTS[a["stem_act"]](self.stem_bn(self.stem(x)))
        for b in self.blocks:
            h = b(h)
        if a["head_ch"] > 0:
            h = ACTS[a["head_act"]](self.head_bn(self.head(h)))
        h = h.mean(dim=(2, 3))
        if a["fc_ch"] > 0:
            h = ACTS[a["fc_act"]](self.fc(h))
        return self.classifier(h)


def torch_name(name):
    """The engine's tensor name -> (module path, attribute)."""
    parts = name.split(".")
    if parts[0] == "stem":
        mod = "stem" if parts[1] == "conv" else "stem_bn"
        attr = "weight" if parts[1] == "conv" else parts[2]
    elif parts[0] == "head":
        mod = "head" if parts[1] == "conv" else "head_bn"
        attr = "weight" if parts[1] == "conv" else parts[2]
    elif parts[0] in ("fc", "classifier"):
        mod, attr = parts[0], {"w": "weight", "b": "bias"}[parts[1]]
    else:   # b<i>.<part>.<conv|bn|reduce|expand>...
        i = int(parts[0][1:])
        if parts[1] == "se":
            mod = "blocks.%d.se_%s" % (i, parts[2])
            attr = {"w": "weight", "b": "bias"}[parts[3]]
        else:
            mod = "blocks.%d.%s%s" % (i, parts[1], "" if parts[2] == "conv" else "_bn")
            attr = "weight" if parts[2] == "conv" else parts[3]
    attr = {"gamma": "weight", "beta": "bias"}.get(attr, attr)
    return mod, attr


def to_torch(arr, layout):
    t = torch.from_numpy(arr.copy())
    if layout == "KKIO":
        return t.permute(3, 2, 0, 1).contiguous()
    if layout == "KKC":
        return t.permute(2, 0, 1).unsqueeze(1).contiguous()
    if layout == "IO":
        return t.t().contiguous()
    return t


def from_torch(t, layout):
    t = t.detach()
    if layout == "KKIO":
        t = t.permute(2, 3, 1, 0)
    elif layout == "KKC":
        t = t.squeeze(1).permute(1, 2, 0)
    elif layout == "IO":
        t = t.t()
    return t.contiguous().numpy().astype(np.float32)


def main():
    d = sys.argv[1]
    torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg = json.load(open(os.path.join(d, "net.json")))
    tensors = json.load(open(os.path.join(d, "tensors.json")))
    a = cfg["net"]
    net = Net(a)
    flat = np.fromfile(os.path.join(d, "params0.bin"), dtype=np.float32)
    mods = dict(net.named_modules())
    off = 0
    decay, no_decay = [], []
    for t in tensors:
        n = int(np.prod(t["shape"]))
        arr = flat[off:off + n].reshape(t["shape"])
        off += n
        mod, attr = torch_name(t["name"])
        m = mods[mod]
        cur = getattr(m, attr)
        val = to_torch(arr, t["layout"])
        assert tuple(cur.shape) == tuple(val.shape), (t["name"], cur.shape, val.shape)
        with torch.no_grad():
            cur.copy_(val)
        if isinstance(cur, nn.Parameter):
            (decay if t["layout"] in ("KKIO", "KKC", "IO") else no_decay).append(cur)
    assert off == flat.size, "params0.bin has %d floats, the tensors %d" % (flat.size, off)
    B, R, C = cfg["batch"], a["resolution"], a["in_ch"]
    x = np.fromfile(os.path.join(d, "x.bin"), dtype=np.float32).reshape(B, R, R, C)
    x = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
    y = torch.from_numpy(np.fromfile(os.path.join(d, "labels.bin"), dtype=np.uint8).astype(np.int64))
    opt = torch.optim.SGD([{"params": decay, "weight_decay": cfg["weight_decay"]},
                           {"params": no_decay, "weight_decay": 0.0}],
                          lr=cfg["lr"], momentum=cfg["momentum"], nesterov=True)
    net.train()
    losses = []
    for _ in range(cfg["steps"]):
        opt.zero_grad()
        loss = F.cross_entropy(net(x), y, label_smoothing=cfg["label_smoothing"])
        loss.backward()
        opt.step()
        losses.append(loss.item())
    np.array(losses, dtype=np.float64).tofile(os.path.join(d, "torch_losses.bin"))
    out = []
    for t in tensors:
        mod, attr = torch_name(t["name"])
        out.append(from_torch(getattr(mods[mod], attr), t["layout"]).reshape(-1))
    np.concatenate(out).astype(np.float32).tofile(os.path.join(d, "torch_params.bin"))


if __name__ == "__main__":
    main()
