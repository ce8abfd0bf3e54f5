"""SeDID stages: score an image set with a DDPM world's stepwise errors and loss attack."""

from __future__ import annotations

import argparse
from pathlib import Path

from diffsec.cli.common import add_stage, json_arg, open_stage


def register(sub) -> None:
    p = add_stage(sub, "sedid-score", run_score, "t-error maps, SeDID_Stat and loss-attack scores of an image set",
                  "For each image of a set: SeDID's stepwise error maps E_t at every t_SEC of the grid of step "
                  "k, the Stat score -sum E_t, the loss attack's score at each --loss-ts timestep, and the "
                  "Stat score on the grid of each --sweep-ks step (first --sweep-n images). Writes scores.npz.")
    p.add_argument("--model", type=Path, required=True, help="DDPM world (train-ddpm / install-world artifact)")
    p.add_argument("--snapshot", type=int, default=0,
                   help="score with the EMA snapshot of this training step of a train-ddpm artifact (0 = final)")
    p.add_argument("--images", type=Path, required=True, help="npz image set, or an artifact dir with samples.npz")
    p.add_argument("--n", type=int, default=0, help="images to score (0 = all)")
    p.add_argument("--pick", choices=["first", "random"], default="first",
                   help="the first N images, or N drawn without replacement with --seed")
    p.add_argument("--jpeg", type=int, default=0, help="re-encode the images as JPEG at this quality first (0 = no)")
    p.add_argument("--k", type=int, default=165, help="step of the t-error grid (paper: 165)")
    p.add_argument("--t-secs", type=json_arg, default=[165, 330, 495, 660, 825, 990],
                   help="t_SEC rows, multiples of k (JSON list)")
    p.add_argument("--loss-ts", type=json_arg, default=[100, 200, 300, 500, 700, 900],
                   help="timesteps of the loss attack (JSON list)")
    p.add_argument("--sweep-ks", type=json_arg, default=[], help="steps k of the step-size sweep (JSON list)")
    p.add_argument("--sweep-t", type=int, default=990, help="t_SEC of the step-size sweep (a multiple of each k)")
    p.add_argument("--sweep-n", type=int, default=0, help="images that enter the step-size sweep")
    p.add_argument("--batch-size", type=int, default=64, help="images per batch (speed and memory only)")
    p.add_argument("--ckpt-every", type=int, default=1, help="checkpoint period (batches) for resume")

    p = add_stage(sub, "sedid-eval", run_eval, "SeDID's detection figures for one generated set against the real set",
                  "Split real (label 0) and generated (label 1) images once (seeded, stratified); pick the t_SEC "
                  "of Stat and the loss attack's timestep by AUC on the NN split; train SeDID_NNs (CIFAR "
                  "ResNet-18 on the error maps at that t_SEC, epoch chosen on a validation part of the NN "
                  "split); report every method on the test split. Writes metrics.json, roc.npz, the NN's "
                  "weights and its curve.")
    p.add_argument("--label", required=True, help="the generated set's name in the tables (ddpm, jpeg, ddim)")
    p.add_argument("--real", type=Path, required=True, help="sedid-score artifact of the real images")
    p.add_argument("--generated", type=Path, required=True, help="sedid-score artifact of the generated images")
    p.add_argument("--train-frac", type=float, default=0.1, help="share of the images the NN may see (paper: 0.1)")
    p.add_argument("--val-frac", type=float, default=0.2, help="share of the NN split that selects its epoch")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3, help="SGD learning rate (momentum 0.9, weight decay 5e-4)")

    p = add_stage(sub, "figure-sedid", run_figures, "SeDID's figures",
                  "Step-size sweep (Fig. 2), Stat against t_SEC with the paper's CIFAR-10 curve (Fig. 3), TPR at "
                  "low FPR against t_SEC (Fig. 4), ROC curves of the three methods, and real vs generated "
                  "images beside their error maps, from a sedid-eval artifact and the two sedid-score ones.")
    p.add_argument("--eval", type=Path, required=True, help="sedid-eval artifact (the paper's generated set)")
    p.add_argument("--real", type=Path, required=True, help="sedid-score artifact of the real images")
    p.add_argument("--generated", type=Path, required=True, help="sedid-score artifact of the generated images")
    p.add_argument("--real-images", type=Path, required=True, help="the image set the real scores index")
    p.add_argument("--generated-images", type=Path, required=True, help="the generated image set")
    p.add_argument("--n-images", type=int, default=8, help="images per row of the error-map grid")

    p = add_stage(sub, "figure-sedid-mia", run_mia_figure, "sedid_mia's figure: AUC against training epochs",
                  "AUC and TPR at 1% FPR of the loss attack, SecMI's stat, SeDID_Stat and SeDID_NNs telling a "
                  "DDPM's members from held-out images, against its training epochs; the target's loss curve "
                  "beside it.")
    p.add_argument("--metrics", type=Path, nargs="+", required=True,
                   help="sedid-eval artifacts of members vs held-out images, one per kept model")
    p.add_argument("--epochs", type=float, nargs="+", required=True, help="training epochs of each, in order")
    p.add_argument("--model", type=Path, required=True, help="the target's train-ddpm artifact (its curve.png)")


def _pick(images, n: int, how: str, seed: int):
    import numpy as np

    from diffsec.errors import DiffsecError

    if n < 0 or n > len(images):
        raise DiffsecError(f"--n {n}: the set holds {len(images)} images")
    if not n:
        return np.arange(len(images))
    if how == "first":
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(len(images), n, replace=False))


def _scheduler_config(where: str) -> dict:
    """The DDPM pipeline's scheduler config, read before any weights (the grid is checked first)."""
    from diffusers import DDPMScheduler

    from diffsec.errors import DiffsecError, first_line

    try:
        return dict(DDPMScheduler.from_pretrained(where, subfolder="scheduler").config)
    except Exception as e:  # noqa: BLE001 - diffusers raises many types for a bad directory
        raise DiffsecError(f"--model {where}: no readable DDPM scheduler ({first_line(e)})") from None


def run_score(args: argparse.Namespace) -> None:
    import numpy as np

    from diffsec.defense.jpeg import jpeg
    from diffsec.detect.score import ScoreConfig, score_images
    from diffsec.diffusion.inversion import alphas_cumprod
    from diffsec.errors import DiffsecError
    from diffsec.imageset import load_images
    from diffsec.models import checks, ddpm
    from diffsec.models.pipelines import resolve_pipeline

    checks.positive(args, "ckpt_every")
    cfg = ScoreConfig(args.k, list(args.t_secs), list(args.loss_ts), list(args.sweep_ks), args.sweep_t,
                      args.sweep_n, args.batch_size, args.seed)
    where = resolve_pipeline(str(args.model), "--model")
    images = load_images(args.images, "--images")["images"]
    idx = _pick(images, args.n, args.pick, args.seed)
    if not 0 <= args.jpeg <= 100:
        raise DiffsecError(f"--jpeg must be a quality in 1..100 (0 = none), got {args.jpeg}")
    abar = alphas_cumprod(_scheduler_config(where))
    try:
        cfg.check(len(abar))
    except ValueError as e:
        raise DiffsecError(str(e)) from None
    weights = ddpm.snapshot_dir(args.model, args.snapshot) if args.snapshot else where
    if args.snapshot and not weights.is_dir():
        raise DiffsecError(f"--snapshot {args.snapshot}: {args.model} holds no snapshot of that step")
    st = open_stage(args, "sedid-score")
    if args.snapshot:
        unet, _ = ddpm.open_artifact(args.model, st.device, args.snapshot)
    else:
        unet, _ = ddpm.load_ddpm(where, st.device, "--model")
    chosen = jpeg(images[idx], args.jpeg) if args.jpeg else images[idx]
    out = score_images(ddpm.unet_eps(unet.eval()), abar, chosen, cfg, st.device,
                       st.checkpoint(args.ckpt_every, model=weights, images=args.images))
    with st.artifact() as art:
        np.savez(art.file("scores.npz"), index=idx, t_secs=np.array(cfg.t_secs), loss_ts=np.array(cfg.loss_ts),
                 sweep_ks=np.array(cfg.sweep_ks), sweep_t=np.array(cfg.sweep_t), **out)
        art.extra.update(n_images=int(len(idx)), n_sweep=int(len(out["sweep"])))


def _scores(path: Path, flag: str) -> dict:
    from diffsec.cli.common import artifact_npz

    return artifact_npz(path, "scores.npz", flag, "sedid-score")


def run_eval(args: argparse.Namespace) -> None:
    import json

    import numpy as np

    from diffsec.detect.evaluate import evaluate
    from diffsec.detect.nn import NNConfig
    from diffsec.errors import DiffsecError
    from diffsec.models.classifier_fit import write_curves

    cfg = NNConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed)
    real, gen = _scores(args.real, "--real"), _scores(args.generated, "--generated")
    for key in ("t_secs", "loss_ts", "sweep_ks"):
        if not np.array_equal(real[key], gen[key]):
            raise DiffsecError(f"--real and --generated were scored on different {key} "
                               f"({real[key].tolist()} vs {gen[key].tolist()})")
    st = open_stage(args, "sedid-eval")
    st.add_inputs(real=args.real, generated=args.generated)
    try:
        metrics, test, curve = evaluate(real, gen, cfg, args.train_frac, args.val_frac, st.device)
    except ValueError as e:
        raise DiffsecError(str(e)) from None
    with st.artifact() as art:
        art.file("metrics.json").write_text(json.dumps({"label": args.label, **metrics}, indent=2, sort_keys=True))
        np.savez(art.file("roc.npz"), **test)
        write_curves(curve, art.path, "SeDID_NNs (validation accuracy selects the epoch)")
        art.extra["metrics"] = {"table2": metrics["table2"], "split": metrics["split"]}


def run_figures(args: argparse.Namespace) -> None:
    import json

    import numpy as np

    from diffsec.cli.common import positive
    from diffsec.detect import figures
    from diffsec.errors import DiffsecError
    from diffsec.imageset import load_images

    positive(n_images=args.n_images)
    f = args.eval / "metrics.json"
    if not f.is_file() or not (args.eval / "roc.npz").is_file():
        raise DiffsecError(f"--eval {args.eval}: not a sedid-eval artifact (no metrics.json / roc.npz)")
    m = json.loads(f.read_text())
    real, gen = _scores(args.real, "--real"), _scores(args.generated, "--generated")
    n = min(args.n_images, len(real["index"]), len(gen["index"]))
    real_img = load_images(args.real_images, "--real-images")["images"][real["index"][:n]]
    gen_img = load_images(args.generated_images, "--generated-images")["images"][gen["index"][:n]]
    t = int(m["table2"]["stat"]["t"])
    j = [int(x) for x in real["t_secs"]].index(t)
    with np.load(args.eval / "roc.npz") as z:
        roc = {k: z[k] for k in z.files}
    st = open_stage(args, "figure-sedid")
    st.add_inputs(eval=args.eval, real=args.real, generated=args.generated)
    with st.artifact() as art:
        if m["sweep"]:
            figures.step_sweep(m["sweep"], int(gen["sweep_t"]), art.file("step_sweep.png"))
        figures.over_t(m["table1"], art.file("stat_vs_t.png"), art.file("tpr_vs_t.png"))
        figures.roc_curves(roc, m["table2"], art.file("roc.png"))
        figures.image_grid(real_img, gen_img, real["maps"][:n, j], gen["maps"][:n, j], t, art.file("maps.png"))


def run_mia_figure(args: argparse.Namespace) -> None:
    import shutil

    from diffsec.detect import figures
    from diffsec.paper.sedid import mia_rows, read_mia_evals

    rows = mia_rows(read_mia_evals(args.metrics, args.epochs))
    curve = args.model / "curve.png"
    st = open_stage(args, "figure-sedid-mia")
    st.add_inputs(model=args.model, **{f"metrics_{i}": d for i, d in enumerate(args.metrics)})
    with st.artifact() as art:
        figures.mia_over_epochs(rows, list(args.epochs), art.file("auc_vs_epochs.png"))
        if curve.is_file():
            shutil.copyfile(curve, art.file("target_loss.png"))
