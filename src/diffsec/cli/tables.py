"""Table stages: read measurement artifacts, write results/tables/<name>.csv (+ .md). The cells are
assembled in the library (`diffsec.tables.worlds_cells`, `diffsec.paper.szt`, `diffsec.paper.invisible`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from diffsec.paper import invisible, sau, sedid, spd, szt  # table shapes and cells: no heavy imports
from diffsec.tables import measurements_by_label, read_measurement, worlds_cells, write_table


def json_arg(text: str):
    """argparse type for a JSON value (here, not diffsec.cli.common's: table stages import no model code)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not valid JSON: {text!r} ({e.msg})") from None


def _table(sub, name: str, func, summary: str, description: str, metrics: str | None = None):
    """A table stage's parser: what every table records beside its cells, and where it writes."""
    p = sub.add_parser(name, help=summary, description=description)
    if metrics:
        p.add_argument("--metrics", type=Path, nargs="+", required=True, help=metrics)
    p.add_argument("--profile", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True, help="CSV path (a .md is written beside it)")
    p.set_defaults(func=func)
    return p


def register(sub) -> None:
    p = _table(sub, "table-worlds", run_worlds, "the world-model sanity table (worlds.csv)",
               "Collect the foundation's measurements (classifier accuracies, DDPM FID against the reference "
               "FID of real train images, text-to-image class fidelity) into one long-format table.")
    p.add_argument("--resnet", type=Path, nargs="+", required=True, help="classifier-resnet artifacts")
    p.add_argument("--mnist", type=Path, required=True, help="train-mnist-classifier artifact")
    p.add_argument("--ddpm-fid", type=Path, required=True, help="eval-fid artifact: DDPM samples vs test")
    p.add_argument("--train-fid", type=Path, required=True, help="eval-fid artifact: train images vs test")
    p.add_argument("--t2i-class", type=Path, required=True, help="eval-class artifact on the T2I samples")
    p.add_argument("--t2i-vae", type=Path, help="eval-class --vae-roundtrip artifact: the T2I VAE's ceiling")

    p = _table(sub, "table-szt", run_szt, "one SZT table (szt, szt_prompts, szt_timestep, szt_masking, "
               "szt_dilation)", "Fill one of the SZT paper's tables (or our prompt-form ablation) from eval-ti "
               "artifacts, one per column, with the paper's number beside each cell.",
               "eval-ti artifacts; each one's label names its column's defense (+ /class for class-noun prompts)")
    p.add_argument("--table", required=True, choices=list(szt.TABLES))
    p.add_argument("--reference", type=Path, help="eval-ti-reference artifact: the DINO floor and ceiling rows")

    p = _table(sub, "table-invisible", run_invisible, "InvisibleDiffusion Tables I and II (invisible_diffusion.csv)",
               "Fill InvisibleDiffusion's Tables I (DDPM) and II (DDIM) from backdoor-eval artifacts labelled "
               "<attack>/<sampler>, with the paper's number beside each cell. Datasets not in --datasets (CelebA "
               "on these machines) are listed as not run, with the reason.", "backdoor-eval artifacts")
    p.add_argument("--datasets", nargs="+", default=["cifar10"], choices=list(invisible.DATASETS), help="rows run")
    p.add_argument("--ordinary", type=json_arg, default=[],
                   help="JSON list of samplers (ddpm, ddim) with an ordinary-sampler column")

    p = _table(sub, "table-invisible-ablation", run_invisible_ablation,
               "InvisibleDiffusion ablations (invisible_ablation.csv)", "Lambda sweep (Fig. 4, DDPM and DDIM), "
               "training-steps sweep (Fig. 5, DDIM) and the one-image target (Table III) from backdoor-eval "
               "artifacts.", "backdoor-eval artifacts")
    p.add_argument("--lambdas", type=float, nargs="+", required=True, help="lambda values of the sweep")
    p.add_argument("--base-lam", type=float, default=0.5, help="lambda of the base attack's own model")
    p.add_argument("--snapshots", type=int, nargs="+", required=True, help="base attack snapshot steps, final last")
    p.add_argument("--ordinary", type=json_arg, default=[],
                   help="JSON list of samplers (ddpm, ddim) whose lambda sweep also runs the ordinary sampler")

    p = _table(sub, "table-invisible-take", run_invisible_take,
               "InvisibleDiffusion In-D take sweep (invisible_take.csv)",
               "ASR, A-Prec and benign FID of the In-D attack (W/o Fixed Image, DDIM) at each snapshot step of "
               "each fine-tuning variant, beside the unbackdoored world on the same noise (0 steps), from "
               "backdoor-eval artifacts.", "backdoor-eval artifacts")
    p.add_argument("--variants", type=json_arg, required=True,
                   help="JSON object: variant name -> its fine-tuning settings (shown in the notes)")
    p.add_argument("--snapshots", type=int, nargs="+", required=True, help="snapshot steps, the final step last")


    _table(sub, "table-sedid", run_sedid, "SeDID Tables 1 and 2 and the controls (sedid.csv)",
           "Fill SeDID's Table 1 (Stat per t_SEC) and Table 2 (loss attack, Stat, NNs) from the sedid-eval "
           "artifact labelled ddpm, and the controls table from those labelled jpeg and ddim; Tiny-ImageNet "
           "and CelebA are listed as not run, with the paper's values.", "sedid-eval artifacts")

    p = _table(sub, "table-sedid-mia", run_sedid_mia, "SeDID's scores as a membership-inference attack (sedid_mia.csv)",
               "One column per kept model of the member-trained DDPM: the loss attack, SecMI's stat, SeDID_Stat "
               "and SeDID_NNs telling its members from held-out images (no paper values).",
               "sedid-eval artifacts of members vs held-out images, one per kept model")
    p.add_argument("--epochs", type=float, nargs="+", required=True,
                   help="training epochs of each --metrics artifact's model, in the same order")

    _table(sub, "table-spd", run_spd, "SPD Table 1: universal immunization against img2img edits (spd.csv)",
           "Rows prompt x Train/Test, columns Baseline (random noise), Ours, the other universal methods and "
           "per-image PhotoGuard, each per eps and as the mean over eps, from spd-eval artifacts; the paper's "
           "values beside the Baseline and Ours means (lower = stronger immunization).", "spd-eval artifacts")

    p = _table(sub, "table-claims", run_claims, "the papers' headline claims judged on our tables (claims.csv)",
               "Evaluate each claim of diffsec.paper.claims over the given result tables: its margin (how far its "
               "left side exceeds its right side, worst case over its cells), the paper's margin where the paper "
               "printed those cells, a standard error where the cells are shares, AUCs or carry their own se, "
               "and the verdict (holds / fails / within noise / not run). A claim whose table is not given, or "
               "whose cell has no value, is not run.")
    p.add_argument("--tables", type=Path, nargs="+", required=True, help="results/tables/*.csv to judge")
    p.add_argument("--figure", type=Path, default=None, help="also draw the verdicts here (PNG: one row per claim, "
                   "our margin with its 1.96 se interval beside the paper's)")

    p = _table(sub, "table-agreement", run_agreement, "rank agreement of our cells with the papers' (agreement.csv)",
               "Spearman's rho (and its two-sided p) between our values and the papers' printed values, per table, "
               "metric and backbone, over the measured cells that have a paper value, derived average rows left out "
               "(diffsec.paper.agreement). Cells of one table share rows and columns: the p-values are optimistic.")
    p.add_argument("--tables", type=Path, nargs="+", required=True, help="results/tables/*.csv to compare")

    _table(sub, "table-sau", run_sau, "SAU Tables 3-4 and the slice's measurements (sau.csv)",
           "Rows Unpoisoned / Poisoned Unet / Finetune Reversal / Concept Erasure / Spatial Attention Unlearning, "
           "columns Pixel and Style: removal accuracy (1 - ASR on triggered prompts), ASR on triggered and clean "
           "prompts, CLIP-IQA, the CLIP's zero-shot accuracy, ResNet class fidelity, PSNR / SSIM against the "
           "Unpoisoned generation, colourfulness and SAU's mask IoUs, with the paper's Tables 3-4 beside them; "
           "the detectors' held-out accuracy (sau_detectors) and one row per SAU setting (sau_sweep). Each "
           "sau-eval artifact names its own backdoor, method, variant and prompt set.", "sau-eval artifacts")


def run_sau(args: argparse.Namespace) -> None:
    from diffsec.errors import DiffsecError

    def read(path: Path) -> dict:  # a sau-eval artifact or its metrics.json
        return read_measurement(path) if path.is_dir() else read_measurement(path.parent, path.name)

    try:
        cells = sau.table_cells([read(d) for d in args.metrics], args.profile, args.seed)
    except (KeyError, ValueError, TypeError) as e:
        raise DiffsecError(f"--metrics: not sau-eval artifacts ({e})") from None
    write_table(cells, args.out)


def run_spd(args: argparse.Namespace) -> None:
    from diffsec.errors import DiffsecError

    try:
        evals = [read_measurement(d) for d in args.metrics]
        cells = spd.table_cells(evals, args.profile, args.seed)
    except (KeyError, ValueError, TypeError, StopIteration) as e:
        raise DiffsecError(f"--metrics: not spd-eval artifacts ({e})") from None
    write_table(cells, args.out)


def run_worlds(args: argparse.Namespace) -> None:
    vae = read_measurement(args.t2i_vae) if args.t2i_vae else None
    resnets = [read_measurement(d, "eval.json") for d in args.resnet]
    cells = worlds_cells(resnets, read_measurement(args.mnist, "eval.json"), read_measurement(args.ddpm_fid),
                         read_measurement(args.train_fid), read_measurement(args.t2i_class), vae, args.profile,
                         args.seed)
    write_table(cells, args.out)


def run_szt(args: argparse.Namespace) -> None:
    reference = read_measurement(args.reference) if args.reference else None
    write_table(szt.table_cells(args.table, measurements_by_label(args.metrics), args.profile, args.seed,
                                reference), args.out)


def _samplers(values) -> list[str]:
    from diffsec.errors import DiffsecError

    if not isinstance(values, list) or not set(values) <= {"ddpm", "ddim"}:
        raise DiffsecError(f"--ordinary {values!r}: must be a JSON list of ddpm / ddim")
    return values


def run_invisible(args: argparse.Namespace) -> None:
    cells = invisible.table_cells(measurements_by_label(args.metrics), args.datasets, args.profile, args.seed,
                                  _samplers(args.ordinary))
    write_table(cells, args.out)


def run_invisible_ablation(args: argparse.Namespace) -> None:
    cells = invisible.ablation_cells(measurements_by_label(args.metrics), args.lambdas, args.base_lam,
                                     args.snapshots, args.profile, args.seed, _samplers(args.ordinary))
    write_table(cells, args.out)


def run_invisible_take(args: argparse.Namespace) -> None:
    from diffsec.errors import DiffsecError

    if not isinstance(args.variants, dict) or not args.variants:
        raise DiffsecError(f"--variants {args.variants!r}: must be a non-empty JSON object of variants")
    cells = invisible.take_cells(measurements_by_label(args.metrics), args.variants, args.snapshots, args.profile,
                                 args.seed)
    write_table(cells, args.out)


def run_sedid(args: argparse.Namespace) -> None:
    from diffsec.errors import DiffsecError

    evals = measurements_by_label(args.metrics)
    if sedid.MAIN not in evals:
        raise DiffsecError(f"--metrics: no sedid-eval artifact labelled {sedid.MAIN!r} (got {sorted(evals)})")
    write_table(sedid.table_cells(evals, args.profile, args.seed), args.out)


def run_sedid_mia(args: argparse.Namespace) -> None:
    evals = sedid.read_mia_evals(args.metrics, args.epochs)
    write_table(sedid.mia_cells(evals, args.epochs, args.profile, args.seed), args.out)


def _read_tables(paths: list[Path]) -> list[dict[str, str]]:
    from diffsec.errors import DiffsecError
    from diffsec.tables import read_table

    missing = [str(t) for t in paths if not t.is_file()]
    if missing:
        raise DiffsecError(f"--tables: no such table {', '.join(missing)}")
    return [r for t in paths for r in read_table(t)]


def run_agreement(args: argparse.Namespace) -> None:
    from diffsec.paper.agreement import agreement_cells, agreement_markdown

    cells = agreement_cells(_read_tables(args.tables), args.profile, args.seed)
    write_table(cells, args.out, agreement_markdown(cells, args.profile))


def run_claims(args: argparse.Namespace) -> None:
    from diffsec.paper.claims import CLAIMS, claim_cells, claims_figure, claims_markdown, evaluate, index

    cells = index(_read_tables(args.tables))
    verdicts = [evaluate(c, cells) for c in CLAIMS]
    write_table(claim_cells(verdicts, args.profile, args.seed), args.out, claims_markdown(verdicts, args.profile))
    if args.figure is not None:
        claims_figure(verdicts, args.figure)
