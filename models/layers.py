"""Inference twins of the compressai layers the flagship trains with, so coding never imports compressai.

Importing compressai costs seconds and ~0.3 GB (it pulls torchvision and torch_geometric); a one-image
`neuralcodec compress` needs none of it. These modules hold the same parameters under the same names as
compressai's and compute the same values (bit for bit on the CPU: tests/test_layers.py); training keeps using
compressai's own layers, whose reparametrization gradients matter there.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn

REPARAM_OFFSET = 2.0**-18  # compressai.ops.parametrizers.NonNegativeParametrizer's default
BETA_MIN = 1e-6  # compressai.layers.GDN's default


def _non_negative(x: torch.Tensor, minimum: float) -> torch.Tensor:
    """compressai's NonNegativeParametrizer.forward: lower_bound(x)^2 - pedestal, in float32 like it."""
    pedestal = torch.tensor([REPARAM_OFFSET**2], dtype=torch.float32, device=x.device)
    bound = torch.tensor([(minimum + REPARAM_OFFSET**2) ** 0.5], dtype=torch.float32, device=x.device)
    return torch.max(x, bound) ** 2 - pedestal


class GDN(nn.Module):
    """Generalized divisive normalization (Ballé et al. 2016) with compressai's stored parameters ``beta`` and
    ``gamma``; ``inverse`` gives IGDN. Evaluated with fewer temporaries than compressai's (big tiles)."""

    def __init__(self, channels: int, inverse: bool = False):
        super().__init__()
        self.inverse = inverse
        self.beta = nn.Parameter(torch.ones(channels))
        self.gamma = nn.Parameter(torch.eye(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        beta = _non_negative(self.beta, BETA_MIN)
        gamma = _non_negative(self.gamma, 0.0).reshape(c, c, 1, 1)
        norm = F.conv2d(x * x, gamma, beta)
        if torch.is_grad_enabled() and x.requires_grad:  # differentiable (encoder-side refinement)
            return (norm.sqrt() if self.inverse else norm.rsqrt()) * x
        norm = norm.sqrt_() if self.inverse else norm.rsqrt_()
        return norm.mul_(x)


class Quantiles(nn.Module):
    """What coding needs of compressai's EntropyBottleneck: its learned ``quantiles`` (the medians of z).
    Its probability tables ship with the weights as integer counts."""

    def __init__(self, channels: int):
        super().__init__()
        self.quantiles = nn.Parameter(torch.zeros(channels, 1, 3))


def compressai():
    """compressai, imported only to train (seconds and ~0.3 GB: coding uses the twins above instead)."""
    # compressai calls the deprecated torch.jit.script at import; the warning means nothing to our users
    warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)
    import compressai.entropy_models
    import compressai.layers
    import compressai.ops

    return compressai


_TRAINING_GDN = None


def training_gdn() -> type:
    """compressai's GDN (its parameters, names and reparametrization gradients) with a forward laid out for
    channels_last: the 1x1 normalization is one matrix product over channels on the NHWC view, and every
    elementwise op runs on contiguous memory. compressai's own forward goes through torch's slow im2col 1x1
    convolution and mixes memory formats (copies); bench/step_profile.py measures the difference."""
    global _TRAINING_GDN
    if _TRAINING_GDN is None:
        base = compressai().layers.GDN

        class TrainingGDN(base):
            def forward(self, x: torch.Tensor) -> torch.Tensor:
                beta = self.beta_reparam(self.beta)
                gamma = self.gamma_reparam(self.gamma)
                xp = x.permute(0, 2, 3, 1)  # NHWC: a contiguous view of a channels_last tensor
                norm = F.linear(xp * xp, gamma, beta)
                norm = norm.sqrt() if self.inverse else norm.rsqrt()
                return (xp * norm).permute(0, 3, 1, 2)

        _TRAINING_GDN = TrainingGDN
    return _TRAINING_GDN


def gdn(channels: int, inverse: bool = False, inference: bool = False) -> nn.Module:
    """GDN (or IGDN): compressai's to train (with a faster forward), the twin to code."""
    return (GDN if inference else training_gdn())(channels, inverse=inverse)


def conv(cin: int, cout: int, k: int = 5, stride: int = 2) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2)


def deconv(cin: int, cout: int, k: int = 5, stride: int = 2) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(cin, cout, k, stride=stride, output_padding=stride - 1, padding=k // 2)


SPLIT_CHANNELS = 16  # output channels from which SubPixelConv runs one convolution per phase (below)


def _padded_conv(x, pads, w, b):
    """A stride-1 convolution with its own zero pads (top, left, bottom, right)."""
    top, left, bottom, right = pads
    return F.conv2d(F.pad(x, (left, right, top, bottom)), w, b)


def _conv_node(g, x, pads, w, b):
    """``_padded_conv`` as one ONNX Conv node with ``pads`` (no Pad node and its copy of the input)."""
    kh, kw = w.type().sizes()[2:]
    return g.op("Conv", x, w, b, kernel_shape_i=[kh, kw], pads_i=list(pads), strides_i=[1, 1], dilations_i=[1, 1],
                group_i=1)


class _PaddedConv(torch.autograd.Function):
    """``_padded_conv``, exported as ``_conv_node``."""

    @staticmethod
    def forward(ctx, x, pads, w, b):
        return _padded_conv(x, pads, w, b)

    @staticmethod
    def symbolic(g, x, pads, w, b):
        return _conv_node(g, x, pads, w, b)


class Phases(list):
    """The output phases of a SubPixelConv whose pixel shuffle is deferred (``defer_shuffle``): tensors of its
    input's size, row phase major, and ``scale``, the shuffle they stand for. What lies between that layer and
    the next size-multiplying one is pointwise, so it runs on each phase (``PerPhase``; a product with a
    per-channel scale, the flagship's modulation, too), and the next layer reads the phases directly
    (``SubPixelConv.read_phases``): the interleaving of the biggest activation never happens."""

    def __init__(self, tensors, scale: int):
        super().__init__(tensors)
        self.scale = scale

    def __mul__(self, other):
        if isinstance(other, Phases):
            return NotImplemented
        return Phases([p * other for p in self], self.scale)

    __rmul__ = __mul__


class PerPhase(nn.Module):
    """A pointwise module run on each of a ``Phases`` (or on a tensor, as it is)."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x):
        if isinstance(x, Phases):
            return Phases([self.module(p) for p in x], x.scale)
        return self.module(x)


class _PhaseShuffle(torch.autograd.Function):
    """One convolution per output phase, each with only its own taps, then the phases interleaved. Exported as
    what it is: ONNX Conv nodes with their own (asymmetric) pads, a Concat and DepthToSpace in DCR order."""

    @staticmethod
    def forward(ctx, x, scale, pads, *wb):
        outs = [_padded_conv(x, pad, w, b) for pad, w, b in zip(pads, wb[0::2], wb[1::2])]
        n, c, h, w = outs[0].shape
        y = torch.stack(outs, 1).view(n, scale, scale, c, h, w)  # phase (row, column), channel
        return y.permute(0, 3, 4, 1, 5, 2).reshape(n, c, h * scale, w * scale)

    @staticmethod
    def symbolic(g, x, scale, pads, *wb):
        outs = [_conv_node(g, x, pad, w, b) for pad, w, b in zip(pads, wb[0::2], wb[1::2])]
        return g.op("DepthToSpace", g.op("Concat", *outs, axis_i=1), blocksize_i=scale, mode_s="DCR")


class SubPixelConv(nn.ConvTranspose2d):
    """A size-multiplying ConvTranspose2d as stride-1 convolutions to its stride^2 output phases and a pixel
    shuffle (the polyphase form; the same sums up to float order). Inference runtimes run it with no col2im
    buffer: ONNX Runtime's transposed convolution holds C_out*k*k x H*W floats (315 MB in the flagship's
    synthesis of a Kodak image), this one a quarter of the output. Still a ConvTranspose2d to isinstance checks
    (the flagship modulates each one's input).

    From SPLIT_CHANNELS outputs on, each phase is its own convolution with only the taps that reach it (for the
    flagship's 5x5 stride-2 layers 3x3, 3x2, 2x3 and 2x2: 25 taps, where one convolution to all four phases
    needs a 3x3 kernel for each, 36): the flagship's synthesis in ONNX Runtime 0.24 -> 0.21 s on a Kodak image
    (bench/README.md). Below it (the last layer's 3 channels) one convolution is faster."""

    def __init__(self, m: nn.ConvTranspose2d, split: bool | None = None):
        nn.Module.__init__(self)
        self.defer_shuffle = False  # set by late_shuffles: return the phases (``Phases``), not the image
        self.phase_input = None  # set by read_phases: (r, each input phase's pads); weights in phase_input_params
        s, k, p, op = m.stride[0], m.kernel_size[0], m.padding[0], m.output_padding[0]
        if m.stride[0] != m.stride[1] or m.kernel_size[0] != m.kernel_size[1] or k - 2 * p + op != s \
                or m.groups != 1 or m.dilation != (1, 1):
            raise ValueError(f"not a square size-multiplying transposed convolution: {m}")
        w = m.weight.detach()  # (C_in, C_out, k, k)
        cin, cout = w.shape[:2]
        flipped = w.flip(2, 3).transpose(0, 1)  # (C_out, C_in, k, k): the equivalent stride-1 kernel
        pad = k - 1 - p
        phases = []  # per output phase f: first tap, number of taps, input offset of the first tap
        for f in range(s):
            k0 = (pad - f) % s
            phases.append((k0, len(range(k0, k, s)), (f + k0 - pad) // s))
        lo = min(b for _, _, b in phases)
        hi = max(b + n - 1 for _, n, b in phases)
        self.scale, self.pads = s, (-lo, hi)  # zeros before and after, on both axes
        bias = None if m.bias is None else m.bias.detach()
        if split is None:
            split = cout >= SPLIT_CHANNELS
        # every phase needs taps, and pads >= 0: its taps start at or before its output row and reach it
        self.split = split and all(n > 0 and b <= 0 <= b + n - 1 for _, n, b in phases)
        if self.split:  # one convolution per phase (row phase fr, column phase fc), phase-major
            self.phase_pads, params = [], []
            for kr0, nr, br in phases:
                for kc0, nc, bc in phases:
                    self.phase_pads.append((-br, -bc, br + nr - 1, bc + nc - 1))  # top, left, bottom, right
                    params.append(flipped[:, :, kr0::s, kc0::s].contiguous())
                    params.append(bias.clone() if bias is not None else w.new_zeros(cout))
            self.phase_params = nn.ParameterList(nn.Parameter(t, requires_grad=False) for t in params)
            self.weight, self.bias = None, None
            return
        size = hi - lo + 1
        weight = w.new_zeros(cout, s, s, cin, size, size)
        for fr, (kr0, nr, br) in enumerate(phases):
            for fc, (kc0, nc, bc) in enumerate(phases):
                for j in range(nr):
                    for i in range(nc):
                        weight[:, fr, fc, :, br + j - lo, bc + i - lo] = flipped[:, :, kr0 + s * j, kc0 + s * i]
        self.weight = nn.Parameter(weight.reshape(cout * s * s, cin, size, size), requires_grad=False)
        self.bias = None if bias is None else nn.Parameter(bias.repeat_interleave(s * s), requires_grad=False)

    def read_phases(self, r: int) -> None:
        """Take the ``r`` x ``r`` phases of the input (``Phases``) instead of the input itself: for each input
        phase one convolution straight to this layer's output phases at the phases' resolution, the sum of the
        ``r * r`` of them shuffled once by ``r * scale``. The same sums up to float order; the input is never
        interleaved. Each input phase's kernel covers only the rows and columns its taps reach (a 5x5 stride-2
        layer after another: 2x2 each, where one convolution over all four phases would need 3x3)."""
        if self.split or self.weight is None:
            raise ValueError("only the one-convolution form reads phases")
        s, (before, _) = self.scale, self.pads
        w = self.weight.detach()  # (C_out * s * s, C_in, size, size); channel co * s * s + fr * s + fc
        cout, cin, size = w.shape[0] // (s * s), w.shape[1], w.shape[2]
        outer = s * r  # output phases per input phase position, per axis
        taps = {}  # input phase u -> [(outer phase A, phase f, tap j, offset d)], one axis
        for a in range(outer):
            q, f = divmod(a, s)
            for j in range(size):
                d, u = divmod(q + j - before, r)
                taps.setdefault(u, []).append((a, f, j, d))
        reach = {u: (min(0, *(d for *_, d in t)), max(0, *(d for *_, d in t))) for u, t in taps.items()}
        convs = []
        for ur in range(r):
            for uc in range(r):
                (lo_r, hi_r), (lo_c, hi_c) = reach.get(ur, (0, 0)), reach.get(uc, (0, 0))
                k = w.new_zeros(cout, outer, outer, cin, hi_r - lo_r + 1, hi_c - lo_c + 1)
                for ar, fr, j, dr in taps.get(ur, []):
                    for ac, fc, i, dc in taps.get(uc, []):
                        k[:, ar, ac, :, dr - lo_r, dc - lo_c] += w.view(cout, s, s, cin, size, size)[:, fr, fc, :, j, i]
                bias = w.new_zeros(cout * outer * outer)
                if not convs and self.bias is not None:  # the bias once, with the first
                    bias = self.bias.detach().view(cout, s * s)[:, 0].repeat_interleave(outer * outer)
                convs.append(((-lo_r, -lo_c, hi_r, hi_c), nn.Parameter(k.reshape(-1, cin, *k.shape[-2:]),
                                                                      requires_grad=False),
                              nn.Parameter(bias, requires_grad=False)))
        self.phase_input = (r, [c[0] for c in convs])
        self.phase_input_params = nn.ParameterList(p for c in convs for p in c[1:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(x, Phases):
            r, pads = self.phase_input
            if x.scale != r or len(x) != r * r:
                raise ValueError(f"{len(x)} phases of scale {x.scale} for a layer that reads {r} x {r}")
            wb = list(self.phase_input_params)
            parts = [_PaddedConv.apply(p, pad, w, b) for p, pad, w, b in zip(x, pads, wb[0::2], wb[1::2])]
            y = parts[0]
            for part in parts[1:]:
                y = y + part
            return F.pixel_shuffle(y, r * self.scale)
        if self.split:
            if self.defer_shuffle:
                return Phases([_PaddedConv.apply(x, pad, w, b) for pad, w, b in
                               zip(self.phase_pads, self.phase_params[0::2], self.phase_params[1::2])], self.scale)
            return _PhaseShuffle.apply(x, self.scale, self.phase_pads, *self.phase_params)
        before, after = self.pads
        if before == after:
            y = F.conv2d(x, self.weight, self.bias, padding=before)
        else:
            y = F.conv2d(F.pad(x, (before, after, before, after)), self.weight, self.bias)
        return F.pixel_shuffle(y, self.scale)


def subpixel_deconvs(module: nn.Module) -> nn.Module:
    """``module`` with every (size-multiplying) ConvTranspose2d replaced by its ``SubPixelConv``, in place."""
    for name, child in module.named_children():
        if isinstance(child, nn.ConvTranspose2d) and not isinstance(child, SubPixelConv):
            try:
                setattr(module, name, SubPixelConv(child))
            except ValueError:
                pass  # another geometry: exported as it is
        else:
            subpixel_deconvs(child)
    return module


def _pointwise(m: nn.Module) -> bool:
    """Whether ``m`` maps each pixel on its own (so it may run on the phases of an image instead)."""
    if isinstance(m, (nn.ReLU, nn.LeakyReLU, nn.Identity, PerPhase)) or type(m).__name__ == "GDN":
        return True
    return (type(m) is nn.Conv2d and m.kernel_size == (1, 1) and m.stride == (1, 1) and m.padding == (0, 0)
            and m.dilation == (1, 1))


def late_shuffles(module: nn.Module) -> nn.Module:
    """``module`` (after ``subpixel_deconvs``) with the pixel shuffle of a split SubPixelConv left out where only
    pointwise layers lead to a one-convolution SubPixelConv (the flagship's last two size-doublings): the layers
    between run on each phase and the last reads the phases (``Phases``). In the flagship's synthesis on ONNX
    Runtime the interleaving of 128 channels at half the image's resolution (a DepthToSpace of 50 MB on a Kodak
    image, single-threaded) was 19 % of the time and its Concat and layout reorders another 9 %; without them the
    synthesis runs 1.36-1.39x faster (``python bench/runtimes.py --profile``, bench/README.md).
    In place; a model whose own code between its layers does more than a product cannot trace it (export falls
    back to the plain form)."""
    for child in module.children():
        late_shuffles(child)
    if isinstance(module, (nn.Sequential, nn.ModuleList)):
        layers = list(module)
        for i, first in enumerate(layers):
            if not (isinstance(first, SubPixelConv) and first.split and not first.defer_shuffle):
                continue
            j = i + 1
            while j < len(layers) and _pointwise(layers[j]):
                j += 1
            last = layers[j] if j < len(layers) else None
            if isinstance(last, SubPixelConv) and not last.split and last.phase_input is None:
                last.read_phases(first.scale)
                first.defer_shuffle = True
                for k in range(i + 1, j):
                    if not isinstance(layers[k], PerPhase):
                        module[k] = PerPhase(layers[k])
    return module
