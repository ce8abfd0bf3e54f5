"""`diffsec eval-ti`: DINO-style similarity, FID and CLIP score of textual-inversion samples."""

from __future__ import annotations

import argparse
from pathlib import Path

from diffsec.cli.common import add_common, open_stage


def _similarity_backbone(group) -> None:
    """--backbone / --backbone-weights: the DINO-style similarity's feature extractor (both stages
    must name the same one: eval-ti's --centre comes from eval-ti-reference's)."""
    group.add_argument("--backbone", default="resnet56-cifar10", help="similarity backbone (paper: dinov2)")
    group.add_argument("--backbone-weights", default="", help="its weights (file, dir or hub id)")


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
    p.add_argument("--centre", type=Path, required=True,
                   help="the centring feature of dino_centred (eval-ti-reference's centre.npy, same backbone)")
    p.add_argument("--label", default="", help="name of the defense, stored in metrics.json")
    p.add_argument("--out", type=Path, required=True, help="artifact directory to write")
    g = p.add_argument_group("backbones (registry names; the tables record them)")
    _similarity_backbone(g)
    g.add_argument("--fid-backbone", default="", help="FID backbone (default: the similarity backbone)")
    g.add_argument("--fid-weights", default="")
    g.add_argument("--clip-backbone", default="clip-tiny", help="CLIP model for the CLIP score")
    g.add_argument("--clip-weights", default="",
                   help="its weights: a train-clip dir (clip-tiny) or MODEL:PRETRAINED (clip, e.g. ViT-L-14:openai)")
    add_common(p)
    p.set_defaults(func=run)

    p = sub.add_parser(
        "eval-ti-reference", help="floor and ceiling of the SZT similarity metric on real photos",
        description="Per concept, the DINO-style similarity (raw, and centred on the mean feature of --centre-n "
        "class-balanced images of --others, saved as centre.npy for eval-ti) of two real image sets to the "
        "concept's CLEAN photos: a floor (--n images of the concept's class from a "
        "labelled set such as CIFAR-10 test; class-balanced over all its classes when the class is not one of "
        "them) and a ceiling (each photo held out against the concept's others). Writes metrics.json.")
    p.add_argument("--clean", type=Path, required=True, help="the clean concept image set (concept, class_name)")
    p.add_argument("--others", type=Path, required=True, help="labelled image set for the floor (CIFAR-10 test.npz)")
    p.add_argument("--n", type=int, default=100, help="floor images per concept (default 100)")
    p.add_argument("--centre-n", type=int, default=1000,
                   help="class-balanced images of --others whose mean feature centres dino_centred (default 1000)")
    p.add_argument("--out", type=Path, required=True, help="artifact directory to write")
    _similarity_backbone(p.add_argument_group("backbone (a registry name; the tables record it)"))
    add_common(p)
    p.set_defaults(func=run_reference)


def run(args: argparse.Namespace) -> None:
    import json

    import numpy as np
    from tqdm import tqdm

    from diffsec.errors import DiffsecError
    from diffsec.metrics.backbones import backbone_from_weights as backbone
    from diffsec.personalize.evaluate import average_over_concepts, evaluate_runs, load_inputs
    from diffsec.personalize.generate import load_templates

    try:
        centre = np.load(args.centre, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise DiffsecError(f"--centre {args.centre}: not a .npy feature vector ({e})") from None
    if centre.ndim != 1:
        raise DiffsecError(f"--centre {args.centre}: expected one feature vector, got shape {centre.shape}")
    files = {"runs": args.embeddings / "runs.json", "generated": args.generated / "images.npz", "clean": args.clean}
    runs, generated, clean = load_inputs(*files.values())
    templates = load_templates(args.prompts)
    st = open_stage(args, "eval-ti")
    sim = backbone(args.backbone, args.backbone_weights, st.device)
    fidb = backbone(args.fid_backbone, args.fid_weights, st.device) if args.fid_backbone else sim
    clip = backbone(args.clip_backbone, args.clip_weights, st.device)
    with tqdm(total=len(runs), desc="eval-ti", unit=" run") as bar:
        per_run = evaluate_runs(generated, runs, clean, templates, sim, fidb, clip, centre, bar.update)
    per_set = average_over_concepts(per_run)
    st.add_inputs(**files, prompts=args.prompts, centre=args.centre)
    with st.artifact() as art:
        metrics = {"label": args.label, "backbones": {"dino": sim.name, "dino_centred": f"{sim.name}-centred",
                                                      "fid": fidb.name, "clip_score": clip.name},
                   "per_set": per_set, "per_run": per_run}
        art.file("metrics.json").write_text(json.dumps(metrics, indent=2))
        art.extra.update(per_set=per_set)
    print(f"eval-ti: {len(per_run)} runs, sets {sorted(per_set)} -> {args.out}")


def run_reference(args: argparse.Namespace) -> None:
    import json

    import numpy as np

    from diffsec.errors import DiffsecError
    from diffsec.imageset import load_classes, load_images
    from diffsec.metrics.backbones import backbone_from_weights as backbone
    from diffsec.models.captions import CIFAR10_CLASSES
    from diffsec.personalize.evaluate import centre_of, reference_levels

    if min(args.n, args.centre_n) < 1:
        raise DiffsecError(f"--n and --centre-n must be >= 1, got {args.n}, {args.centre_n}")
    clean = load_images(args.clean, "--clean")
    if not {"concept", "class_name"} <= set(clean):
        raise DiffsecError(f"--clean {args.clean}: needs concept and class_name arrays (a prepare-dreambooth set)")
    others, names = load_classes(args.others, "--others", CIFAR10_CLASSES)
    st = open_stage(args, "eval-ti-reference")
    sim = backbone(args.backbone, args.backbone_weights, st.device)
    centre = centre_of(others, names, sim, args.centre_n, args.seed)
    levels = reference_levels(clean, others, names, sim, centre, args.n, args.seed)
    st.add_inputs(clean=args.clean, others=args.others)
    with st.artifact() as art:
        np.save(art.file("centre.npy"), centre)
        metrics = {"label": "reference", "backbones": {"dino": sim.name, "dino_centred": f"{sim.name}-centred"},
                   "n_centre": min(args.centre_n, len(others["images"])), **levels}
        art.file("metrics.json").write_text(json.dumps(metrics, indent=2))
        art.extra.update(mean=levels["mean"])
    m = levels["mean"]
    print(f"eval-ti-reference: {levels['n_concepts']} concepts, floor {m['floor']:.3f} (centred "
          f"{m['floor_centred']:.3f}), ceiling {m['ceiling']:.3f} ({m['ceiling_centred']:.3f}) -> {args.out}")
