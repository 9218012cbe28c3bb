#!/usr/bin/python3
"""bench_train.py NET.json THREADS REPEATS SECONDS — PyTorch's training speed
on the network that bench/bench_train.c describes (the same blocks, built by
tests/torch_check.py's Net), batch and resolution from the file. Prints one
images/s figure per repeat on stdout, one per line. Run with Debian's
/usr/bin/python3 (PyTorch 1.13)."""
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
import torch_check  # noqa: E402


def main():
    cfg = json.load(open(sys.argv[1]))
    threads, repeats, seconds = int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    a = cfg["net"]
    B, R = cfg["batch"], a["resolution"]
    net = torch_check.Net(a)
    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=4e-5)
    x = torch.randn(B, a["in_ch"], R, R)
    y = torch.randint(0, a["num_classes"], (B,))

    def step():
        opt.zero_grad()
        loss = F.cross_entropy(net(x), y, label_smoothing=0.1)
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    for _ in range(repeats):
        n, t0 = 0, time.perf_counter()
        while True:
            step()
            n += 1
            dt = time.perf_counter() - t0
            if dt >= seconds:
                break
        print("%.2f" % (n * B / dt), flush=True)


if __name__ == "__main__":
    main()
