"""`diffsec backdoor-train` and `backdoor-sample`: backdoor a pixel DDPM, then sample it from
clean and from triggered noise (InvisibleDiffusion, TrojDiff, BadDiffusion)."""

import argparse
import dataclasses
from pathlib import Path

from diffsec.cli.common import add_common, json_arg, open_stage
from diffsec.errors import DiffsecError


def register(sub) -> None:
    p = sub.add_parser("backdoor-train", help="backdoor fine-tuning of a pixel DDPM world",
                       description="Fine-tune all layers of a pretrained DDPM on a clean/poisoned mix with the "
                       "InvisibleDiffusion (Eq. 16), TrojDiff or BadDiffusion objective. Writes the backdoored "
                       "DDPMPipeline, the trigger (attack.json, trigger.safetensors), the target images, the training "
                       "curve, the EMA snapshots and a clean | triggered sample grid.")
    p.add_argument("--model", type=Path, required=True, help="train-ddpm artifact (the pretrained world)")
    p.add_argument("--data", type=Path, required=True,
                   help="prepare-cifar10 or prepare-celeba artifact: the world's own data (clean mix, In-D targets)")
    p.add_argument("--mnist", type=Path, help="prepare-mnist artifact (Out-D / one-image targets)")
    p.add_argument("--mist", type=Path, help="fetch-source mist_target artifact (the 'mist' blend trigger)")
    p.add_argument("--out", type=Path, required=True)
    g = p.add_argument_group("attack")
    g.add_argument("--method", choices=["invisible", "trojdiff", "baddiffusion"], required=True)
    g.add_argument("--trigger", choices=["gaussian", "uniform", "poisson", "free", "mist", "grey_box", "box_outline"],
                   required=True, help="fixed noise image, 'free' (N(0,I) per sample), the MIST picture, "
                   "BadDiffusion's filled grey corner box (BOX_14) or the earlier white box outline")
    g.add_argument("--target", required=True,
                   help="cifar10:<class> | celeba:<class> | mnist:<digit> | mnist:<digit>:<index>")
    g.add_argument("--lam", type=float, default=0.5, help="InvisibleDiffusion mixing ratio lambda")
    g.add_argument("--gamma", type=float, default=0.6, help="TrojDiff blend std gamma")
    g.add_argument("--trigger-seed", type=int, default=0, help="seed of the fixed noise trigger image")
    g.add_argument("--box-size", type=int, default=14, help="BadDiffusion box side in px")
    g = p.add_argument_group("fine-tuning")
    g.add_argument("--steps", type=int, default=1000)
    g.add_argument("--batch-size", type=int, default=32)
    g.add_argument("--lr", type=float, default=2e-4)
    g.add_argument("--poison-rate", type=float, default=0.1, help="share of each batch that is poisoned")
    g.add_argument("--ema-decay", type=float, default=0.995)
    g.add_argument("--snapshots", type=json_arg, default=[],
                   help="JSON list of steps at which to save the EMA weights (training-steps ablation)")
    g.add_argument("--ckpt-every", type=int, default=250, help="steps between checkpoints (0: none)")
    add_common(p)
    p.set_defaults(func=run_train)
    _register_sample(sub)


def _register_sample(sub) -> None:
    p = sub.add_parser("backdoor-sample", help="sample a (backdoored) DDPM from clean and triggered noise",
                       description="Draw samples from standard noise (benign functionality) and, for a backdoored "
                       "model or with --trigger, from triggered noise with the attack's reverse chain or the "
                       "ordinary sampler, by DDPM (all T ancestral steps) or DDIM (eta 0). Also records a few "
                       "trajectories.")
    p.add_argument("--model", type=Path, required=True, help="backdoor-train or train-ddpm artifact")
    p.add_argument("--trigger", type=Path,
                   help="backdoor-train artifact whose triggered noise to sample the model from (default: the "
                   "model's own; given for a clean world, the benign baseline of that attack)")
    p.add_argument("--chain", choices=["attacker", "ordinary"], default="attacker",
                   help="reverse chain of the triggered set: the attack's own (kappa-corrected) chain, or the "
                   "ordinary DDPM / DDIM sampler started from the triggered noise")
    p.add_argument("--no-clean", action="store_true",
                   help="leave out the clean set (sampled by the run with the attacker chain / the benign row)")
    p.add_argument("--snapshot", type=int, default=0, help="sample the EMA snapshot of this step (0 = final)")
    p.add_argument("--sampler", choices=["ddpm", "ddim"], required=True)
    p.add_argument("--steps", type=int, default=100, help="DDIM steps (ddpm always runs all T)")
    p.add_argument("--n", type=int, default=256, help="samples from clean noise, and as many from triggered noise")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--trajectory", type=int, default=4, help="samples whose trajectories are kept (Fig. 2)")
    p.add_argument("--frames", type=int, default=10, help="snapshots per trajectory")
    p.add_argument("--ckpt-every", type=int, default=1, help="batches between checkpoints (0: none)")
    p.add_argument("--out", type=Path, required=True)
    add_common(p)
    p.set_defaults(func=run_sample)


def _refuse(checks: list[tuple[bool, str]]) -> None:
    """The first failed check as the run's one-line error."""
    for bad, msg in checks:
        if bad:
            raise DiffsecError(msg)


def _check_train(a: argparse.Namespace) -> None:
    from diffsec.backdoor.targets import parse

    snaps, dataset = a.snapshots if isinstance(a.snapshots, list) else [None], parse(a.target)[0]
    _refuse([(a.steps < 1, f"--steps {a.steps}: must be at least 1"),
             (a.batch_size < 2, f"--batch-size {a.batch_size}: needs room for a clean and a poisoned sample (>= 2)"),
             (not a.lr > 0, f"--lr {a.lr}: must be positive"),
             (not 0 < a.poison_rate < 1, f"--poison-rate {a.poison_rate}: must lie in (0, 1)"),
             (not 0 <= a.ema_decay < 1, f"--ema-decay {a.ema_decay}: must lie in [0, 1)"),
             (a.method == "invisible" and not 0 < a.lam < 1, f"--lam {a.lam}: must lie in (0, 1)"),
             (a.method == "trojdiff" and not 0 < a.gamma < 1, f"--gamma {a.gamma}: must lie in (0, 1)"),
             (a.ckpt_every < 0, f"--ckpt-every {a.ckpt_every}: must be 0 (none) or positive"),
             (any(type(s) is not int or not 0 < s <= a.steps for s in snaps),
              f"--snapshots {a.snapshots}: must be a list of steps in 1..{a.steps}"),
             *[(p is not None and not p.is_dir(), f"--{k} {p}: no such artifact directory")
               for k, p in (("model", a.model), ("data", a.data), ("mnist", a.mnist), ("mist", a.mist))],
             (a.trigger == "mist" and a.mist is None, "--trigger mist needs --mist (the mist_target artifact)"),
             (dataset == "mnist" and a.mnist is None, f"--target {a.target} needs --mnist (prepare-mnist)")])


def run_train(args: argparse.Namespace) -> None:
    from diffsec.backdoor import train as bt
    from diffsec.backdoor.finetune import FinetuneConfig

    _check_train(args)
    st = open_stage(args, "backdoor-train")
    spec = bt.BackdoorSpec(*(getattr(args, f.name) for f in dataclasses.fields(bt.BackdoorSpec)))
    cfg = FinetuneConfig(args.steps, args.batch_size, args.lr, args.poison_rate, args.ema_decay, args.seed,
                         tuple(args.snapshots))
    world = bt.load_world(args.model, args.data, args.mnist, args.mist, st.device)
    ckpt = st.checkpoint(args.ckpt_every, model=args.model / "pipeline", data=args.data, mnist=args.mnist,
                         mist=args.mist)
    result = bt.backdoor(world, spec, cfg, ckpt=ckpt, device=st.device)
    with st.artifact() as art:
        art.extra.update(bt.write_backdoored(result, art.path, f"backdoor {args.method} ({args.target})"))


def run_sample(args: argparse.Namespace) -> None:
    from diffsec.backdoor import sampling as bs
    from diffsec.models.ddpm import open_artifact, snapshot_dir

    _refuse([(args.n < 1, f"--n {args.n}: must be at least 1"),
             (args.batch_size < 1, f"--batch-size {args.batch_size}: must be at least 1"),
             (args.steps < 1, f"--steps {args.steps}: must be at least 1"),
             (args.trajectory < 0, f"--trajectory {args.trajectory}: must be 0 (none) or positive"),
             (args.frames < 1, f"--frames {args.frames}: must be at least 1"),
             (args.ckpt_every < 0, f"--ckpt-every {args.ckpt_every}: must be 0 (none) or positive")])
    st = open_stage(args, "backdoor-sample")
    unet, sched = open_artifact(args.model, st.device, args.snapshot)   # a bad --model / --snapshot fails here
    T = sched.config.num_train_timesteps
    _refuse([(args.sampler == "ddim" and args.steps > T, f"--steps {args.steps}: DDIM takes at most T = {T} steps")])
    source = args.trigger or args.model
    _refuse([(args.trigger is not None and not (args.trigger / "attack.json").is_file(),
              f"--trigger {args.trigger}: not a backdoor-train artifact (no attack.json)")])
    attack = bs.read_attack(source)
    _refuse([(args.no_clean and attack is None, f"--no-clean: {source} has no trigger, so nothing is left to sample"),
             (attack is not None and tuple(attack.shape) != (unet.config.in_channels, unet.config.sample_size,
                                                              unet.config.sample_size),
              f"--trigger {source}: its trigger is {tuple(attack.shape) if attack else ''}, the model samples "
              f"{unet.config.sample_size} px")])
    cfg = bs.SampleConfig(args.sampler, args.steps, args.n, args.batch_size, args.trajectory, args.frames, args.seed,
                          args.chain, not args.no_clean)
    ckpt = st.checkpoint(args.ckpt_every, model=snapshot_dir(args.model, args.snapshot),
                         trigger=source / "attack.json" if attack is not None else None,
                         trigger_image=source / "trigger.safetensors" if attack is not None and attack.phi is not None
                         else None)
    sets = bs.sample_sets(unet, sched, attack, cfg, ckpt=ckpt, device=st.device)
    with st.artifact() as art:
        bs.write_samples(sets, art.path)
        art.extra.update({"n": args.n, "sets": list(sets), "sampler": args.sampler, "chain": args.chain,
                          "trigger_source": str(source) if attack is not None else None,
                          "steps": T if args.sampler == "ddpm" else args.steps})
