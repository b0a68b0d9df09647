"""How low-rank is the analysis' biggest layer, and how well does a 3x3 kernel stand in for it? (issue 23: a
training-free cut of g_a.2's multiply-adds)

    python bench/experiments/lowrank_analysis.py [--weights flagship] [--images 4]

g_a.2 (5x5, 128 -> 128, stride 2, at half resolution) holds 58 % of the analysis' multiply-adds. A rank-r version
(a 5x5 convolution to r channels, then a 1x1 back to 128) costs r/128 of it (plus r x 128 per output). The best
such version for the layer's real outputs projects them onto the top r eigenvectors of their covariance; the share
of their energy left out is its error. Printed per r: that share, the layer's SNR, and the layer's multiply-adds;
beside it the plain weight SVD's share (data-blind). Then the same for a 3x3 kernel (9.2k instead of 25.6k
multiply-adds per pixel) fitted by least squares to the 5x5 layer's outputs on the same inputs: the best a 3x3
layer can start from before any training. Kodak images at t = 0, 0.5 and 1, the modulation applied.
"""
import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from neuralcodec.zoo import weights_io

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("--weights", default="flagship")
ap.add_argument("--images", type=int, default=4)
ap.add_argument("--kodak", default="../shared/data/kodak")
ap.add_argument("-o", "--out", type=Path)
a = ap.parse_args()
torch.set_num_threads(1)
model = weights_io.build_model(weights_io.load(a.weights)).eval()
if getattr(model, "top_from", None) is not None:
    model = model.band_view(0)  # the main analysis (what the default quality uses)
weight = model.g_a[2].weight.detach()
channels = weight.shape[0]
cov, n = torch.zeros(channels, channels, dtype=torch.float64), 0
g33 = torch.zeros(channels * 9, channels * 9, dtype=torch.float64)  # Gram matrices of the 3x3 and 5x5 windows
g35 = torch.zeros(channels * 9, channels * 25, dtype=torch.float64)
for t in (0.0, 0.5, 1.0):
    for f in sorted(Path(a.kodak).glob("*.png"))[:a.images]:
        x = torch.from_numpy(np.asarray(Image.open(f).convert("RGB"), np.float32).transpose(2, 0, 1)[None] / 255)
        with torch.no_grad():
            h = model.g_a[1](model.g_a[0](x)) * model.mod_a(torch.full((1,), t))[0]
            out = torch.nn.functional.conv2d(h, weight, None, 2, 2).flatten(2)[0].double()
        cov += out @ out.T
        n += out.shape[1]
        hp5, hp3 = torch.nn.functional.pad(h, (2, 2, 2, 2)), torch.nn.functional.pad(h, (1, 1, 1, 1))
        for r0 in range(0, h.shape[2] // 2, 16):  # output rows in bands: bounded memory
            r1 = min(r0 + 16, h.shape[2] // 2)
            x5 = torch.nn.functional.unfold(hp5[:, :, 2 * r0:2 * r1 + 3], 5, stride=2)[0].double()
            x3 = torch.nn.functional.unfold(hp3[:, :, 2 * r0:2 * r1 + 1], 3, stride=2)[0].double()
            g33 += x3 @ x3.T
            g35 += x3 @ x5.T
energy = torch.linalg.eigvalsh(cov / n).flip(0).clamp_min(0)
left = 1 - energy.cumsum(0) / energy.sum()
s2 = torch.linalg.svdvals(weight.reshape(channels, -1).double()) ** 2
blind = 1 - s2.cumsum(0) / s2.sum()
full = weight[0].numel()  # multiply-adds per output position of the full layer, per output channel
rows = []
print(f"{'rank':>5} {'energy left':>12} {'SNR dB':>7} {'weight SVD left':>16} {'MACs vs full':>13}")
for r in (16, 32, 48, 64, 80, 96, 112):
    macs = (r * full + r * channels) / (channels * full)
    row = {"rank": r, "energy_left": float(left[r - 1]), "snr_db": -10 * math.log10(max(float(left[r - 1]), 1e-12)),
           "weight_svd_left": float(blind[r - 1]), "macs_vs_full": macs}
    rows.append(row)
    print(f"{r:5d} {row['energy_left']:12.5f} {row['snr_db']:7.1f} {row['weight_svd_left']:16.5f} {macs:13.2f}")
w5 = weight.reshape(channels, -1).double()
w3 = torch.linalg.solve(g33 + 1e-6 * torch.eye(len(g33), dtype=torch.float64) * g33.diagonal().mean(), g35 @ w5.T).T
# residual energy: |W5 x5 - W3 x3|^2 summed = tr(W5 G55 W5^T) - 2 tr(W3 G35 W5^T) + tr(W3 G33 W3^T); G55 from cov
total = float(torch.trace(cov))  # sum over positions of |W5 x5|^2 (cov is the outputs' Gram matrix)
fit = total - 2 * float(torch.trace(w3 @ g35 @ w5.T)) + float(torch.trace(w3 @ g33 @ w3.T))
k3 = {"energy_left": fit / total, "snr_db": -10 * math.log10(max(fit / total, 1e-12)), "macs_vs_full": 9 / 25}
print(f"3x3 least squares: energy left {k3['energy_left']:.5f}, SNR {k3['snr_db']:.1f} dB, multiply-adds "
      f"{k3['macs_vs_full']:.2f} of the 5x5's")
if a.out:
    a.out.write_text(json.dumps({"weights": a.weights, "images": a.images, "rows": rows, "kernel3": k3}, indent=1) + "\n")
