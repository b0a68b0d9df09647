"""The compressai-free inference layers compute what compressai's do, and coding never imports compressai."""

import subprocess
import sys

import pytest
import torch

from neuralcodec.models import build, layers


@pytest.mark.parametrize("inverse", [False, True])
def test_gdn_twin_is_bit_identical(inverse):
    from compressai.layers import GDN

    torch.manual_seed(0)
    ref = GDN(16, inverse=inverse)
    with torch.no_grad():  # trained-looking parameters, some below the reparametrization bounds
        ref.beta.copy_(torch.rand(16) * 2 - 0.1)
        ref.gamma.copy_(torch.rand(16, 16) * 0.3 - 0.02)
    twin = layers.GDN(16, inverse=inverse)
    twin.load_state_dict({k: v for k, v in ref.state_dict().items() if k in ("beta", "gamma")})
    x = torch.randn(2, 16, 9, 11) * 3
    with torch.no_grad():
        assert torch.equal(twin(x), ref(x))


def test_inference_model_matches_training_model():
    torch.manual_seed(1)
    train = build("modhp", N=8, M=12).eval()
    coder = build("modhp", N=8, M=12, inference=True).eval()
    missing, unexpected = coder.load_state_dict(train.state_dict(), strict=False)
    assert not [k for k in missing if not k.endswith((".bound", ".pedestal"))]
    assert all(k.startswith(coder.training_only) or k.endswith((".bound", ".pedestal")) for k in unexpected)
    x, t = torch.rand(1, 3, 64, 64), torch.tensor([0.3])
    with torch.no_grad():
        y = train.analysis(x, t)
        assert torch.equal(coder.analysis(x, t), y)
        assert torch.equal(coder.synthesis(y.round(), t), train.synthesis(y.round(), t))


def test_coding_does_not_import_compressai(tmp_path):
    code = ("import sys, numpy as np, neuralcodec;"
            "d = neuralcodec.compress(np.full((40, 50, 3), 90, np.uint8), 40); neuralcodec.decompress(d);"
            "print('compressai' in sys.modules, 'torchvision' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_subpixel_convolution_is_the_transposed_convolution():
    """The export's rewrite of a transposed convolution (a convolution to the phases + pixel shuffle) computes
    the same outputs, for the flagship's geometry and others that multiply the size."""
    from neuralcodec.models.layers import SubPixelConv, subpixel_deconvs

    torch.manual_seed(0)
    for cin, cout, k, s, p, op in [(4, 3, 5, 2, 2, 1), (4, 3, 3, 2, 1, 1), (2, 5, 4, 2, 1, 0), (3, 2, 6, 3, 2, 1)]:
        m = torch.nn.ConvTranspose2d(cin, cout, k, s, p, op)
        x = torch.randn(2, cin, 5, 7)
        for split in (False, True):  # one convolution to all phases, or one per phase with its own taps
            sub = SubPixelConv(m, split)
            assert isinstance(sub, torch.nn.ConvTranspose2d) and sub.split == split
            assert torch.allclose(m(x), sub(x), atol=1e-5), (k, s, p, op, split)
    for k, s, p, op in [(1, 2, 0, 1), (3, 3, 1, 2), (2, 4, 0, 2)]:  # a phase with no taps, or whose taps start
        m = torch.nn.ConvTranspose2d(3, 4, k, s, p, op)  # past its output row: one convolution to all phases
        x = torch.randn(1, 3, 4, 5)
        sub = SubPixelConv(m, split=True)
        assert not sub.split and torch.allclose(m(x), sub(x), atol=1e-5), (k, s, p, op)
    other = torch.nn.Sequential(torch.nn.ConvTranspose2d(2, 2, 3, 2, 0))  # not size-doubling: kept
    assert type(subpixel_deconvs(other)[0]) is torch.nn.ConvTranspose2d


def test_subpixel_phases_export_as_their_own_convolutions(tmp_path):
    """Split, each phase is an ONNX Conv with only its taps (25 of the dense form's 36 for a 5x5 stride-2 layer)
    and asymmetric pads, then DepthToSpace in DCR order; ONNX Runtime computes the transposed convolution."""
    import warnings

    import numpy as np
    import onnx
    import onnxruntime as ort

    from neuralcodec.models.layers import SPLIT_CHANNELS, SubPixelConv

    torch.manual_seed(1)
    m = torch.nn.ConvTranspose2d(6, SPLIT_CHANNELS, 5, 2, 2, 1)
    sub = SubPixelConv(m)
    assert sub.split and not SubPixelConv(torch.nn.ConvTranspose2d(6, 3, 5, 2, 2, 1)).split
    path = tmp_path / "sub.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(sub.eval(), (torch.randn(1, 6, 4, 4),), str(path), dynamo=False, opset_version=17,
                          input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}})
    graph = onnx.load(str(path)).graph
    sizes = {i.name: list(i.dims) for i in graph.initializer}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    assert sorted(tuple(sizes[n.input[1]][2:]) for n in convs) == [(2, 2), (2, 3), (3, 2), (3, 3)]
    (d2s,) = [n for n in graph.node if n.op_type == "DepthToSpace"]
    assert onnx.helper.get_attribute_value(d2s.attribute[[a.name for a in d2s.attribute].index("mode")]) == b"DCR"
    x = torch.randn(2, 6, 7, 5)
    out = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x.numpy()})[0]
    assert np.abs(out - m(x).detach().numpy()).max() < 1e-5


def test_a_late_shuffle_computes_the_transposed_convolutions(tmp_path):
    """late_shuffles: a split layer hands its phases through pointwise layers (and a per-channel product, the
    flagship's modulation) to a one-convolution layer that reads them; the same outputs for several geometries,
    in torch and in ONNX Runtime, with no DepthToSpace but the last."""
    import copy
    import warnings

    import numpy as np
    import onnx
    import onnxruntime as ort

    from neuralcodec.models.layers import GDN, PerPhase, Phases, late_shuffles, subpixel_deconvs

    class Net(torch.nn.Module):  # the flagship's synthesis loop: a scale before each transposed convolution
        def __init__(self, a, b):
            super().__init__()
            self.g = torch.nn.Sequential(a, GDN(a.out_channels, inverse=True), torch.nn.LeakyReLU(), b)
            self.scale = torch.nn.Parameter(torch.rand(1, a.out_channels, 1, 1) + 0.5)

        def forward(self, x):
            for layer in self.g:
                if isinstance(layer, torch.nn.ConvTranspose2d) and layer is not self.g[0]:
                    x = x * self.scale
                x = layer(x)
            return x

    torch.manual_seed(2)
    for first, second in [((5, 2, 2, 1), (5, 2, 2, 1)), ((3, 2, 1, 1), (5, 2, 2, 1)), ((4, 2, 1, 0), (3, 2, 1, 1)),
                          ((5, 2, 2, 1), (6, 3, 2, 1)), ((6, 3, 2, 1), (5, 2, 2, 1))]:
        net = Net(torch.nn.ConvTranspose2d(6, 20, *first), torch.nn.ConvTranspose2d(20, 3, *second))
        with torch.no_grad():
            net.g[1].beta.uniform_(0.5, 1.5)
            net.g[1].gamma.uniform_(0, 0.1)
        x = torch.randn(2, 6, 5, 7)
        with torch.no_grad():
            want = net(x)
            late = copy.deepcopy(net)
            late_shuffles(subpixel_deconvs(late))
            assert late.g[0].defer_shuffle and isinstance(late.g[1], PerPhase) and late.g[3].phase_input
            assert isinstance(late.g[2](late.g[1](late.g[0](x))), Phases)
            assert torch.allclose(late(x), want, atol=1e-5), (first, second)
        path = tmp_path / "late.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(late.eval(), (torch.randn(1, 6, 4, 4),), str(path), dynamo=False, opset_version=17,
                              input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}})
        ops = [n.op_type for n in onnx.load(str(path)).graph.node]
        assert ops.count("DepthToSpace") == 1 and "Pad" not in ops, ops
        out = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x.numpy()})[0]
        assert np.abs(out - want.numpy()).max() < 1e-5, (first, second)
    kept = torch.nn.Sequential(torch.nn.ConvTranspose2d(4, 20, 5, 2, 2, 1), torch.nn.Conv2d(20, 20, 3, 1, 1),
                               torch.nn.ConvTranspose2d(20, 3, 5, 2, 2, 1))  # a 3x3 between: not pointwise
    late_shuffles(subpixel_deconvs(kept))
    assert not kept[0].defer_shuffle and kept[2].phase_input is None


def test_the_export_falls_back_to_the_plain_synthesis_where_the_late_form_cannot_trace(tmp_path):
    """A model whose own code between its layers does more than a product (here + 1) cannot carry the phases: its
    synthesis graph is exported as it is, and computes what torch computes."""
    from types import SimpleNamespace

    import numpy as np
    import onnx
    import onnxruntime as ort

    from neuralcodec.pipeline import onnx_backend

    class Toy(torch.nn.Module):
        def __init__(self, plus: float):
            super().__init__()
            self.g_s = torch.nn.Sequential(torch.nn.ConvTranspose2d(4, 16, 5, 2, 2, 1), torch.nn.LeakyReLU(),
                                           torch.nn.ConvTranspose2d(16, 3, 5, 2, 2, 1))
            self.plus = plus

        def synthesis(self, y, t):
            x = y
            for layer in self.g_s:
                x = layer(x) + self.plus if self.plus else layer(x)
            return x

    torch.manual_seed(3)
    y = torch.randn(1, 4, 6, 5)
    spec = SimpleNamespace(stride=4, levels=(SimpleNamespace(name="y", channels=4, downsampling=4, kind="gaussian"),),
                           synthesis_levels=("y",), top_from=None)
    for plus, shuffles in ((0.0, 1), (1.0, 2)):  # late: one shuffle by 4; plain: one by 2 per layer
        toy = Toy(plus).eval()
        out = tmp_path / str(plus)
        out.mkdir()
        onnx_backend._export(toy, spec, out, encoder=False)
        ops = [n.op_type for n in onnx.load(str(out / "synthesis.onnx")).graph.node]
        assert ops.count("DepthToSpace") == shuffles, (plus, ops)
        got = ort.InferenceSession(str(out / "synthesis.onnx"), providers=["CPUExecutionProvider"]).run(
            None, {"hat0": y.numpy()})[0]
        with torch.no_grad():
            assert np.abs(got - toy.synthesis(y, None).numpy()).max() < 1e-5, plus
