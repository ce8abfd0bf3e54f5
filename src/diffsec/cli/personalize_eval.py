"""`diffsec eval-ti`: DINO-style similarity, FID and CLIP score of textual-inversion samples."""

from __future__ import annotations

import argparse
from pathlib import Path

from diffsec.cli.common import add_common, open_stage


def register(sub) -> None:
    p = sub.add_parser(
        "eval-ti", help="SZT metrics of textual-inversion samples (per run, per training set)",
        description="For every run of a train-ti artifact: similarity of its generated images to the concept's "
        "CLEAN training images (mean pairwise cosine of backbone features, the paper's DINO similarity), FID "
        "between the same two sets, and CLIP score of each image against its prompt with the token removed. "
        "Then the mean over concepts per training set. Writes metrics.json.")
    p.add_argument("--generated", type=Path, required=True, help="generate-ti artifact directory")
    p.add_argument("--embeddings", type=Path, required=True, help="train-ti artifact directory (runs.json)")
    p.add_argument("--clean", type=Path, required=True, help="the clean concept image set the runs index")
    p.add_argument("--prompts", type=Path, required=True, help="the prompt templates generate-ti used")
    p.add_argument("--label", default="", help="name of the defense, stored in metrics.json")
    p.add_argument("--out", type=Path, required=True, help="artifact directory to write")
    g = p.add_argument_group("backbones (registry names; the tables record them)")
    g.add_argument("--backbone", default="resnet56-cifar10", help="similarity backbone (paper: dinov2)")
    g.add_argument("--backbone-weights", default="", help="its weights (file, dir or hub id)")
    g.add_argument("--fid-backbone", default="", help="FID backbone (default: the similarity backbone)")
    g.add_argument("--fid-weights", default="")
    g.add_argument("--clip-backbone", default="clip-tiny", help="CLIP model for the CLIP score")
    g.add_argument("--clip-weights", default="",
                   help="its weights: a train-clip dir (clip-tiny) or MODEL:PRETRAINED (clip, e.g. ViT-L-14:openai)")
    add_common(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    import json

    from tqdm import tqdm

    from diffsec.metrics.backbones import backbone_from_weights as backbone
    from diffsec.personalize.evaluate import average_over_concepts, evaluate_runs, load_inputs
    from diffsec.personalize.generate import load_templates

    files = {"runs": args.embeddings / "runs.json", "generated": args.generated / "images.npz", "clean": args.clean}
    runs, generated, clean = load_inputs(*files.values())
    templates = load_templates(args.prompts)
    st = open_stage(args, "eval-ti")
    sim = backbone(args.backbone, args.backbone_weights, st.device)
    fidb = backbone(args.fid_backbone, args.fid_weights, st.device) if args.fid_backbone else sim
    clip = backbone(args.clip_backbone, args.clip_weights, st.device)
    with tqdm(total=len(runs), desc="eval-ti", unit=" run") as bar:
        per_run = evaluate_runs(generated, runs, clean, templates, sim, fidb, clip, bar.update)
    per_set = average_over_concepts(per_run)
    st.add_inputs(**files, prompts=args.prompts)
    with st.artifact() as art:
        metrics = {"label": args.label, "backbones": {"dino": sim.name, "fid": fidb.name, "clip_score": clip.name},
                   "per_set": per_set, "per_run": per_run}
        art.file("metrics.json").write_text(json.dumps(metrics, indent=2))
        art.extra.update(per_set=per_set)
    print(f"eval-ti: {len(per_run)} runs, sets {sorted(per_set)} -> {args.out}")
