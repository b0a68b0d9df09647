"""Image <-> latents <-> coded chunks: the model (torch) wired to the entropy coder (numpy).

This is the only module that holds both torch tensors and coded bytes; the model knows nothing of files and
the bitstream nothing of torch.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from neuralcodec import entropy
from neuralcodec.bitstream import FormatError, Header
from neuralcodec.weights_io import Weights, build_model

RATE_MAX = 65535


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for, but no CUDA device is available")
    return torch.device(device)


def rate_of_quality(quality: float) -> int:
    """Quality 0..100 (continuous) -> the stored u16 rate selector; monotonic."""
    if not 0 <= quality <= 100:
        raise ValueError(f"quality must be within 0..100, got {quality}")
    return int(round(quality / 100 * RATE_MAX))


class Codec:
    """One loaded model on one device, coding RGB uint8 arrays to chunks and back."""

    def __init__(self, weights: Weights, device: str = "auto"):
        self.weights = weights
        self.device = pick_device(device)
        self.model = build_model(weights).to(self.device)
        self.stride = self.model.stride
        self.z_tables = weights.tables("z")
        self.y_tables = weights.tables("y")
        self.scale_bounds = torch.from_numpy(weights.tensors["tables.scale_table"][:-1].astype(np.float32)).to(self.device)
        self.z_medians = self.model.entropy_bottleneck.quantiles[:, 0, 1].detach().view(1, -1, 1, 1)

    @property
    def model_id(self) -> str:
        return self.weights.arch

    def latent_shapes(self, height: int, width: int) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
        ph, pw = -(-height // self.stride), -(-width // self.stride)
        return (self.model.M, ph * 4, pw * 4), (self.model.N, ph, pw)

    def _padded(self, rgb: np.ndarray) -> torch.Tensor:
        """HxWx3 uint8 -> 1x3xH'xW' float in [0, 1], edge-replicated up to a multiple of the stride."""
        h, w = rgb.shape[:2]
        x = torch.from_numpy(np.require(rgb, np.uint8, ['C', 'W'])).to(self.device).permute(2, 0, 1)[None].float().div_(255)
        ph, pw = -(-h // self.stride) * self.stride, -(-w // self.stride) * self.stride
        return x if (ph, pw) == (h, w) else F.pad(x, (0, pw - w, 0, ph - h), mode="replicate")

    def _t(self, rate: int) -> torch.Tensor:
        return torch.tensor([rate / RATE_MAX], device=self.device)

    def _y_indexes(self, z_hat: torch.Tensor, t: torch.Tensor):
        scales, means = self.model.hyper_synthesis(z_hat, t)
        idx = torch.bucketize(scales, self.scale_bounds)
        return idx[0].cpu().numpy(), means

    @torch.inference_mode()
    def encode(self, rgb: np.ndarray, rate: int) -> tuple[dict[bytes, bytes], dict]:
        """Code an HxWx3 uint8 image; returns the chunks and the latent shapes."""
        x = self._padded(rgb)
        t = self._t(rate)
        y = self.model.analysis(x, t)
        z = self.model.hyper_analysis(y, t)
        z_sym = torch.round(z - self.z_medians)
        z_hat = z_sym + self.z_medians
        idx, means = self._y_indexes(z_hat, t)
        y_sym = torch.round(y - means)
        z_np = z_sym[0].cpu().numpy().astype(np.int64)
        z_idx = np.broadcast_to(np.arange(z_np.shape[0])[:, None, None], z_np.shape)
        chunks = {b"ZHYP": entropy.encode(z_np, z_idx, self.z_tables),
                  b"YLAT": entropy.encode(y_sym[0].cpu().numpy().astype(np.int64), idx, self.y_tables)}
        y_shape, z_shape = self.latent_shapes(*rgb.shape[:2])
        return chunks, {"y_shape": y_shape, "z_shape": z_shape}

    def check(self, header: Header) -> None:
        if header.model_id != self.model_id:
            raise FormatError(f"file was made by model {header.model_id!r}; loaded model is {self.model_id!r}")
        if header.weights_digest != self.weights.digest:
            raise FormatError(f"file was made with weights {header.weights_digest.hex()[:16]}; loaded weights are "
                              f"{self.weights.digest.hex()[:16]} ({self.weights.path.name})")
        y_shape, z_shape = self.latent_shapes(header.height, header.width)
        if tuple(header.y_shape) != y_shape or tuple(header.z_shape) != z_shape:
            raise FormatError(f"latent shapes {header.y_shape}/{header.z_shape} do not fit a "
                              f"{header.width}x{header.height} image")

    @torch.inference_mode()
    def decode_latents(self, header: Header, chunks: dict[bytes, bytes]) -> tuple[torch.Tensor, np.ndarray]:
        """Entropy-decode z then y; returns y_hat and the integer symbols of y (for tests and tooling)."""
        self.check(header)
        z_idx = np.broadcast_to(np.arange(header.z_shape[0])[:, None, None], header.z_shape)
        z_sym = entropy.decode(chunks[b"ZHYP"], z_idx, self.z_tables)
        z_hat = torch.from_numpy(z_sym).to(self.device)[None].float() + self.z_medians
        idx, means = self._y_indexes(z_hat, self._t(header.rate))
        y_sym = entropy.decode(chunks[b"YLAT"], idx, self.y_tables)
        y_hat = torch.from_numpy(y_sym).to(self.device)[None].float() + means
        return y_hat, y_sym

    @torch.inference_mode()
    def decode(self, header: Header, chunks: dict[bytes, bytes]) -> np.ndarray:
        y_hat, _ = self.decode_latents(header, chunks)
        x_hat = self.model.synthesis(y_hat, self._t(header.rate))
        x_hat = x_hat[0, :, : header.height, : header.width].clamp_(0, 1).mul_(255).round_()
        return x_hat.to(torch.uint8).permute(1, 2, 0).cpu().numpy()

    @torch.inference_mode()
    def reconstruct(self, rgb: np.ndarray, rate: int) -> np.ndarray:
        """The model's own forward output (hard quantization, no bitstream): what decode must reproduce."""
        h, w = rgb.shape[:2]
        x = self._padded(rgb)
        t = self._t(rate)
        y = self.model.analysis(x, t)
        z_hat = torch.round(self.model.hyper_analysis(y, t) - self.z_medians) + self.z_medians
        _, means = self.model.hyper_synthesis(z_hat, t)
        x_hat = self.model.synthesis(torch.round(y - means) + means, t)
        return x_hat[0, :, :h, :w].clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
