"""Rate-distortion evaluation with real files: neuralcodec at a sweep of qualities, classic codecs through
Pillow, BD-rates against anchor curves, an RD plot. Reports use the anchors' JSON schema
(``{"name", "description", "results": {"bpp": [...], "psnr-rgb": [...], "ms-ssim": [...], ...}}``).
"""

from __future__ import annotations

import hashlib
import io
import json
import statistics
import time
from pathlib import Path

import numpy as np
from PIL import Image

from neuralcodec.errors import NeuralcodecError
from neuralcodec.evaluation.rd import bd_rate, load_anchor, msssim_db

DEFAULT_QUALITIES = (0, 20, 40, 60, 80, 100)
CLASSIC_QUALITIES = {"jpeg": (10, 20, 30, 40, 50, 60, 70, 80, 90, 95), "webp": (5, 15, 30, 50, 70, 85, 95),
                     "avif": (20, 35, 50, 60, 70, 80, 90), "jxl": (20, 40, 60, 70, 80, 90, 95)}
PILLOW_FORMATS = {"jpeg": "JPEG", "webp": "WEBP", "avif": "AVIF", "jxl": "JXL"}  # jxl: only with a Pillow plugin


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255**2 / mse))


MSSSIM_MIN_SIDE = 161  # five scales of an 11-tap window: pytorch_msssim refuses smaller images


def ms_ssim(a: np.ndarray, b: np.ndarray) -> float:
    import torch
    from pytorch_msssim import ms_ssim as f

    ta, tb = (torch.from_numpy(np.array(x)).permute(2, 0, 1)[None].float() for x in (a, b))
    return float(f(ta, tb, data_range=255))


def _neuralcodec_coder(quality: float, weights: str | None, effort: int = 0, backend: str = "auto",
                       deblock: bool = True, precision: str = "auto"):
    import neuralcodec

    def code(img: np.ndarray):
        t0 = time.perf_counter()
        data = neuralcodec.compress(img, quality, weights=weights, effort=effort, backend=backend, deblock=deblock,
                                    precision=precision)
        t1 = time.perf_counter()
        out = np.asarray(neuralcodec.decompress(data, weights=weights, backend=backend))
        return len(data), out, t1 - t0, time.perf_counter() - t1
    return code


def _pillow_coder(fmt: str, quality: int):
    def code(img: np.ndarray):
        buf = io.BytesIO()
        t0 = time.perf_counter()
        kw = {"subsampling": "4:4:4", "speed": 6} if fmt == "avif" else ({"method": 6} if fmt == "webp" else {})
        Image.fromarray(img).save(buf, format=PILLOW_FORMATS[fmt], quality=quality, **kw)
        t1 = time.perf_counter()
        out = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
        return buf.tell(), out, t1 - t0, time.perf_counter() - t1
    return code


def check_codecs(names) -> None:
    """ValueError naming any codec that is not one of CLASSIC_QUALITIES."""
    unknown = [c for c in names if c not in CLASSIC_QUALITIES]
    if unknown:
        raise ValueError(f"unknown codec {', '.join(unknown)}; choose from {', '.join(CLASSIC_QUALITIES)}")


def available_classic() -> list[str]:
    """The classic codecs Pillow can write here (jxl needs a plugin such as pillow-jxl-plugin, imported if present)."""
    try:
        import pillow_jxl  # noqa: F401  (registers JXL with Pillow)
    except ImportError:
        pass
    Image.init()
    return [k for k, fmt in PILLOW_FORMATS.items() if fmt in Image.SAVE]


def curve(name: str, coders: list[tuple[float, callable]], images: list[Path], bar=None,
          with_msssim: bool = True) -> dict:
    """One RD curve: for each (quality, coder), mean bpp/PSNR/MS-SSIM and median seconds over ``images``; per image
    also the file's size and the decoded pixels' SHA-256 (two curves whose point has the same of both for every image
    coded the same pictures at the same cost, whatever float noise says)."""
    res = {k: [] for k in ("quality", "bpp", "psnr-rgb", "ms-ssim", "enc_s", "dec_s")}
    per_image = []
    for q, code in coders:
        rows = []
        for f in images:
            img = np.asarray(Image.open(f).convert("RGB"))
            nbytes, out, enc, dec = code(img)
            row = {"image": f.name, "quality": q, "bpp": 8 * nbytes / (img.shape[0] * img.shape[1]),
                   "psnr-rgb": psnr(out, img), "enc_s": enc, "dec_s": dec, "bytes": nbytes,
                   "decoded_sha256": hashlib.sha256(np.ascontiguousarray(out).tobytes()).hexdigest()}
            if with_msssim:
                row["ms-ssim"] = ms_ssim(out, img)
            rows.append(row)
            if bar:
                bar.update(1)
        per_image += rows
        res["quality"].append(q)
        for k in ("bpp", "psnr-rgb", "ms-ssim"):
            if k in rows[0]:
                res[k].append(float(np.mean([r[k] for r in rows])))
        for k in ("enc_s", "dec_s"):
            res[k].append(statistics.median(r[k] for r in rows))
    if not res["ms-ssim"]:
        del res["ms-ssim"]
    return {"name": name, "results": res, "per_image": per_image}


def bd_table(report: dict, anchors: dict[str, dict]) -> dict:
    """BD-rate (%) of ``report``'s curve against each anchor's, in PSNR and (where both have it) MS-SSIM dB."""
    r = report["results"]
    out = {}
    for name, a in anchors.items():
        row = {"psnr": round(bd_rate(a["bpp"], a["psnr-rgb"], r["bpp"], r["psnr-rgb"]), 2)}
        a_ms = a.get("ms-ssim", a.get("ms-ssim-rgb"))
        if a_ms and "ms-ssim" in r:
            row["ms-ssim"] = round(bd_rate(a["bpp"], msssim_db(a_ms), r["bpp"], msssim_db(r["ms-ssim"])), 2)
        out[name] = row
    return out


def plot(curves: dict[str, dict], path: Path, title: str = "Kodak") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 6))
    for name, r in curves.items():
        style = "-o" if name.startswith("neuralcodec") else "--."
        ax.plot(r["bpp"], r["psnr-rgb"], style, label=name, ms=4)
    ax.set_xlabel("bits per pixel")
    ax.set_ylabel("PSNR RGB (dB)")
    ax.set_xlim(0, 1.6)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


class EvaluationError(NeuralcodecError, ValueError):
    """An evaluation that cannot run as asked (no images, weights that cannot encode, mixed models)."""


class AnchorError(EvaluationError):
    """An --anchors file that is not an RD curve in the anchors' JSON layout."""


def load_anchors(files: list[Path]) -> dict[str, dict]:
    """Name (file stem) -> RD curve of each anchor file; AnchorError for one that is not such a curve."""
    anchors = {}
    for f in files:
        try:
            curve = load_anchor(f)
            curve["bpp"], curve["psnr-rgb"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise AnchorError(f"{f} is not an RD curve in the anchors' JSON layout ({e!r})") from None
        anchors[Path(f).stem] = curve
    return anchors


def evaluate(dataset: Path, out_dir: Path, qualities=DEFAULT_QUALITIES, against: list[str] = (),
             anchor_files: list[Path] = (), weights: str | list[str] | None = None, limit: int | None = None,
             progress: bool = True, effort: int = 0, backend: str = "auto", deblock: bool = True) -> dict:
    """Run the whole evaluation and write ``report.json``, per-codec JSONs and ``rd.png`` into ``out_dir``.

    ``weights``: one weights file (a variable-rate model is swept over ``qualities``), or several of one
    fixed-rate model (one point each, e.g. the same recipe trained at several lambdas); ``effort``: the encoder effort
    of every neuralcodec file (compress's ``effort``); ``backend``: what runs the transforms (settings); ``deblock``:
    False writes files without the deblocking flag (the synthesis' own pixels, as every curve before 2026-12-06)."""
    from tqdm import tqdm

    from neuralcodec.api import load_codec
    from neuralcodec.zoo.catalog import archive_refusal

    images = sorted(p for p in Path(dataset).iterdir() if p.suffix.lower() in (".png", ".ppm", ".bmp", ".tif"))
    images = images[:limit] if limit else images
    if not images:
        raise EvaluationError(f"no lossless images (png, ppm, bmp, tif) in {dataset}")
    check_codecs(against)
    anchors = load_anchors(anchor_files)  # before minutes of coding, not after
    classic = [c for c in against if c in available_classic()]
    weights_list = [weights] if weights is None or isinstance(weights, (str, Path)) else list(weights) or [None]
    codecs = [load_codec(w) for w in weights_list]
    for c in codecs:
        if c.weights.decoder_only:
            raise EvaluationError(archive_refusal(c.weights.path.name, "encode"))
    if len({c.model_id for c in codecs}) > 1 or (len(codecs) > 1 and any(c.variable_rate for c in codecs)):
        raise EvaluationError("several weights make one curve only when they are the same fixed-rate model")
    if effort and not codecs[0].refinable:
        raise EvaluationError(f"model {codecs[0].model_id!r} does not support latent refinement")
    ours_coders = []
    for w, codec in zip(weights_list, codecs):
        if codec.variable_rate:
            ours_coders += [(q, _neuralcodec_coder(q, w, effort, backend, deblock)) for q in qualities]
        else:  # one operating point per weights file; its "quality" is the weights' name
            ours_coders.append((codec.weights.path.stem, _neuralcodec_coder(0, w, effort, backend, deblock)))
    total = len(images) * (len(ours_coders) + sum(len(CLASSIC_QUALITIES[c]) for c in classic))
    bar = tqdm(total=total, unit="img", disable=not progress)
    name = f"neuralcodec {codecs[0].weights.path.stem if len(codecs) == 1 else codecs[0].model_id}"
    with_msssim = all(min(Image.open(f).size) >= MSSSIM_MIN_SIDE for f in images)  # else PSNR only
    ours = curve(name, ours_coders, images, bar, with_msssim)
    if effort:
        ours["effort"] = effort
    ours["deblock"] = deblock and codecs[0].deblocks  # a model with a fine grid is never filtered
    ours.update(weights_digest=[c.weights.digest.hex() for c in codecs] if len(codecs) > 1
                else codecs[0].weights.digest.hex(), description="real .nic files, neuralcodec eval")
    curves = {name: ours["results"]}
    reports = {"neuralcodec": ours}
    for c in classic:
        rep = curve(f"pillow-{c}", [(q, _pillow_coder(c, q)) for q in CLASSIC_QUALITIES[c]], images, bar, with_msssim)
        reports[c] = rep
        curves[rep["name"]] = rep["results"]
    bar.close()
    anchors.update({f"pillow-{c}": reports[c]["results"] for c in classic})
    ours["bd_rate"] = bd_table(ours, anchors)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for key, rep in reports.items():
        (out_dir / f"{key}.json").write_text(json.dumps(rep, indent=1) + "\n")
    plot({**curves, **{k: v for k, v in anchors.items() if not k.startswith("pillow-")}}, out_dir / "rd.png",
         f"{Path(dataset).name}: {len(images)} images")
    summary = {"images": len(images), "curves": {k: reports[k]["results"] for k in reports},
               "bd_rate": ours["bd_rate"], "skipped": [c for c in against if c not in classic]}
    if not with_msssim:
        summary["note"] = f"no MS-SSIM: some images are smaller than {MSSSIM_MIN_SIDE} px on a side"
    (out_dir / "report.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary
