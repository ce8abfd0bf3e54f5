"""`diffsec benchmarks`: summarize Snakemake benchmark files (one per rule) for the README."""

from __future__ import annotations

import argparse
import csv
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("benchmarks", help="per-stage wall time and peak memory as a Markdown table",
                       description="Read every benchmarks/**/*.tsv that Snakemake wrote (one per job) and "
                       "print a Markdown table: job, wall seconds, peak RSS (MiB), mean CPU load.")
    p.add_argument("dir", type=Path, nargs="?", default=Path("benchmarks"))
    p.set_defaults(func=run)

    p = sub.add_parser("bench-ti", help="batched textual-inversion throughput (run-steps/s) vs runs per batch",
                       description="Time train-ti steps with R runs per batch (R=1 is one run at a time) on a "
                       "T2I pipeline and a concept set with masks; prints a Markdown table and writes JSON.")
    p.add_argument("--model", required=True, help="SD pipeline dir or train-t2i artifact, or 'sd15-shape' "
                   "for Stable Diffusion 1.5's architecture with random weights (built once into --workdir)")
    p.add_argument("--images", type=Path, required=True, help="concept set (prepare-dreambooth concepts.npz)")
    p.add_argument("--runs", type=int, nargs="+", default=[1, 4, 16, 64], help="batch sizes R")
    p.add_argument("--steps", type=int, default=20, help="timed steps per R (after 3 warm-up steps)")
    p.add_argument("--json", type=Path, default=None, help="also write the rows here")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads, 0 = library default")
    p.add_argument("--resolution", type=int, default=0, help="resize the concept images to this size "
                   "(512 for SD 1.5); 0 = as prepared")
    p.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default="float32",
                   help="dtype of the frozen VAE and UNet (the text encoder stays float32)")
    p.add_argument("--workdir", type=Path, default=Path("results/bench/sd15-shape"),
                   help="where --model sd15-shape is saved once and reloaded for every R")
    p.set_defaults(func=run_ti)

    p = sub.add_parser("bench-sampling", help="pixel DDPM sampling throughput (images/s, DDPM-T and DDIM)",
                       description="Time reverse steps of a pixel DDPM at several batch sizes and report "
                       "images per second for ancestral DDPM (all T steps) and DDIM (k steps).")
    p.add_argument("--model", required=True,
                   help="train-ddpm artifact dir, or 'ddpm-cifar10-32' for that architecture with random weights")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 256])
    p.add_argument("--timed-steps", type=int, default=10, help="reverse steps timed per batch size")
    p.add_argument("--ddim-steps", type=int, nargs="+", default=[50, 100])
    p.add_argument("--json", type=Path, default=None, help="also write the rows here")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads, 0 = library default")
    p.set_defaults(func=run_sampling)


def rows(directory: Path) -> list[tuple[str, float, float, float]]:
    out = []
    for f in sorted(directory.rglob("*.tsv")):
        with open(f, newline="") as fh:
            recs = list(csv.DictReader(fh, delimiter="\t"))
        if not recs:
            continue
        r = recs[-1]  # the latest run of this job

        def num(key: str) -> float:
            try:
                return float(r.get(key, "nan"))
            except ValueError:  # Snakemake writes "-" where it could not measure
                return float("nan")

        out.append((str(f.relative_to(directory).with_suffix("")), num("s"), num("max_rss"), num("mean_load")))
    return out


def run(args: argparse.Namespace) -> None:
    from diffsec.errors import DiffsecError

    table = rows(args.dir)
    if not table:
        raise DiffsecError(f"no benchmark files under {args.dir}")
    print("| job | wall (s) | peak RSS (MiB) | mean CPU load (%) |\n|---|---:|---:|---:|")
    for name, s, rss, load in sorted(table, key=lambda t: -t[1]):
        print(f"| {name} | {s:.1f} | {rss:.0f} | {load:.0f} |")
    print(f"| **total (sequential)** | {sum(t[1] for t in table):.1f} | | |")


def run_ti(args: argparse.Namespace) -> None:
    import json

    import torch

    from diffsec.imageset import load_imageset
    from diffsec.models.pipelines import resolve_pipeline
    from diffsec.models.t2i import load_pipeline
    from diffsec.personalize.bench import resize_concepts, ti_throughput

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.model == "sd15-shape":
        from diffsec.models.shapes import sd15_shaped_pipeline
        from diffsec.models.t2i import save_pipeline

        if not (args.workdir / "model_index.json").is_file():
            save_pipeline(sd15_shaped_pipeline(args.workdir / "tokenizer-src"), args.workdir)
        model = str(args.workdir)
    else:
        model = resolve_pipeline(args.model)
    data = load_imageset(args.images)
    if args.resolution:
        data = resize_concepts(data, args.resolution)
    rows = ti_throughput(lambda: load_pipeline(model, "cpu"), data, args.runs, args.steps,
                         device=args.device, dtype=getattr(torch, args.dtype))
    mem = any("peak_gib" in r for r in rows)
    print(f"{args.model}, {data['images'].shape[1]} px, {args.dtype}, {args.device}, {torch.get_num_threads()} threads")
    print("| runs per batch R | s / step | run-steps / s | speed-up vs one at a time |" + (" peak GiB |" if mem else "")
          + "\n|---:|---:|---:|---:|" + ("---:|" if mem else ""))
    for r in rows:
        if r.get("out_of_memory"):
            print(f"| {r['runs']} | out of memory | | |" + (" |" if mem else ""))
            continue
        print(f"| {r['runs']} | {r['seconds_per_step']:.4f} | {r['run_steps_per_s']:.1f} | "
              f"{r['speedup_vs_one_at_a_time']:.2f} |" + (f" {r['peak_gib']:.1f} |" if mem else ""))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


def run_sampling(args: argparse.Namespace) -> None:
    import json

    import torch

    from diffsec.diffusion.bench import sampling_throughput
    from diffsec.models.shapes import ddpm_cifar10_32_unet
    from diffsec.models.ddpm import DDPMConfig, build_ddpm, load_ddpm, n_params

    if args.threads:
        torch.set_num_threads(args.threads)
    sched_config = dict(build_ddpm(DDPMConfig(channels=[32], attention=[False]))[1].config)
    if args.model == "ddpm-cifar10-32":
        unet = ddpm_cifar10_32_unet()
    else:
        unet, sched = load_ddpm(str(Path(args.model) / "pipeline"))
        sched_config = dict(sched.config)
    rows = sampling_throughput(unet, sched_config, args.batch_sizes, args.timed_steps, args.ddim_steps, args.device)
    ks = args.ddim_steps
    print(f"{args.model}: {n_params(unet) / 1e6:.2f} M parameters, {args.device}, {torch.get_num_threads()} threads")
    print("| batch | s / step | DDPM-1000 images/s | " + " | ".join(f"DDIM-{k} images/s" for k in ks) + " |")
    print("|---:|---:|---:|" + "---:|" * len(ks))
    for r in rows:
        print(f"| {r['batch']} | {r['s_per_step']:.4f} | {r['ddpm_images_per_s']:.3f} | "
              + " | ".join(f"{r[f'ddim{k}_images_per_s']:.2f}" for k in ks) + " |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
