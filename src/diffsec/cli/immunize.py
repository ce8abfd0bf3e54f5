"""SPD stages (paper 003): one universal perturbation that immunizes many images against img2img
editing. spd-images picks the images and their train/test split, spd-fit fits delta_u on the
train split, spd-apply immunizes both splits (delta_u, random noise, or per-image PhotoGuard),
spd-edit edits a set with every prompt, spd-eval compares immunized edits with the clean ones,
figure-spd draws the paper's Figs. 1-3 and delta_u."""

from __future__ import annotations

import argparse
from pathlib import Path

from diffsec.cli.common import add_stage, json_arg, open_stage

OBJECTIVES, OPTIMIZERS = ("encoder", "pca+", "pca-"), ("pgd", "adam")
SPLITS = ("train", "test")


def _fit_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", type=Path, help="T2I world (its VAE is attacked): artifact or pipeline directory")
    p.add_argument("--objective", choices=OBJECTIVES, default="encoder", help="the loss minimised")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default="pgd", help="sign-PGD or Adam (paper Algs. 1, 2)")
    p.add_argument("--iters", type=int, default=500, help="iterations per eps (paper: 500)")
    p.add_argument("--batch-size", type=int, default=16, help="images per forward pass (the gradient is exact)")
    p.add_argument("--target", choices=("grey", "zero"), default="grey", help="the encoder objective's z_targ")
    p.add_argument("--schedule", choices=("photoguard", "fixed"), default="photoguard", help="step-size schedule")
    p.add_argument("--step-frac", type=float, default=1 / 3, help="first step as a share of eps (PhotoGuard: 1/3)")


def register(sub) -> None:
    p = add_stage(sub, "spd-images", run_images, "SPD's images and their train/test split",
                  "Draw --n images of a labelled set (seeded, class-stratified) and split them --train : rest, "
                  "both parts stratified. Writes train.npz and test.npz (images, labels, index into the source, "
                  "class names) and split.png.")
    p.add_argument("--data", type=Path, required=True, help="labelled npz image set (prepare-cifar10's test.npz)")
    p.add_argument("--n", type=int, default=100, help="images in all (paper: 100)")
    p.add_argument("--train", type=int, default=64, help="images delta_u is fitted on (paper: 64)")

    p = add_stage(sub, "spd-fit", run_fit, "fit SPD's universal perturbation delta_u on the train split",
                  "Fit one delta_u shared by every train image (diffsec.poison.universal.fit_universal) at each "
                  "--eps. Writes per eps delta-eps-<e>.npy (3 x H x W, [0, 1] pixel units), delta-eps-<e>.png, "
                  "loss-eps-<e>.csv and loss-eps-<e>.png; a killed run resumes at the next eps.")
    p.add_argument("--images", type=Path, required=True, help="spd-images artifact (its train.npz is fitted on)")
    p.add_argument("--eps", type=int, nargs="+", required=True, help="L-inf budgets in 1/255 (paper: 4 13 22 31 40)")
    _fit_flags(p)

    p = add_stage(sub, "spd-apply", run_apply, "immunize SPD's train and test images at one eps",
                  "Add a perturbation to every image of an spd-images artifact and round to uint8 within eps: "
                  "the universal delta_u of an spd-fit artifact, uniform random noise (the paper's Baseline, a "
                  "draw per image), or PhotoGuard's per-image encoder attack fitted here (the upper bound). "
                  "Writes train.npz and test.npz like spd-images, and delta.png.")
    p.add_argument("--images", type=Path, required=True, help="spd-images artifact")
    p.add_argument("--kind", choices=("universal", "random", "photoguard"), required=True)
    p.add_argument("--eps", type=int, required=True, help="L-inf budget in 1/255")
    p.add_argument("--delta", type=Path, help="spd-fit artifact (--kind universal)")
    _fit_flags(p)

    p = add_stage(sub, "spd-edit", run_edit, "img2img edits of SPD's images with every prompt",
                  "Edit every train and test image with every prompt ({class} is the image's class name) by an "
                  "SD-shaped img2img pipeline, image i seeded --seed + its source index (the same in every "
                  "condition). Writes edits.npz (train, test: P x N x H x W x 3 uint8; prompt names and texts) "
                  "and edits.png; a killed run resumes at the next batch.")
    p.add_argument("--model", type=Path, required=True, help="T2I world: artifact or pipeline directory")
    p.add_argument("--images", type=Path, required=True, help="spd-images or spd-apply artifact")
    p.add_argument("--prompts", type=json_arg, required=True, help='JSON {"P1": "text", ...}')
    p.add_argument("--strength", type=float, default=0.5, help="img2img strength (PhotoGuard's demo: 0.5)")
    p.add_argument("--guidance", type=float, default=7.5, help="classifier-free guidance scale")
    p.add_argument("--steps", type=int, default=50, help="scheduler steps (strength x steps are run)")
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument("--ckpt-every", type=int, default=1, help="checkpoint period (batches) for resume")

    p = add_stage(sub, "spd-eval", run_eval, "similarity of immunized edits to the clean edits",
                  "SSIM, PSNR, FSIM (native size) and VIFp (2x bicubic up-sampled below 41 px: vif_p[up2]) "
                  "between each edit of an immunized image and the clean image's edit with the same prompt and "
                  "seed, per prompt and split; lower = stronger immunization. Writes metrics.json.")
    p.add_argument("--edits", type=Path, required=True, help="spd-edit artifact of the immunized images")
    p.add_argument("--clean", type=Path, required=True, help="spd-edit artifact of the clean images")
    p.add_argument("--label", required=True, help="<condition>/eps-<e>: how the table finds it")
    p.add_argument("--column", required=True, help="the table column of the condition (Baseline, Ours, ...)")
    p.add_argument("--eps", type=int, required=True, help="the condition's budget in 1/255")

    p = add_stage(sub, "figure-spd", run_figures, "SPD's figures",
                  "Each metric against eps for Ours and Baseline on train (Fig. 1) and test (Fig. 2), the first "
                  "prompt's edits of one image as eps grows (Fig. 3: Baseline and Ours rows, eps 0 = clean) and "
                  "delta_u at every eps.")
    p.add_argument("--metrics", type=Path, nargs="+", required=True, help="spd-eval artifacts")
    p.add_argument("--clean-edits", type=Path, required=True, help="spd-edit artifact of the clean images")
    p.add_argument("--baseline-edits", type=Path, nargs="+", required=True, help="spd-edit artifacts, one per eps")
    p.add_argument("--ours-edits", type=Path, nargs="+", required=True, help="spd-edit artifacts, one per eps")
    p.add_argument("--fits", type=Path, nargs="+", required=True, help="spd-fit artifacts of Ours, one per eps")
    p.add_argument("--eps", type=int, nargs="+", required=True, help="the eps of each, in order (1/255)")
    p.add_argument("--image", type=int, default=0, help="test image of Fig. 3")


def _split(directory: Path, flag: str) -> dict:
    """{train: {...}, test: {...}} of an spd-images / spd-apply artifact, and the class names."""
    from diffsec.errors import DiffsecError
    from diffsec.imageset import load_imageset

    out = {}
    for s in SPLITS:
        f = directory / f"{s}.npz"
        if not f.is_file():
            raise DiffsecError(f"{flag} {directory}: not an spd-images or spd-apply artifact (no {s}.npz)")
        out[s] = load_imageset(f)
        if "index" not in out[s] or "class_name" not in out[s]:
            raise DiffsecError(f"{flag} {f}: no index / class_name rows (not written by spd-images)")
    return out


def run_images(args: argparse.Namespace) -> None:
    import numpy as np

    from diffsec.data import stratified_subset
    from diffsec.data.cifar import CLASSES
    from diffsec.errors import DiffsecError
    from diffsec.imageset import class_names, grid, load_labelled, save_imageset, save_png

    data = load_labelled(args.data, "--data")
    if not 0 < args.train < args.n:
        raise DiffsecError(f"--train {args.train} must lie between 1 and --n - 1 = {args.n - 1}")
    if args.n > len(data["labels"]):
        raise DiffsecError(f"--n {args.n}: --data holds {len(data['labels'])} images")
    names = class_names(data, CLASSES)
    picked = stratified_subset(data["labels"], args.n, args.seed)
    train = picked[stratified_subset(data["labels"][picked], args.train, args.seed + 1)]
    test = np.setdiff1d(picked, train)
    source = data.get("index", np.arange(len(data["labels"])))
    st = open_stage(args, "spd-images")
    st.add_inputs(data=args.data)
    with st.artifact() as art:
        for s, idx in (("train", train), ("test", test)):
            save_imageset(art.file(f"{s}.npz"), data["images"][idx], labels=data["labels"][idx], index=source[idx],
                          class_name=[names[int(k)] for k in data["labels"][idx]])
        save_png(art.file("split.png"), grid(np.concatenate([data["images"][train], data["images"][test]]), 10),
                 scale=2)
        art.extra.update(n_train=int(len(train)), n_test=int(len(test)),
                         per_class={s: np.bincount(data["labels"][i], minlength=len(names)).tolist()
                                    for s, i in (("train", train), ("test", test))})


def _budget(eps: int, step_frac: float):
    from diffsec.errors import DiffsecError
    from diffsec.poison import Budget

    if not 0 < eps <= 255:
        raise DiffsecError(f"--eps {eps}: must lie in 1..255 (units of 1/255)")
    if not 0 < step_frac <= 1:
        raise DiffsecError(f"--step-frac {step_frac}: must lie in (0, 1]")
    return Budget(eps, eps * step_frac, 255)


def _config(args: argparse.Namespace):
    from diffsec.poison.universal import UniversalConfig

    return UniversalConfig(objective=args.objective, optimizer=args.optimizer, iters=args.iters,
                           batch_size=args.batch_size, target=args.target, schedule=args.schedule, seed=args.seed)


def _vae(args: argparse.Namespace, device):
    from diffsec.errors import DiffsecError
    from diffsec.models.t2i import load_vae

    if args.model is None:
        raise DiffsecError("--model is required (the T2I world whose VAE is attacked)")
    return load_vae(args.model, device, "--model").requires_grad_(False)


def _delta_png(path, delta, eps01: float) -> None:
    """delta (3 x H x W, [0, 1] units) scaled so -eps..eps spans the full 0..255 range."""
    import numpy as np

    from diffsec.imageset import save_png

    d = np.asarray(delta, dtype=np.float64).transpose(1, 2, 0)
    save_png(path, ((d / eps01 + 1) * 127.5).round().clip(0, 255).astype(np.uint8), scale=4)


def run_fit(args: argparse.Namespace) -> None:
    import numpy as np
    import torch

    from diffsec import resume
    from diffsec.cli.common import positive
    from diffsec.errors import DiffsecError
    from diffsec.imageset import to_float
    from diffsec.poison.spd_figures import loss_curve
    from diffsec.poison.universal import fit_universal

    positive(iters=args.iters, batch_size=args.batch_size)
    cfg = _config(args)
    budgets = [_budget(e, args.step_frac) for e in args.eps]
    if len(set(args.eps)) != len(args.eps):
        raise DiffsecError(f"--eps {args.eps}: a budget listed twice")
    x01 = (to_float(_split(args.images, "--images")["train"]["images"]) + 1) / 2
    st = open_stage(args, "spd-fit")
    ckpt = st.checkpoint(1, images=args.images, model=args.model)
    vae = _vae(args, st.device)
    parts = resume.finished_parts(ckpt)
    for c, budget in list(enumerate(budgets))[len(parts):]:
        delta, curve = fit_universal(vae, x01, budget, cfg)
        parts.append({"delta": delta.cpu(), "curve": torch.from_numpy(curve)})
        resume.keep_part(ckpt, c, parts[-1], len(budgets))
    with st.artifact() as art:
        for e, budget, part in zip(args.eps, budgets, parts, strict=True):
            delta, curve = part["delta"].numpy(), part["curve"].numpy()
            np.save(art.file(f"delta-eps-{e}.npy"), delta)
            _delta_png(art.file(f"delta-eps-{e}.png"), delta, budget.eps01)
            art.file(f"loss-eps-{e}.csv").write_text("iter,mean_loss\n" + "".join(
                f"{k},{v:.8g}\n" for k, v in enumerate(curve)))
            loss_curve(curve, art.file(f"loss-eps-{e}.png"), f"{args.objective} + {args.optimizer}, eps {e}/255")
        art.extra.update(eps=list(args.eps), n_train=int(len(x01)),
                         final_loss={str(e): float(p["curve"][-1]) for e, p in zip(args.eps, parts, strict=True)},
                         linf_unit255={str(e): float(np.abs(p["delta"].numpy()).max() * 255)
                                       for e, p in zip(args.eps, parts, strict=True)})


def run_apply(args: argparse.Namespace) -> None:
    import numpy as np
    import torch

    from diffsec.errors import DiffsecError
    from diffsec.imageset import save_imageset, to_float
    from diffsec.poison.budget import distances
    from diffsec.poison.universal import apply_universal, photoguard_per_image, random_baseline

    budget = _budget(args.eps, args.step_frac)
    sets = _split(args.images, "--images")
    images = np.concatenate([sets[s]["images"] for s in SPLITS])
    delta_file = None
    if args.kind == "universal":
        if args.delta is None:
            raise DiffsecError("--kind universal needs --delta (an spd-fit artifact)")
        delta_file = args.delta / f"delta-eps-{args.eps}.npy"
        if not delta_file.is_file():
            raise DiffsecError(f"--delta {args.delta}: no delta at eps {args.eps}/255 (no {delta_file.name})")
        delta = torch.from_numpy(np.load(delta_file))
        if tuple(delta.shape) != (3, *images.shape[1:3]):
            raise DiffsecError(f"--delta {delta_file}: a {tuple(delta.shape)} perturbation does not fit "
                               f"{images.shape[1]} x {images.shape[2]} images")
    elif args.kind == "photoguard":
        from diffsec.cli.common import positive

        positive(iters=args.iters, batch_size=args.batch_size)
        cfg = _config(args)
    st = open_stage(args, "spd-apply")
    st.add_inputs(images=args.images, delta=delta_file, model=args.model if args.kind == "photoguard" else None)
    if args.kind == "random":
        delta = random_baseline((len(images), 3, *images.shape[1:3]), budget, args.seed)
    elif args.kind == "photoguard":
        delta, _ = photoguard_per_image(_vae(args, st.device), (to_float(images) + 1) / 2, budget, cfg)
    adv = apply_universal(images, delta.cpu(), budget)
    n_train = len(sets["train"]["images"])
    dist = distances(images, adv)
    with st.artifact() as art:
        for s, part in (("train", adv[:n_train]), ("test", adv[n_train:])):
            rows = {k: v for k, v in sets[s].items() if k != "images"}
            save_imageset(art.file(f"{s}.npz"), part, **rows)
        shown = delta if delta.ndim == 3 else delta[0]
        _delta_png(art.file("delta.png"), shown.cpu().numpy(), budget.eps01)
        art.extra.update(kind=args.kind, eps_unit255=args.eps, budget=budget.describe(),
                         max_linf_unit255=float(dist["linf_unit255"].max()),
                         mean_l2_unit01=float(dist["l2_unit01"].mean()))


def _pipeline(model: Path, device):
    from diffsec.errors import DiffsecError, first_line
    from diffsec.models.pipelines import resolve_pipeline
    from diffsec.models.t2i import load_pipeline

    where = resolve_pipeline(str(model), "--model")
    try:
        return load_pipeline(where, device, img2img=True)
    except Exception as e:  # noqa: BLE001 - diffusers raises many types for a bad directory
        raise DiffsecError(f"--model {model}: cannot load an img2img pipeline ({first_line(e)})") from None


def run_edit(args: argparse.Namespace) -> None:
    import numpy as np

    from diffsec.cli.common import positive
    from diffsec.errors import DiffsecError
    from diffsec.imageset import grid, save_png
    from diffsec.models.pipelines import resolve_pipeline
    from diffsec.poison.immunize import edit_images

    prompts = args.prompts
    if not (isinstance(prompts, dict) and prompts and all(isinstance(v, str) for v in prompts.values())):
        raise DiffsecError(f'--prompts must be a non-empty JSON object {{"P1": "text", ...}}, got {prompts!r}')
    if not 0 < args.strength <= 1:
        raise DiffsecError(f"--strength {args.strength}: must lie in (0, 1]")
    positive(steps=args.steps, batch_size=args.batch_size, ckpt_every=args.ckpt_every)
    if args.steps * args.strength < 1:
        raise DiffsecError(f"--steps {args.steps} x --strength {args.strength} runs no denoising step")
    resolve_pipeline(str(args.model), "--model")
    sets = _split(args.images, "--images")
    images = np.concatenate([sets[s]["images"] for s in SPLITS])
    index = np.concatenate([sets[s]["index"] for s in SPLITS]).astype(np.int64)
    classes = [str(c) for s in SPLITS for c in sets[s]["class_name"]]
    st = open_stage(args, "spd-edit")
    ckpt = st.checkpoint(args.ckpt_every, images=args.images, model=args.model)
    pipe = _pipeline(args.model, st.device)
    edits = edit_images(pipe, images, list(prompts.values()), classes, [args.seed + int(i) for i in index],
                        args.strength, args.guidance, args.steps, args.batch_size, ckpt)
    n_train = len(sets["train"]["images"])
    with st.artifact() as art:
        np.savez(art.file("edits.npz"), train=edits[:, :n_train], test=edits[:, n_train:],
                 prompt_names=np.array(list(prompts)), prompts=np.array(list(prompts.values())),
                 index_train=sets["train"]["index"], index_test=sets["test"]["index"])
        k = min(8, len(images))
        save_png(art.file("edits.png"), grid(np.concatenate([images[:k], *edits[:, :k]]), k), scale=2)
        art.extra.update(n_train=n_train, n_test=int(len(images) - n_train), prompts=dict(prompts))


def _edits(path: Path, flag: str) -> dict:
    from diffsec.cli.common import artifact_npz

    return artifact_npz(path, "edits.npz", flag, "spd-edit")


def run_eval(args: argparse.Namespace) -> None:
    import json

    import numpy as np

    from diffsec.errors import DiffsecError
    from diffsec.poison.immunize import similarity

    ed, clean = _edits(args.edits, "--edits"), _edits(args.clean, "--clean")
    for key in ("prompt_names", "prompts", "index_train", "index_test"):
        if not np.array_equal(ed[key], clean[key]):
            raise DiffsecError(f"--edits and --clean differ in {key} ({ed[key].tolist()} vs {clean[key].tolist()})")
    if ed["train"].shape != clean["train"].shape or ed["test"].shape != clean["test"].shape:
        raise DiffsecError(f"--edits and --clean hold edits of other shapes ({ed['train'].shape} vs "
                           f"{clean['train'].shape})")
    st = open_stage(args, "spd-eval")
    st.add_inputs(edits=args.edits, clean=args.clean)
    out, se = {}, {}
    for s in SPLITS:
        out[s], se[s] = {}, {}
        for p, name in enumerate(ed["prompt_names"].tolist()):
            m = similarity(ed[s][p], clean[s][p])
            out[s][name] = {k: float(np.mean(v)) for k, v in m.items()}
            # standard error of each mean over the split's images (sd with n - 1 / sqrt(n))
            se[s][name] = {k: float(np.std(v, ddof=1) / np.sqrt(len(v))) for k, v in m.items() if len(v) > 1}
    with st.artifact() as art:
        art.file("metrics.json").write_text(json.dumps(
            {"label": args.label, "column": args.column, "eps": args.eps, "metrics": out, "se": se,
             "prompts": dict(zip(ed["prompt_names"].tolist(), ed["prompts"].tolist(), strict=True)),
             "n": {s: int(ed[s].shape[1]) for s in SPLITS}}, indent=2, sort_keys=True))
        art.extra.update(label=args.label, n_train=int(ed["train"].shape[1]), n_test=int(ed["test"].shape[1]))


def run_figures(args: argparse.Namespace) -> None:
    import numpy as np

    from diffsec.errors import DiffsecError
    from diffsec.poison import spd_figures
    from diffsec.tables import read_measurement

    n = len(args.eps)
    if not len(args.baseline_edits) == len(args.ours_edits) == len(args.fits) == n:
        raise DiffsecError(f"--eps gives {n} values: need as many --baseline-edits, --ours-edits and --fits")
    evals = []
    for d in args.metrics:
        try:
            m = read_measurement(d)
            evals.append((m["column"], int(m["eps"]), m["metrics"]))
        except (OSError, KeyError, ValueError) as e:
            raise DiffsecError(f"--metrics {d}: not an spd-eval artifact ({e})") from None
    clean = _edits(args.clean_edits, "--clean-edits")
    if not 0 <= args.image < clean["test"].shape[1]:
        raise DiffsecError(f"--image {args.image}: the test split holds {clean['test'].shape[1]} images")
    rows = {"Baseline": [_edits(d, "--baseline-edits")["test"][0, args.image] for d in args.baseline_edits],
            "Ours": [_edits(d, "--ours-edits")["test"][0, args.image] for d in args.ours_edits]}
    deltas = []
    for e, d in zip(args.eps, args.fits, strict=True):
        f = d / f"delta-eps-{e}.npy"
        if not f.is_file():
            raise DiffsecError(f"--fits {d}: no delta at eps {e}/255")
        deltas.append(np.load(f))
    st = open_stage(args, "figure-spd")
    st.add_inputs(clean_edits=args.clean_edits, **{f"metrics_{i}": d for i, d in enumerate(args.metrics)})
    with st.artifact() as art:
        for split, fig in (("train", "fig1_train"), ("test", "fig2_test")):
            spd_figures.metrics_vs_eps(evals, split, art.file(f"{fig}.png"))
        spd_figures.edits_vs_eps(clean["test"][0, args.image], rows, list(args.eps),
                                 str(clean["prompts"][0]), art.file("fig3_edits.png"))
        spd_figures.deltas(deltas, list(args.eps), art.file("delta_u.png"))
