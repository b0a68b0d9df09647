"""Image <-> latents <-> coded chunks: the model (torch) wired to the entropy coder (numpy).

This is the only module that holds both torch tensors and coded bytes; the model knows nothing of files and
the bitstream nothing of torch.
"""

from __future__ import annotations

import decimal
import math

import numpy as np
import torch

from neuralcodec import entropy
from neuralcodec.bitstream import FormatError, Header
from neuralcodec.models.integer import ACT_BITS, IntegerStack
from neuralcodec.weights_io import Weights, WeightsError, build_model

RATE_MAX = 65535
GAIN_BITS = 16
TILE = 48  # latent rows/columns of y per tile of the transforms (768 px): ~0.4 GB of activations at most
HALO = 4  # latent rows/columns each tile borrows from its neighbours: covers g_a's and g_s's receptive fields
Z_LIMIT = 1 << 9  # hyper-latent symbols are clamped to +-512 before the hyper-synthesis (docs/bitstream.md)


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for, but no CUDA device is available")
    return torch.device(device)


def gain_fixed(rate_gain: float, rate: int) -> int:
    """round(2^16 * exp(rate_gain * (rate/65535 - 1/2))), exactly: decimal arithmetic is correctly rounded.

    The model's gain(t) in fixed point; the same integer on every machine (libm's exp may differ by an ulp).
    """
    with decimal.localcontext(decimal.Context(prec=34)):
        x = decimal.Decimal(rate_gain) * (decimal.Decimal(rate) / RATE_MAX - decimal.Decimal("0.5"))
        return int((x.exp() * (1 << GAIN_BITS)).to_integral_value(decimal.ROUND_HALF_EVEN))


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
        self.z_medians = self.model.entropy_bottleneck.quantiles[:, 0, 1].detach().view(1, -1, 1, 1)
        try:
            self.h_s = IntegerStack.from_tensors(self.model.h_s, weights.tensors, "int.h_s")
        except ValueError as e:
            raise WeightsError(f"{weights.path}: {e}; re-export the weights") from None
        # y's table index: the number of scale-table boundaries below scale * gain, in fixed point
        unit = 2.0 ** (ACT_BITS + GAIN_BITS)
        self.scale_thresholds = np.array([math.floor(float(b) * unit) for b in weights.tensors["tables.scale_table"][:-1]],
                                         np.int64)
        self.z_offsets = np.round(self.z_medians.view(-1).cpu().double().numpy() * 2**ACT_BITS).astype(np.int64)
        self.rate_gain = float(weights.tensors["rate_gain"])

    @property
    def model_id(self) -> str:
        return self.weights.arch

    def latent_shapes(self, height: int, width: int) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
        ph, pw = -(-height // self.stride), -(-width // self.stride)
        return (self.model.M, ph * 4, pw * 4), (self.model.N, ph, pw)

    def _padded(self, rgb: np.ndarray, rows: slice | None = None, cols: slice | None = None) -> torch.Tensor:
        """HxWx3 uint8 -> 1x3xH'xW' float in [0, 1], edge-replicated up to a multiple of the stride; or only
        the window ``rows`` x ``cols`` of that padded image (so big images are never converted whole)."""
        h, w = rgb.shape[:2]
        ph, pw = -(-h // self.stride) * self.stride, -(-w // self.stride) * self.stride
        rows, cols = rows or slice(0, ph), cols or slice(0, pw)
        ri = np.minimum(np.arange(rows.start, rows.stop), h - 1)
        ci = np.minimum(np.arange(cols.start, cols.stop), w - 1)
        window = np.ascontiguousarray(rgb[ri[:, None], ci[None, :]])
        return torch.from_numpy(window).to(self.device).permute(2, 0, 1)[None].float().div_(255)

    @staticmethod
    def _tiles(h: int, w: int):
        """Latent tiles (rows, cols, halo-extended rows, halo-extended cols) covering an h x w latent."""
        for r0 in range(0, h, TILE):
            for c0 in range(0, w, TILE):
                r1, c1 = min(h, r0 + TILE), min(w, c0 + TILE)
                yield (slice(r0, r1), slice(c0, c1),
                       slice(max(0, r0 - HALO), min(h, r1 + HALO)), slice(max(0, c0 - HALO), min(w, c1 + HALO)))

    def analysis(self, rgb: np.ndarray, t: torch.Tensor) -> torch.Tensor:
        """g_a of the padded image, tile by tile with overlap: the same y as one pass, in bounded memory."""
        (m, yh, yw), _ = self.latent_shapes(*rgb.shape[:2])
        up = self.stride // 4  # pixels per latent element of y
        y = torch.empty((1, m, yh, yw), device=self.device)
        for rows, cols, hr, hc in self._tiles(yh, yw):
            x = self._padded(rgb, slice(hr.start * up, hr.stop * up), slice(hc.start * up, hc.stop * up))
            yt = self.model.analysis(x, t)
            y[:, :, rows, cols] = yt[:, :, rows.start - hr.start:rows.stop - hr.start,
                                     cols.start - hc.start:cols.stop - hc.start]
        return y

    def synthesis(self, y_hat: torch.Tensor, t: torch.Tensor, height: int, width: int) -> np.ndarray:
        """g_s tile by tile with overlap, straight into an HxWx3 uint8 image (cropped to height x width)."""
        up = self.stride // 4
        out = np.empty((height, width, 3), np.uint8)
        for rows, cols, hr, hc in self._tiles(*y_hat.shape[2:]):
            x = self.model.synthesis(y_hat[:, :, hr, hc], t)
            x = x[0, :, (rows.start - hr.start) * up:(rows.stop - hr.start) * up,
                  (cols.start - hc.start) * up:(cols.stop - hc.start) * up]
            r0, c0 = rows.start * up, cols.start * up
            r1, c1 = min(height, rows.stop * up), min(width, cols.stop * up)
            if r1 > r0 and c1 > c0:
                x = x[:, : r1 - r0, : c1 - c0].clamp_(0, 1).mul_(255).round_().to(torch.uint8)
                out[r0:r1, c0:c1] = x.permute(1, 2, 0).cpu().numpy()
        return out

    def _t(self, rate: int) -> torch.Tensor:
        return torch.tensor([rate / RATE_MAX], device=self.device)

    def y_parameter_bands(self, z_sym: np.ndarray, rate: int):
        """Yield (first row, end row, table indexes uint8 (C,rows,W), means float32 (C,rows,W)) of y, band by
        band, bit-exact everywhere.

        The hyper-synthesis runs as an integer network on the CPU (models/integer.py); only integers and
        exactly rounded dyadic fractions leave it, so encoder and decoder agree on any device.
        """
        z = np.clip(z_sym.astype(np.int64), -Z_LIMIT, Z_LIMIT) << ACT_BITS
        z += self.z_offsets[:, None, None]
        g = gain_fixed(self.rate_gain, rate)
        m = self.model.M
        for r0, r1, out in self.h_s.bands(z):
            scales, means = out[:m], out[m:]
            idx = np.searchsorted(self.scale_thresholds, scales * g, side="left").astype(np.uint8)
            mu = ((means * g).astype(np.float64) * 2.0 ** -(ACT_BITS + GAIN_BITS)).astype(np.float32)  # exact: < 2^53
            yield r0, r1, idx, mu

    def y_parameters(self, z_sym: np.ndarray, rate: int) -> tuple[np.ndarray, torch.Tensor]:
        """Table indexes (uint8 C,H,W) and means (float32 1,C,H,W on the device) of y, whole."""
        up = self.h_s.upsampling()
        idx = np.empty((self.model.M, z_sym.shape[1] * up, z_sym.shape[2] * up), np.uint8)
        mu = np.empty(idx.shape, np.float32)
        for r0, r1, idx_band, mu_band in self.y_parameter_bands(z_sym, rate):
            idx[:, r0:r1], mu[:, r0:r1] = idx_band, mu_band
        return idx, torch.from_numpy(mu).to(self.device)[None]

    @torch.inference_mode()
    def encode(self, rgb: np.ndarray, rate: int) -> tuple[dict[bytes, bytes], dict]:
        """Code an HxWx3 uint8 image; returns the chunks and the latent shapes."""
        t = self._t(rate)
        y_shape, z_shape = self.latent_shapes(*rgb.shape[:2])
        y = self.analysis(rgb, t)
        z = self.model.hyper_analysis(y, t)
        z_np = torch.round(z - self.z_medians)[0].cpu().numpy().astype(np.int64)
        idx = np.empty(y_shape, np.uint8)
        for r0, r1, idx_band, mu_band in self.y_parameter_bands(z_np, rate):  # y becomes round(y - mu) in place
            idx[:, r0:r1] = idx_band
            band = y[:, :, r0:r1]
            band.sub_(torch.from_numpy(mu_band).to(self.device)).round_()
        if y.numel() and max(-y.min().item(), y.max().item()) >= 1 << 31:
            raise ValueError("latent value out of int32 range")
        y_sym = y[0].cpu().numpy().astype(np.int32)
        del y
        z_idx = np.broadcast_to(np.arange(z_np.shape[0])[:, None, None], z_np.shape)
        chunks = {b"ZHYP": entropy.encode(z_np, z_idx, self.z_tables),
                  b"YLAT": entropy.encode(y_sym, idx, self.y_tables)}
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
        idx, means = self.y_parameters(z_sym, header.rate)
        y_sym = entropy.decode(chunks[b"YLAT"], idx, self.y_tables)
        y_hat = means.add_(torch.from_numpy(y_sym).to(self.device)[None])  # in place: y_sym + means
        return y_hat, y_sym

    @torch.inference_mode()
    def decode(self, header: Header, chunks: dict[bytes, bytes]) -> np.ndarray:
        y_hat, _ = self.decode_latents(header, chunks)
        return self.synthesis(y_hat, self._t(header.rate), header.height, header.width)

    @torch.inference_mode()
    def reconstruct(self, rgb: np.ndarray, rate: int) -> np.ndarray:
        """The model's own forward output (hard quantization, no bitstream): what decode must reproduce."""
        h, w = rgb.shape[:2]
        x = self._padded(rgb)
        t = self._t(rate)
        y = self.model.analysis(x, t)
        z_sym = torch.round(self.model.hyper_analysis(y, t) - self.z_medians)[0].cpu().numpy().astype(np.int64)
        _, means = self.y_parameters(z_sym, rate)
        x_hat = self.model.synthesis(torch.round(y - means) + means, t)  # one pass, untiled: the reference
        return x_hat[0, :, :h, :w].clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
