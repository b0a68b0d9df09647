"""Ship new flagship weights: the weights side of weights/README.md's "Shipping new flagship weights", in one step.

    python bench/ship_weights.py runs/NEW.safetensors --eval runs/eval-NEW --retire-as flagship-DATE \
        --steps-total N --init "flagship-DATE (digest, steps), fresh optimizer, warm-up 200" [--golden-quality Q]

NEW must carry its Kodak curve in its card (`bench/kodak_rd.py --weights NEW --card -o EVAL`). In order, and
only if `bench/compare_weights.py` finds NEW better at every rate than the shipped flagship:

1. `git mv` the shipped flagship (and card) to `weights/RETIRE_AS.*`, its card's `superseded_by` set;
2. makes it a decoder-only archive in place (`neuralcodec retire`);
3. copies NEW and its card in as `weights/flagship.*`, with `steps_total` and `init_weights`;
4. copies EVAL's results to `bench/results/kodak/`;
5. adds a golden file made with NEW (`tests/golden/make_golden.py --weights flagship`);
6. stages all of it and reruns `bench/training_trend.py`.

NEW made with `neuralcodec export --prior-from flagship` (a new analysis alone: every tensor a decoder reads is the
flagship's, checked here too) decodes the shipped flagship's files itself (`same_decoder_as`): steps 1 and 2 are
skipped and the flagship is replaced, without an archive or --retire-as.

`--old` (default the curve of record) must be a curve of the shipped flagship (its `weights_digest`) made as NEW's
was (deblocking, images); a re-measure on this machine lets compare_weights.py see unchanged points.

The prose (README's table, weights/README.md's section, bench/README.md's trend) stays for a person to write.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WEIGHTS = ROOT / "weights"
KODAK = ROOT / "bench" / "results" / "kodak"


def run(*cmd: str) -> None:
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("new", type=Path, help="the new weights (.safetensors with a card holding its Kodak curve)")
    ap.add_argument("--eval", type=Path, required=True, help="bench/kodak_rd.py's output directory for NEW")
    ap.add_argument("--retire-as", metavar="NAME", help="the shipped flagship's new name (its archive's)")
    ap.add_argument("--steps-total", type=int, required=True, help="NEW's training steps from scratch")
    ap.add_argument("--init", required=True, help="what NEW's run started from (the card's init_weights)")
    ap.add_argument("--old", type=Path, default=KODAK / "neuralcodec.json", help="the shipped flagship's curve to "
                    "beat (default the curve of record; pass a re-measure from this machine, `kodak_rd.py --weights "
                    "flagship -o runs/eval-flagship` with NEW's --threads, for compare_weights.py to see unchanged "
                    "points: same files and pixels)")
    ap.add_argument("--golden-quality", type=float, default=40.0)
    a = ap.parse_args()
    from neuralcodec.zoo import weights_io

    new_card = json.loads(a.new.with_suffix(".json").read_text())
    if "kodak" not in new_card or not (a.eval / "neuralcodec.json").is_file():
        sys.exit(f"{a.new}: measure it first (bench/kodak_rd.py --weights {a.new} --card -o {a.eval})")
    new = weights_io.load(a.new)  # checks its card's digest
    shipped = weights_io.load(WEIGHTS / "flagship.safetensors")
    replaces = shipped.digest in new.same_decoder_as  # NEW decodes its files: no archive
    if replaces == bool(a.retire_as):
        sys.exit(f"{a.new} decodes the shipped flagship's files itself: no --retire-as" if replaces else
                 "--retire-as NAME: the shipped flagship's archive")
    if replaces:  # the metadata is not under the digest: check the claim on the tensors themselves
        from neuralcodec.models import architecture

        changed = weights_io._differing(new.tensors, shipped, architecture(new.arch).analysis_modules)
        if new.arch != shipped.arch or changed:
            sys.exit(f"{a.new} names the flagship in same_decoder_as, but {changed[:3] or new.arch} differ")
    else:
        retired = WEIGHTS / f"{a.retire_as}.safetensors"
        if retired.exists() or retired.with_suffix(".json").exists():
            sys.exit(f"{retired} exists: pick another --retire-as")
    old = json.loads(a.old.read_text())
    new_eval = json.loads((a.eval / "neuralcodec.json").read_text())
    if old.get("weights_digest") != shipped.digest.hex() or old.get("deblock") != new_eval.get("deblock") or (
            {r["image"] for r in old["per_image"]} != {r["image"] for r in new_eval["per_image"]}):
        sys.exit(f"{a.old}: not a curve of the shipped flagship made as {a.eval}'s (weights, deblocking, images)")
    if subprocess.run([sys.executable, "bench/compare_weights.py", str(a.old),
                       str(a.eval / "neuralcodec.json")], cwd=ROOT).returncode:
        sys.exit("not shipped: the new weights must be better at every rate")

    if not replaces:
        old_card = json.loads((WEIGHTS / "flagship.json").read_text())
        run("git", "mv", "weights/flagship.safetensors", str(retired.relative_to(ROOT)))
        run("git", "mv", "weights/flagship.json", str(retired.with_suffix(".json").relative_to(ROOT)))
        old_card["file"] = retired.name
        old_card["superseded_by"] = (f"flagship.safetensors ({new.digest.hex()[:8]}); kept so that files made "
                                     "with these weights keep decoding")
        weights_io.write_archive(weights_io.load(retired), retired, old_card)

    shutil.copyfile(a.new, WEIGHTS / "flagship.safetensors")
    new_card.update({"file": "flagship.safetensors", "steps_total": a.steps_total, "init_weights": a.init})
    (WEIGHTS / "flagship.json").write_text(json.dumps(new_card, indent=1) + "\n")
    assert weights_io.load(WEIGHTS / "flagship.safetensors").digest == new.digest
    for f in ("neuralcodec.json", "report.json", "rd.png"):
        if (a.eval / f).is_file():
            shutil.copyfile(a.eval / f, KODAK / f)

    run(sys.executable, "tests/golden/make_golden.py", "--weights", str(WEIGHTS / "flagship.safetensors"),
        "--quality", f"{a.golden_quality:g}")
    run("git", "add", "weights", "bench/results/kodak", "tests/golden")
    run(sys.executable, "bench/training_trend.py")
    run("git", "add", "bench/results/training_trend.json")
    print(f"shipped {new.digest.hex()[:16]} as weights/flagship.safetensors; " + (
        f"it decodes {shipped.digest.hex()[:16]}'s files itself" if replaces else
        f"{a.retire_as} is a decoder-only archive") + ". Now update README.md, weights/README.md and "
        "bench/README.md, run the tests and commit.")


if __name__ == "__main__":
    main()
