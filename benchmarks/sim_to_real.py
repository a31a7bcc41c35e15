"""Weigh a renderer lever for real faces: train a student quickly on renders, score it on renders and on
the real-photo check.

Each run renders ``--n`` training faces with the given ``data.synthetic_faces`` options (``--set
key=value``, e.g. ``real_face_prob=0.7``), trains the default student architecture on the clean labels
(L1 on both heads, flips, one-cycle AdamW; no teacher, no label noise: only the images change between
two runs), then prints its clean rendered-test MAE (1000 renders drawn with the same options) and the
real-photo check (benchmarks/photo_check.py) of its label head. Compare two runs that differ in one
option; both train on the same poses and seeds. One seed's student ranks levers badly (two seeds of the
same recipe differ by more than most levers do), so ``--seeds`` trains one student per seed and adds the
median over them of each figure, per photo:

    python -m benchmarks.sim_to_real --seeds 11,12,13 --set real_face_prob=0.7 --set grey_prob=0.15

``--mirror-average`` also scores each student averaged with its mirrored reading of the mirrored crop (a
test-time lever: mirror-equivariant by construction, at twice the model's cost). Crops turn with the eye
line when the options draw level-eyed heads (``roll_frame=eye_line``, the default).

Measured (docs/real-faces.md): on 2 shared cores one student at the default budget (20000 renders, 12
epochs) takes 4.5 to 15 minutes.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import fields, replace

import numpy as np
import torch

from benchmarks.photo_check import METRICS, check, mirror_averaged
from benchmarks.real_faces import table
from pipeline.data.convention import POSE_MIRROR
from pipeline.data.synthetic_faces import SyntheticFacesConfig, render_faces, sample_poses
from pipeline.faces.crop import CropSpec, normalize
from pipeline.models import build_model
from pipeline.runs import atomic_write_json

ARCH = "mobile_s"  # the default student


def _options(pairs: list[str]) -> SyntheticFacesConfig:
    cfg = SyntheticFacesConfig()
    kinds = {f.name: type(getattr(cfg, f.name)) for f in fields(cfg)}
    changes = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in kinds:
            raise SystemExit(f"error: --set {pair!r}: use key=value with a data.synthetic_faces key "
                             f"({', '.join(sorted(kinds))})")
        changes[key] = kinds[key](value)
    return replace(cfg, **changes)


def train(cfg: SyntheticFacesConfig, n: int, epochs: int, seed: int = 11, batch: int = 128) -> tuple:
    """(model, clean MAE on 1000 renders of ``cfg``, clean MAE on 1000 renders of the default options) of a
    student trained on ``n`` renders of ``cfg``; ``seed`` fixes the poses, the renders, the initial weights
    and the batch order, so a run repeats exactly. The second MAE is the one two levers compare on: a lever
    that makes its own test harder (wider jitter) would otherwise look worse on renders than it is."""
    torch.manual_seed(seed)
    poses = sample_poses(n, seed, cfg)
    x = torch.from_numpy(render_faces(poses, seed, cfg))
    y = torch.from_numpy(poses.astype(np.float32))
    tests = []
    for test_cfg in (cfg, SyntheticFacesConfig()):
        if tests and test_cfg == cfg:  # the lever is the defaults: the same 1000 renders, not drawn twice
            tests.append(tests[0])
            continue
        test_poses = sample_poses(1000, seed + 1, test_cfg)
        tests.append((test_poses, torch.from_numpy(render_faces(test_poses, seed + 1, test_cfg))))
    # uniform labels: std = range / sqrt(3); level-eyed heads' roll is not uniform, its spread is measured
    std = (poses.std(0) if cfg.roll_frame == "eye_line" else
           np.array([cfg.yaw_range, cfg.pitch_range, cfg.roll_range]) / 3 ** 0.5)
    model = build_model(ARCH, {"label_mean": [0.0] * 3, "label_std": std.tolist()})
    steps = len(x) // batch
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=steps * epochs)
    mirror = torch.tensor(POSE_MIRROR, dtype=torch.float32)
    gen = torch.Generator().manual_seed(seed)

    def inputs(u8: torch.Tensor) -> torch.Tensor:
        return u8.permute(0, 3, 1, 2).float() / 255.0

    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(x), generator=gen)
        for s in range(steps):
            idx = order[s * batch:(s + 1) * batch]
            xb, yb = inputs(x[idx]), y[idx]
            flip = torch.rand(len(idx), generator=gen) < 0.5
            xb = torch.where(flip.view(-1, 1, 1, 1), xb.flip(3), xb)
            yb = torch.where(flip.view(-1, 1), yb * mirror, yb)
            label, teacher = model(xb)
            loss = (label - yb).abs().mean() + (teacher - yb).abs().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    with torch.no_grad():
        maes = [float(np.abs(model(inputs(test_x))[0].numpy() - test_poses).mean()) for test_poses, test_x in tests]
    return model, *maes


def medians(result: dict) -> str:
    """Per photo, the median over the seeds' students of each metric (what a lever does, less one run's
    luck); the mirror-averaged students (``mirror_avg<seed>``) get their own rows, not mixed with the plain
    ones."""
    lines = [f"{'median':<14} {'photo':<15} " + " ".join(f"{k:>12}" for k in METRICS)]
    for group in ("seed", "mirror_avg"):
        models = [m for key, m in result["models"].items() if key.rstrip("0123456789") == group]
        if not models:
            continue
        for name in models[0]["photos"]:
            vals = []
            for key in METRICS:
                got = [m["photos"][name].get(key) for m in models]
                got = [v for v in got if v is not None]
                vals.append(f"{np.median(got):>12.3f}" if got else f"{'-':>12}")
            lines.append(f"{group:<14} {name:<15} " + " ".join(vals))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20000, help="training renders")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a data.synthetic_faces option (repeatable)")
    ap.add_argument("--seeds", default="11", help="comma-separated training seeds: one student each, all "
                                                    "scored; runs vary a lot from seed to seed (docs: Real faces)")
    ap.add_argument("--json", help="also write the result here")
    ap.add_argument("--mirror-average", action="store_true", help="also score each student averaged with its "
                                                                   "reading of the mirrored crop")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default); use 1 per run "
                                                           "when two runs share a machine")
    args = ap.parse_args(argv)
    try:
        seeds = list(dict.fromkeys(int(v) for v in args.seeds.split(",")))  # each seed once, in order
    except ValueError:
        raise SystemExit(f"error: --seeds {args.seeds!r}: use comma-separated integers, e.g. 11,12,13") from None
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = _options(args.set)
    t0 = time.perf_counter()
    spec = CropSpec(size=cfg.image_size, rotate="eye_line" if cfg.roll_frame == "eye_line" else "none")
    predicts, maes, default_maes = {}, {}, {}
    for seed in seeds:
        model, maes[seed], default_maes[seed] = train(cfg, args.n, args.epochs, seed=seed)

        @torch.no_grad()
        def predict(crops: np.ndarray, model: torch.nn.Module = model) -> np.ndarray:
            return model(torch.from_numpy(normalize(crops, spec)))[0].numpy()

        predicts["student" if len(seeds) == 1 else f"seed{seed}"] = predict
        if args.mirror_average:
            predicts[f"mirror_avg{seed}"] = mirror_averaged(predict)
    result = check(predicts, spec)
    mae = float(np.median(list(maes.values())))
    default_mae = float(np.median(list(default_maes.values())))
    result.update(options=args.set, n=args.n, epochs=args.epochs, seeds=seeds, rendered_test_mae=round(mae, 3),
                  rendered_test_mae_per_seed={str(k): round(v, 3) for k, v in maes.items()},
                  default_renders_mae=round(default_mae, 3),
                  default_renders_mae_per_seed={str(k): round(v, 3) for k, v in default_maes.items()},
                  seconds=round(time.perf_counter() - t0, 1))
    per_seed = ", ".join(f"{v:.2f}" for v in maes.values())
    per_seed_default = ", ".join(f"{v:.2f}" for v in default_maes.values())
    print(f"options {args.set or 'defaults'}: rendered-test MAE {mae:.2f} deg (median; per seed {per_seed}), on "
          f"default-option renders {default_mae:.2f} deg (per seed {per_seed_default}), after {args.epochs} epochs "
          f"on {args.n} renders ({result['seconds']} s)")
    print(table(result))
    if len(seeds) > 1:
        print(medians(result))
    if args.json:
        atomic_write_json(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
