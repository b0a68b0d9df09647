"""The flagship: a mean-scale hyperprior made variable-rate by modulation.

Analysis g_a and synthesis g_s are the mean-scale hyperprior transforms of Minnen et al. (2018) built from
compressai's GDN layers; a small modulation network (Yang et al., "Variable rate deep image compression with
modulated autoencoder", 2020) maps the rate selector lambda to positive per-channel scales applied after
every stage of g_a (modulation) and before every stage of g_s (demodulation). One set of weights covers
the whole lambda range. The model knows nothing of files or entropy coders: it maps tensors to tensors.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from neuralcodec.models import Level, layers
from neuralcodec.models.base import CodecModel
from neuralcodec.models.layers import compressai as _compressai, conv, deconv

SCALE_BOUND = 0.11


class Modulation(nn.Module):
    """Maps the rate t (shape B) to positive scales (B, C, 1, 1) per stage."""

    def __init__(self, channels: list[int], hidden: int = 64):
        super().__init__()
        self.channels = channels
        self.net = nn.Sequential(nn.Linear(1, hidden), nn.ReLU(), nn.Linear(hidden, sum(channels)))
        nn.init.zeros_(self.net[2].weight)
        nn.init.zeros_(self.net[2].bias)

    def forward(self, t: torch.Tensor) -> list[torch.Tensor]:
        s = torch.exp(self.net(t.reshape(-1, 1)))
        return [v[:, :, None, None] for v in torch.split(s, self.channels, dim=1)]


class ModulatedHyperprior(CodecModel):
    """Mean-scale hyperprior codec whose transforms are modulated by lambda.

    ``t`` everywhere is the normalized rate selector: lambda = lmbda_min * (lmbda_max/lmbda_min) ** t, over
    [t_min, 1]: ``t_min`` < 0 extends the range below lmbda_min (weights trained before it existed have 0).
    Besides the per-channel modulation, y is coded at a quantization step 1/gain(t) with
    gain(t) = exp(rate_gain * (t - 1/2)); the hyperprior works on the unscaled latent, its means and scales
    are scaled by the same gain. ``rate_gain`` starts at the high-rate optimum 0.5 * ln(lmbda_max/lmbda_min)
    (step proportional to lambda^-1/2) and is learned.
    """

    stride = 64  # total down-sampling of the hyper-latent: inputs are padded to a multiple of this
    # g_a's four 5x5 stride-2 convolutions reach 2 + 4 + 8 + 16 = 30 px (< 2 latents) past a latent's cell, g_s's
    # per-phase 3x3 convolutions 1 + 1/2 + 1/4 + 1/8 latents: with a halo of 2, y is the one-pass y (measured;
    # tests/test_tiling.py: the same latents as a halo of 4). Files with it are format version 7 (0.7 asks for 4).
    tile_halo = 2
    variable_rate = True
    synthesis_modules = ("g_s.", "mod_s.")  # what a decoder-only fine-tune may change
    analysis_modules = ("g_a.", "h_a.", "mod_a.", "top.")  # what only an encoder needs (a decoder-only archive
    # drops them)
    training_only = ("entropy_bottleneck.", "gaussian_conditional.")  # the entropy models' training state

    def __init__(self, N: int = 128, M: int = 192, lmbda_min: float = 0.0015, lmbda_max: float = 0.2,
                 t_min: float = 0.0, inference: bool = False, *, top_from: float | None = None):
        """``inference=True`` builds the coding model without compressai: the same transforms and parameter
        names (models/layers.py), and of the entropy models only the hyper-latent's medians. ``top_from``: rates
        t >= top_from are encoded by a second analysis (``top``: its own g_a, h_a and mod_a) trained for them
        alone; the decoder is one for all rates and never knows which analysis made y."""
        super().__init__()
        self.N, self.M = N, M
        self.lmbda_min, self.lmbda_max = lmbda_min, lmbda_max
        if not (isinstance(t_min, (int, float)) and -1.0 <= t_min <= 0.0):
            raise ValueError(f"t_min must be within [-1, 0], got {t_min}")
        self.t_min = t_min
        if top_from is not None and not (isinstance(top_from, (int, float)) and t_min < top_from < 1.0):
            raise ValueError(f"top_from must be within (t_min, 1), got {top_from}")
        self.top_from = None if top_from is None else float(top_from)
        GDN = layers.GDN if inference else layers.training_gdn()  # noqa: N806
        self.g_a = self._analysis_module("g_a", GDN)
        self.g_s = nn.ModuleList([
            deconv(M, N), GDN(N, inverse=True), deconv(N, N), GDN(N, inverse=True),
            deconv(N, N), GDN(N, inverse=True), deconv(N, 3),
        ])
        self.h_a = self._analysis_module("h_a", GDN)
        self.h_s = nn.Sequential(
            deconv(N, M), nn.LeakyReLU(inplace=True), deconv(M, M * 3 // 2), nn.LeakyReLU(inplace=True),
            conv(M * 3 // 2, M * 2, 3, 1),
        )
        self.mod_a = self._analysis_module("mod_a", GDN)
        self.mod_s = Modulation([M, N, N, N])
        if inference:
            self.entropy_bottleneck = layers.Quantiles(N)
        else:
            self.entropy_bottleneck = _compressai().entropy_models.EntropyBottleneck(N)
            self.gaussian_conditional = _compressai().entropy_models.GaussianConditional(None, scale_bound=SCALE_BOUND)
        self.rate_gain = nn.Parameter(torch.tensor(0.5 * math.log(lmbda_max / lmbda_min)))
        if self.top_from is not None:  # made last: the other modules' initialization stays that of a model without it
            self.top = nn.ModuleDict({k: self._analysis_module(k, GDN) for k in ("g_a", "h_a", "mod_a")})
        self.inference = inference
        self.interior_dtype: torch.dtype | None = None  # training only: see :meth:`_layer`
        self.wake: tuple[int, float] | None = None  # training only: (k, w): the rate of y's channels from k on
        # (grown by :meth:`grown_state`) enters the loss with weight w in [0, 1] (see :meth:`forward`)
        self.levels = (Level("z", "factorized", "entropy_bottleneck", N, 64), Level("y", "gaussian", "h_s", M, 16))

    def _analysis_module(self, name: str, GDN) -> nn.Module:  # noqa: N803
        """A fresh g_a, h_a or mod_a: what only an encoder needs."""
        N, M = self.N, self.M  # noqa: N806
        if name == "g_a":
            return nn.ModuleList([conv(3, N), GDN(N), conv(N, N), GDN(N), conv(N, N), GDN(N), conv(N, M)])
        if name == "h_a":
            return nn.Sequential(
                conv(M, N, 3, 1), nn.LeakyReLU(inplace=True), conv(N, N), nn.LeakyReLU(inplace=True), conv(N, N),
            )
        return Modulation([N, N, N, M])

    # -- rate selector ---------------------------------------------------------------------------------
    def lmbda(self, t: torch.Tensor) -> torch.Tensor:
        return self.lmbda_min * (self.lmbda_max / self.lmbda_min) ** t

    def gain(self, t: torch.Tensor) -> torch.Tensor:
        """Inverse quantization step of y at rate ``t``, shape (B, 1, 1, 1)."""
        return torch.exp(self.rate_gain * (t.reshape(-1, 1, 1, 1) - 0.5))

    # -- the four transforms ---------------------------------------------------------------------------
    def _layer(self, seq: nn.ModuleList, i: int, x: torch.Tensor) -> torch.Tensor:
        """Layer ``i`` of transform ``seq`` applied to ``x``. While training with ``interior_dtype`` set (a
        recipe's ``precision``), every layer but the first and the last runs under autocast in that dtype; the
        first and last run in float32, so x, y, x_hat and all the entropy models see stay float32. Inference and
        export never autocast."""
        if self.interior_dtype is None or not self.training:
            return seq[i](x)
        if not 0 < i < len(seq) - 1:
            return seq[i](x.float())  # an interior layer's output may be bfloat16
        with torch.autocast(self.rate_gain.device.type, dtype=self.interior_dtype):
            return seq[i](x)

    def analysis(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self._by_band(t, x, self._analysis)

    def _analysis(self, enc: dict, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        g_a, scales = enc["g_a"], iter(enc["mod_a"](t))
        for i, layer in enumerate(g_a):
            x = self._layer(g_a, i, x)
            if not isinstance(layer, nn.Conv2d) or layer is g_a[-1]:  # after each GDN and the last conv
                x = x * next(scales)
        return x * self.gain(t)

    # -- the analysis by rate band ---------------------------------------------------------------------
    def band(self, t: torch.Tensor) -> torch.Tensor:
        """Which analysis encodes each sample of ``t`` (shape B): 1 (the top one) where t >= top_from, else 0.
        Compared in float32, as the ONNX backend compares (``ModelSpec.band``)."""
        if self.top_from is None:
            return torch.zeros(t.numel(), dtype=torch.long, device=t.device)
        return (t.reshape(-1).float() >= torch.tensor(self.top_from, dtype=torch.float32)).long()

    def _encoder(self, band: int) -> dict:
        if band:
            return {k: self.top[k] for k in ("g_a", "h_a", "mod_a")}
        return {"g_a": self.g_a, "h_a": self.h_a, "mod_a": self.mod_a}

    def _by_band(self, t: torch.Tensor, x: torch.Tensor, fn) -> torch.Tensor:
        """``fn(encoder, x, t)`` with each sample's band's encoder, the outputs in the samples' order."""
        if self.top_from is None:
            return fn(self._encoder(0), x, t)
        t = t.reshape(-1)
        bands = self.band(t)
        if not self.training and (t.numel() == 1 or bool((bands == bands[0]).all())):
            return fn(self._encoder(int(bands[0])), x, t)
        # each part through its own analysis; in training both run, an empty part too, so that every parameter gets
        # a gradient each step (zero for an unused analysis), as DistributedDataParallel expects
        parts = [torch.nonzero(bands == b).flatten() for b in (0, 1)]
        out = torch.cat([fn(self._encoder(b), x[i], t[i]) for b, i in enumerate(parts)])
        return out[torch.argsort(torch.cat(parts))]

    def band_view(self, band: int) -> "ModulatedHyperprior":
        """This model with band ``band``'s analysis as its only one (sharing every module): what encodes the
        rates of that band, as one graph for an exporter."""
        view = copy.copy(self)
        view._modules = {k: m for k, m in self._modules.items() if k != "top"}
        view.top_from = None
        view._modules.update(self._encoder(band))
        return view

    def init_top(self) -> None:
        """The top analysis set to the main one's values (the same encoder at every rate: files unchanged)."""
        with torch.no_grad():
            for k, m in self._encoder(1).items():
                m.load_state_dict(getattr(self, k).state_dict())

    def synthesis(self, y_hat: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        scales = iter(self.mod_s(t))
        x = y_hat / self.gain(t)
        for i, layer in enumerate(self.g_s):
            if isinstance(layer, nn.ConvTranspose2d):
                x = x * next(scales)
            x = self._layer(self.g_s, i, x)
        return x

    def hyper_analysis(self, y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self._by_band(t, y, lambda enc, y, t: enc["h_a"](y / self.gain(t)))

    def upper_levels(self, y: torch.Tensor, t: torch.Tensor) -> list[torch.Tensor]:
        return [self.hyper_analysis(y, t)]

    def hyper_synthesis(self, z_hat: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (scales, means) of the conditional Gaussian of y at rate ``t``; scales are lower-bounded."""
        scales, means = self.h_s(z_hat).chunk(2, 1)
        g = self.gain(t)
        scales = scales * g
        if self.inference or not torch.is_grad_enabled():
            return scales.clamp_min(SCALE_BOUND), means * g
        # training: the same value, but a gradient that would raise a bounded scale passes (compressai's
        # LowerBound), so a scale that starts at the bound (e.g. of a grown channel) can leave it
        bound = torch.tensor(SCALE_BOUND, dtype=scales.dtype, device=scales.device)
        return _compressai().ops.bound_ops.LowerBoundFunction.apply(scales, bound), means * g

    # -- training --------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, t: torch.Tensor) -> dict:
        """Training pass: noisy likelihoods for the rate, straight-through rounding for the decoder input."""
        y = self.analysis(x, t)
        z = self.hyper_analysis(y, t)
        z_hat, z_likelihoods = self.entropy_bottleneck(z)
        scales, means = self.hyper_synthesis(z_hat, t)
        _, y_likelihoods = self.gaussian_conditional(y, scales, means=means)
        y_hat = _compressai().ops.quantize_ste(y - means) + means
        if self.wake is not None:  # wake grown channels: their rate weighs w (likelihood ** w: log-rate * w)
            k, w = self.wake
            y_likelihoods = torch.cat([y_likelihoods[:, :k], y_likelihoods[:, k:] ** w], 1)
        x_hat = self.synthesis(y_hat, t)
        return {"x_hat": x_hat, "likelihoods": {"y": y_likelihoods, "z": z_likelihoods},
                "y_symbols": (y_hat - means).detach()}  # the coded integers round(y - mu), for training logs

    def grown_state(self, state: dict[str, torch.Tensor], shrink: float = 0.03) -> dict[str, torch.Tensor]:
        """This model's parameters, grown function-preservingly from ``state``: a model of the same N and rate
        range with a narrower y (M_old < self.M). The old channels keep their values; of the new ones:

        - the analysis' new outputs keep this model's random initialization times ``shrink`` (small: they
          quantize to 0, so coded files are unchanged);
        - the synthesis reads them through its random initialization (any weights read a 0 as 0, so this
          changes nothing either, and straight-through rounding passes them a gradient that says what they
          should carry); the hyper-analysis reads them through zero weights;
        - the hyper-synthesis grows its hidden layers with units read through zero weights, and gets new
          mean and scale outputs with zero weights and bias (mean 0, scale at the lower bound);
        - the modulation networks get zero rows (scale exp(0) = 1).

        The trap avoided: new channels that round to zero, read through zero weights, get no gradient. Rate
        pulls them back to zero hard (a scale at the bound), so training ramps their rate in (``wake``).
        """
        own = {k: v.detach().clone() for k, v in self.state_dict().items()}
        m_old, m = state["g_a.6.bias"].shape[0], self.M
        if m_old > m or state["g_a.0.bias"].shape[0] != self.N:
            raise ValueError(f"cannot grow y from {m_old} to {m} channels with N {state['g_a.0.bias'].shape[0]} != {self.N}")
        h_old = m_old * 3 // 2
        out = dict(own)

        def put(name, value, zero_rest=True, shrink_rest=None):
            new = torch.zeros_like(own[name]) if zero_rest else own[name].clone()
            if shrink_rest is not None:
                new = new * shrink_rest
            new[tuple(slice(0, n) for n in value.shape)] = value
            out[name] = new

        for name, value in state.items():
            if name not in own:
                continue
            if own[name].shape == value.shape:
                out[name] = value.clone()
        # analysis output: old channels first, new ones small
        put("g_a.6.weight", state["g_a.6.weight"], zero_rest=False, shrink_rest=shrink)
        put("g_a.6.bias", state["g_a.6.bias"], zero_rest=False, shrink_rest=shrink)
        # readers of y: the synthesis through random weights, the hyper-analysis through zero weights
        put("g_s.0.weight", state["g_s.0.weight"], zero_rest=False)  # ConvTranspose2d: (in, out, k, k)
        put("h_a.0.weight", state["h_a.0.weight"])  # Conv2d: (out, in, k, k)
        # hyper-synthesis: new hidden units keep their random inputs, read through zero weights
        put("h_s.0.weight", state["h_s.0.weight"], zero_rest=False)
        put("h_s.0.bias", state["h_s.0.bias"], zero_rest=False)
        put("h_s.2.weight", state["h_s.2.weight"], zero_rest=False)
        out["h_s.2.weight"][m_old:] = 0  # rows: inputs from the new units of layer 0
        put("h_s.2.bias", state["h_s.2.bias"], zero_rest=False)
        w4, b4 = state["h_s.4.weight"], state["h_s.4.bias"]  # (2 M_old, H_old, 3, 3): scales then means
        new_w = torch.zeros_like(own["h_s.4.weight"])
        new_b = torch.zeros_like(own["h_s.4.bias"])
        new_w[:m_old, :h_old], new_w[m:m + m_old, :h_old] = w4[:m_old], w4[m_old:]
        new_b[:m_old], new_b[m:m + m_old] = b4[:m_old], b4[m_old:]
        out["h_s.4.weight"], out["h_s.4.bias"] = new_w, new_b
        # modulation: the y block is last in mod_a, first in mod_s; new rows zero (scale 1)
        n3 = 3 * self.N
        for name, lo in (("mod_a.net.2", n3), ("mod_s.net.2", 0)):
            w, b = state[name + ".weight"], state[name + ".bias"]
            new_w, new_b = torch.zeros_like(own[name + ".weight"]), torch.zeros_like(own[name + ".bias"])
            old_y = slice(lo, lo + m_old)
            rest_old = [i for i in range(w.shape[0]) if not (lo <= i < lo + m_old)]
            rest_new = [i for i in range(new_w.shape[0]) if not (lo <= i < lo + m)]
            new_w[lo:lo + m_old], new_b[lo:lo + m_old] = w[old_y], b[old_y]
            new_w[rest_new], new_b[rest_new] = w[rest_old], b[rest_old]
            out[name + ".weight"], out[name + ".bias"] = new_w, new_b
        return out

    def grown_entries(self, m_old: int) -> dict[str, torch.Tensor]:
        """Masks (True = grown) of the entries :meth:`grown_state` does not copy from a model with y of
        ``m_old`` channels, for the tensors that have any; the hyper-analysis is left out (its grown inputs
        stay 0 while the grown channels wake, so the hyper-latent, and the old channels' rate, are unchanged)."""
        narrow = type(self)(**{**self.config(), "M": m_old})
        copies = [self.grown_state({k: torch.full_like(v, fill) for k, v in narrow.state_dict().items()})
                  for fill in (0.0, 1.0)]
        return {k: copies[0][k] == copies[1][k] for k, _ in self.named_parameters()
                if not k.startswith("h_a.") and k in copies[0]
                and bool((copies[0][k] == copies[1][k]).any()) and not bool((copies[0][k] == copies[1][k]).all())}

    def rate_gain_value(self) -> float:
        return float(self.rate_gain.detach())

    def fast_parameters(self) -> list[str]:
        """Names of the few rate-control parameters that train at a higher learning rate."""
        return [n for n, _ in self.named_parameters() if n.startswith(("mod_a.", "mod_s.", "top.mod_a.", "rate_gain"))]

    def aux_loss(self) -> torch.Tensor:
        return self.entropy_bottleneck.loss()

    def config(self) -> dict:
        cfg = {"N": self.N, "M": self.M, "lmbda_min": self.lmbda_min, "lmbda_max": self.lmbda_max}
        if self.t_min:
            cfg["t_min"] = self.t_min
        if self.top_from is not None:
            cfg["top_from"] = self.top_from
        return cfg
