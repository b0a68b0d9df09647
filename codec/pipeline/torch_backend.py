"""The transforms on torch: any device (CUDA batches equal tiles, optionally under float16 autocast), and the
encoder-side latent refinement, which needs gradients. Imported only where torch is wanted."""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from neuralcodec.format.bitstream import MAX_WINDOW
from neuralcodec.pipeline.tiling import TiledTransforms
from neuralcodec.settings import PRECISIONS, worker_threads


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device cuda was asked for, but no CUDA device is available")
    return torch.device(device)


class TorchTransforms(TiledTransforms):
    """The model's networks in torch on ``device``; float32, or float16 autocast with ``precision="fp16"``."""

    backend = "torch"

    def __init__(self, model, spec, device: str = "auto", precision: str = "fp32"):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        super().__init__(spec)
        if worker_threads():  # a -j worker's share of the cores
            torch.set_num_threads(worker_threads())
        self.device = pick_device(device)
        self.model = model.to(self.device).requires_grad_(False)  # coding only: no weight gradients
        self.precision = precision
        # batched tiles on a GPU: windows of up to two of the largest a file may ask for (~1.6 GB of activations)
        self.batch_area = 2 * MAX_WINDOW**2 if self.device.type == "cuda" else 0

    def _autocast(self):
        if self.precision == "fp16":
            return torch.autocast(self.device.type, dtype=torch.float16)
        return contextlib.nullcontext()

    def _t(self, t: float, n: int = 1) -> torch.Tensor:
        return torch.tensor([t], device=self.device).expand(n)

    def _in(self, a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a).to(self.device)

    @staticmethod
    def _out(x: torch.Tensor) -> np.ndarray:
        return x.float().cpu().numpy()

    @torch.inference_mode()
    def _analysis(self, x, t):
        with self._autocast():
            return self._out(self.model.analysis(self._in(x), self._t(t, len(x))))

    @torch.inference_mode()
    def _upper_levels(self, y, t):
        return [self._out(u) for u in self.model.upper_levels(self._in(y), self._t(t))]

    @torch.inference_mode()
    def _synthesis(self, hats, t):
        with self._autocast():
            return self._out(self.model.synthesis(*map(self._in, hats), self._t(t, len(hats[0]))))

    def padded(self, rgb: np.ndarray, rows: slice | None = None, cols: slice | None = None) -> torch.Tensor:
        """The padded image (or a window of it) as a (1,3,h,w) tensor on the device."""
        return self._in(self.window(rgb, rows, cols))[None]

    def refine(self, rgb: np.ndarray, t: float, y: np.ndarray, means: np.ndarray, indexes: np.ndarray,
               scale_table: np.ndarray, effort: int) -> np.ndarray:
        """y (C,H,W) refined at ``effort`` (refine.EFFORTS: a relaxation and a number of gradient steps) against
        the decoder's own output under the coding parameters the decoder derives (neuralcodec.pipeline.refine)."""
        from neuralcodec.pipeline.refine import EFFORTS, refine

        method, steps = EFFORTS[effort]

        tt = self._t(t)
        with torch.enable_grad():
            out = refine(lambda y_hat: self.model.synthesis(y_hat, tt), lambda rows, cols: self.padded(rgb, rows, cols),
                         self._in(y)[None], self._in(means)[None], self._in(indexes),
                         self._in(np.asarray(scale_table, np.float32)), float(self.model.lmbda(tt)), steps,
                         rgb.shape[:2], stride=self.levels[-1].downsampling, method=method)
        return self._out(out.detach()[0])
