"""`diffsec benchmarks` (Snakemake's per-job benchmark files) and the throughput benchmarks
`bench-ti`, `bench-sampling`, `bench-sedid` and `bench-spd`, each printed as a Markdown table for the README."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from diffsec.device import DTYPES


def _bench(sub, name: str, func, summary: str, description: str, model: str):
    """A throughput benchmark's parser: --model, --json, --device, --threads."""
    p = sub.add_parser(name, help=summary, description=description)
    p.add_argument("--model", required=True, help=model)
    p.add_argument("--json", type=Path, default=None, help="also write the rows here")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads, 0 = library default")
    p.set_defaults(func=func)
    return p


def register(sub) -> None:
    p = sub.add_parser("benchmarks", help="per-stage wall time and peak memory as a Markdown table",
                       description="Read every benchmarks/**/*.tsv that Snakemake wrote (one per job) and "
                       "print a Markdown table: job, wall seconds, peak RSS (MiB), mean CPU load. Under warm "
                       "start Snakemake measures only the thin client's memory: --manifests reads what each "
                       "stage recorded itself instead.")
    p.add_argument("dir", type=Path, nargs="?", default=Path("benchmarks"))
    p.add_argument("--by-rule", action="store_true", help="one row per rule (benchmark folder): jobs, summed and "
                   "longest job time")
    p.add_argument("--manifests", type=Path, default=None, metavar="RESULTS",
                   help="instead: one row per stage from the artifact manifests under RESULTS (jobs, largest "
                   "peak RSS, summed CPU s, as each stage measured itself)")
    p.set_defaults(func=run)

    p = _bench(sub, "bench-ti", run_ti, "batched textual-inversion throughput (run-steps/s) vs runs per batch",
               "Time train-ti steps with R runs per batch (R=1 is one run at a time) on a T2I pipeline and a "
               "concept set with masks; prints a Markdown table and writes JSON.", "SD pipeline dir or train-t2i "
               "artifact, or 'sd15-shape' for Stable Diffusion 1.5's architecture with random weights (built once "
               "into --workdir)")
    p.add_argument("--images", type=Path, required=True, help="concept set (prepare-dreambooth concepts.npz)")
    p.add_argument("--runs", type=int, nargs="+", default=[1, 4, 16, 64], help="batch sizes R")
    p.add_argument("--steps", type=int, default=20, help="timed steps per R (after 3 warm-up steps)")
    p.add_argument("--resolution", type=int, default=0, help="resize the concept images to this size "
                   "(512 for SD 1.5); 0 = as prepared")
    p.add_argument("--dtype", choices=DTYPES, default="float32",
                   help="dtype of the frozen VAE and UNet (the text encoder stays float32)")
    p.add_argument("--workdir", type=Path, default=Path("results/bench/sd15-shape"),
                   help="where --model sd15-shape is saved once and reloaded for every R")

    p = _bench(sub, "bench-sampling", run_sampling, "pixel DDPM sampling throughput (images/s, DDPM-T and DDIM)",
               "Time reverse steps of a pixel DDPM at several batch sizes and report images per second for "
               "ancestral DDPM (all T steps) and DDIM (k steps).",
               "train-ddpm artifact dir, or 'ddpm-cifar10-32' for that architecture with random weights")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 256])
    p.add_argument("--timed-steps", type=int, default=10, help="reverse steps timed per batch size")
    p.add_argument("--ddim-steps", type=int, nargs="+", default=[50, 100])


    p = _bench(sub, "bench-sedid", run_sedid, "SeDID scoring throughput (t-error maps per second)",
               "Time SeDID's stepwise-error maps (deterministic DDIM inversion up the grid of step k, one "
               "denoising step per t_SEC) on a pixel DDPM at several batch sizes.",
               "train-ddpm artifact dir, or 'ddpm-cifar10-32' for that architecture with random weights")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 64, 256])
    p.add_argument("--k", type=int, default=165, help="grid step (paper: 165)")
    p.add_argument("--t-secs", type=int, nargs="+", default=[165, 330, 495, 660, 825, 990])
    p.add_argument("--repeats", type=int, default=2, help="timed batches per batch size")

    p = _bench(sub, "bench-spd", run_spd, "SPD throughput: universal-PGD iterations/s and img2img edits/s",
               "Time one exact universal gradient (the mean over --n-images images, every SPD iteration's "
               "cost) at several minibatch sizes, and img2img edits at several batch sizes, on a T2I pipeline.",
               "SD pipeline dir or train-t2i artifact, or 'sd15-shape' for Stable Diffusion 1.5's architecture "
               "with random weights (built once into --workdir)")
    p.add_argument("--images", type=Path, required=True, help="imageset npz (e.g. spd-images train.npz)")
    p.add_argument("--n-images", type=int, default=64, help="images in one universal gradient (tiny: 64)")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 16, 64], help="gradient minibatch sizes")
    p.add_argument("--objective", choices=["encoder", "pca+", "pca-"], default="encoder")
    p.add_argument("--edit-batch-sizes", type=int, nargs="*", default=[10, 50], help="img2img batch sizes "
                   "(none: skip edits)")
    p.add_argument("--strength", type=float, default=0.5)
    p.add_argument("--guidance", type=float, default=7.5)
    p.add_argument("--steps", type=int, default=25, help="img2img scheduler steps (strength x steps are run)")
    p.add_argument("--resolution", type=int, default=0, help="resize the images to this size (512 for SD "
                   "1.5); 0 = as given")
    p.add_argument("--repeats", type=int, default=2, help="timed calls per size (after one warm-up)")
    p.add_argument("--workdir", type=Path, default=Path("results/bench/sd15-shape"),
                   help="where --model sd15-shape is saved once and reloaded")


def run(args: argparse.Namespace) -> None:
    from diffsec.tables import (
        benchmark_rows,
        benchmarks_markdown,
        manifest_rows,
        manifests_markdown,
        rule_rows,
        rules_markdown,
    )

    if args.manifests is not None:
        print(manifests_markdown(manifest_rows(args.manifests)))
    elif args.by_rule:
        print(rules_markdown(rule_rows(benchmark_rows(args.dir))))
    else:
        print(benchmarks_markdown(benchmark_rows(args.dir)))


def _threads(args: argparse.Namespace):
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    return torch


def _report(args: argparse.Namespace, title: str, table: str, rows: list[dict]) -> None:
    print(f"{title}\n{table}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


def _ti_model(args: argparse.Namespace) -> str:
    """The pipeline to time: --model, or SD 1.5's shape with random weights, saved once into --workdir."""
    from diffsec.models.pipelines import resolve_pipeline

    if args.model != "sd15-shape":
        return resolve_pipeline(args.model)
    if not (args.workdir / "model_index.json").is_file():
        from diffsec.models.shapes import sd15_shaped_pipeline
        from diffsec.models.t2i import save_pipeline

        save_pipeline(sd15_shaped_pipeline(args.workdir / "tokenizer-src"), args.workdir)
    return str(args.workdir)


def run_ti(args: argparse.Namespace) -> None:
    from diffsec.imageset import load_imageset
    from diffsec.models.t2i import load_pipeline
    from diffsec.personalize.bench import resize_concepts, ti_throughput
    from diffsec.tables import ti_throughput_markdown

    torch, model, data = _threads(args), _ti_model(args), load_imageset(args.images)
    if args.resolution:
        data = resize_concepts(data, args.resolution)
    rows = ti_throughput(lambda: load_pipeline(model, "cpu"), data, args.runs, args.steps,
                         device=args.device, dtype=getattr(torch, args.dtype))
    _report(args, f"{args.model}, {data['images'].shape[1]} px, {args.dtype}, {args.device}, "
            f"{torch.get_num_threads()} threads", ti_throughput_markdown(rows), rows)


def run_sampling(args: argparse.Namespace) -> None:
    from diffsec.diffusion.bench import sampling_throughput
    from diffsec.models.ddpm import build_scheduler, load_ddpm, n_params
    from diffsec.models.shapes import ddpm_cifar10_32_unet
    from diffsec.tables import sampling_markdown

    torch = _threads(args)
    unet, sched = (ddpm_cifar10_32_unet(), build_scheduler()) if args.model == "ddpm-cifar10-32" else \
        load_ddpm(args.model)
    rows = sampling_throughput(unet, dict(sched.config), args.batch_sizes, args.timed_steps, args.ddim_steps,
                               args.device)
    _report(args, f"{args.model}: {n_params(unet) / 1e6:.2f} M parameters, {args.device}, "
            f"{torch.get_num_threads()} threads", sampling_markdown(rows, args.ddim_steps), rows)


def run_sedid(args: argparse.Namespace) -> None:
    from diffsec.detect.bench import terror_throughput
    from diffsec.diffusion.inversion import alphas_cumprod
    from diffsec.errors import DiffsecError
    from diffsec.models.ddpm import build_scheduler, load_ddpm, n_params, unet_eps
    from diffsec.models.shapes import ddpm_cifar10_32_unet
    from diffsec.tables import markdown_table

    torch = _threads(args)
    unet, sched = (ddpm_cifar10_32_unet(), build_scheduler()) if args.model == "ddpm-cifar10-32" else \
        load_ddpm(args.model)
    unet = unet.to(args.device).eval()
    size = unet.config.sample_size
    try:
        rows = terror_throughput(unet_eps(unet), alphas_cumprod(dict(sched.config)).to(args.device), (3, size, size),
                                 args.batch_sizes, args.k, args.t_secs, args.repeats, args.device)
    except ValueError as e:
        raise DiffsecError(str(e)) from None
    table = markdown_table(["batch", "s / batch", "images / s", "model calls / image"],
                           [[str(r["batch"]), f"{r['s_per_batch']:.3f}", f"{r['images_per_s']:.2f}",
                             str(r["model_calls_per_image"])] for r in rows], "rrrr")
    _report(args, f"{args.model}: {n_params(unet) / 1e6:.2f} M parameters, {args.device}, "
            f"{torch.get_num_threads()} threads, k {args.k}, t_SEC {args.t_secs}", table, rows)


def run_spd(args: argparse.Namespace) -> None:
    import numpy as np

    from diffsec.defense.images import resize
    from diffsec.errors import DiffsecError
    from diffsec.imageset import load_imageset
    from diffsec.models.t2i import load_pipeline
    from diffsec.poison.bench import edit_throughput, universal_throughput
    from diffsec.tables import markdown_table

    torch = _threads(args)
    for name in ("n_images", "repeats", *(["resolution"] if args.resolution else [])):
        if getattr(args, name) < 1:
            raise DiffsecError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if min(args.batch_sizes + args.edit_batch_sizes) < 1:
        raise DiffsecError("batch sizes must be >= 1")
    images = load_imageset(args.images)["images"][:args.n_images]
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div(255)
    if args.resolution:
        x = resize(x * 255, (args.resolution, args.resolution)).clamp(0, 255).div(255)
    pipe = load_pipeline(_ti_model(args), args.device, img2img=True)
    pipe.vae.eval().requires_grad_(False)
    grads = universal_throughput(pipe.vae, x, args.batch_sizes, args.objective, args.repeats)
    size = x.shape[-1]
    table = markdown_table(["gradient batch", "images / iteration", "s / iteration", "iterations / s",
                            "image gradients / s"],
                           [[str(r["batch"]), str(r["n_images"]), f"{r['s_per_iter']:.3f}", f"{r['iters_per_s']:.2f}",
                             f"{r['image_grads_per_s']:.1f}"] for r in grads], "rrrrr")
    edits = []
    if args.edit_batch_sizes:
        u8 = (x.permute(0, 2, 3, 1) * 255).round().byte().numpy()
        edits = edit_throughput(pipe, u8, args.edit_batch_sizes, args.strength, args.guidance, args.steps,
                                max(1, args.repeats - 1))
        table += "\n\n" + markdown_table(["edit batch", "UNet steps", "s / batch", "edits / s"],
                                          [[str(r["batch"]), str(r["unet_steps"]), f"{r['s_per_batch']:.2f}",
                                            f"{r['edits_per_s']:.2f}"] for r in edits], "rrrr")
    _report(args, f"{args.model}: VAE {sum(p.numel() for p in pipe.vae.parameters()) / 1e6:.2f} M parameters, "
            f"{size} px, objective {args.objective}, {args.device}, {torch.get_num_threads()} threads", table,
            {"gradients": grads, "edits": edits})
