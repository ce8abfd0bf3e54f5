"""`diffsec backdoor-train` and `backdoor-sample`: backdoor a pixel DDPM, then sample it from
clean and from triggered noise (InvisibleDiffusion, TrojDiff, BadDiffusion)."""

from __future__ import annotations

import argparse
from pathlib import Path

from diffsec.cli.common import add_common, json_arg, params_of, setup


def register(sub) -> None:
    p = sub.add_parser("backdoor-train", help="backdoor fine-tuning of a pixel DDPM world",
                       description="Fine-tune all layers of a pretrained DDPM on a clean/poisoned mix "
                       "with the InvisibleDiffusion (Eq. 16), TrojDiff or BadDiffusion objective. Writes "
                       "the backdoored DDPMPipeline, the trigger (attack.json, trigger.safetensors), the "
                       "target images, the training curve and a clean | triggered sample grid.")
    p.add_argument("--model", type=Path, required=True, help="train-ddpm artifact (the pretrained world)")
    p.add_argument("--data", type=Path, required=True,
                   help="prepare-cifar10 or prepare-celeba artifact: the world's own data (clean mix, In-D targets)")
    p.add_argument("--mnist", type=Path, help="prepare-mnist artifact (Out-D / one-image targets)")
    p.add_argument("--mist", type=Path, help="fetch-source mist_target artifact (the 'mist' blend trigger)")
    p.add_argument("--out", type=Path, required=True)
    g = p.add_argument_group("attack")
    g.add_argument("--method", choices=["invisible", "trojdiff", "baddiffusion"], required=True)
    g.add_argument("--trigger", choices=["gaussian", "uniform", "poisson", "free", "mist", "box"], required=True,
                   help="fixed noise image, 'free' (N(0,I) per sample), the MIST picture, or a corner box")
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
    g.add_argument("--ckpt-every", type=int, default=250)
    add_common(p)
    p.set_defaults(func=run_train)

    p = sub.add_parser("backdoor-sample", help="sample a (backdoored) DDPM from clean and triggered noise",
                       description="Draw samples from standard noise (benign functionality) and, for a "
                       "backdoored model, from triggered noise with the attack's reverse chain, by DDPM "
                       "(all T ancestral steps) or DDIM (eta 0). Also records a few trajectories.")
    p.add_argument("--model", type=Path, required=True, help="backdoor-train or train-ddpm artifact")
    p.add_argument("--snapshot", type=int, default=0, help="sample the EMA snapshot of this step (0 = final)")
    p.add_argument("--sampler", choices=["ddpm", "ddim"], required=True)
    p.add_argument("--steps", type=int, default=100, help="DDIM steps (ddpm always runs all T)")
    p.add_argument("--n", type=int, default=256, help="samples from clean noise, and as many from triggered noise")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--trajectory", type=int, default=4, help="samples whose trajectories are kept (Fig. 2)")
    p.add_argument("--frames", type=int, default=10, help="snapshots per trajectory")
    p.add_argument("--out", type=Path, required=True)
    add_common(p)
    p.set_defaults(func=run_sample)


def _load_sets(args):
    """The data's train and test splits, its dataset name (from its manifest), held-out MNIST."""
    from diffsec.artifact import read_manifest
    from diffsec.errors import DiffsecError
    from diffsec.imageset import load_imageset

    try:
        name = read_manifest(args.data)["stage"].removeprefix("prepare-")
    except (OSError, ValueError, KeyError):
        raise DiffsecError(f"--data {args.data}: not a prepare-cifar10 / prepare-celeba artifact") from None
    train = load_imageset(args.data / "train.npz")
    test = load_imageset(args.data / "test.npz")
    mnist = load_imageset(args.mnist / "heldout.npz") if args.mnist else None
    return train, test, name, mnist


def _trigger_image(args, res: int):
    import numpy as np
    from PIL import Image

    from diffsec.backdoor import triggers
    from diffsec.errors import DiffsecError

    if args.trigger == "free":
        return None
    if args.trigger in triggers.FIXED_NOISE:
        return triggers.noise_image(args.trigger, (3, res, res), args.trigger_seed)
    if args.trigger == "box":
        return triggers.box_trigger(res, args.box_size)
    if args.mist is None:
        raise DiffsecError("--trigger mist needs --mist (the fetch-source mist_target artifact)")
    files = sorted(p for p in args.mist.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if not files:
        raise DiffsecError(f"{args.mist} holds no image file")
    return triggers.image_trigger(np.asarray(Image.open(files[0]).convert("RGB")), res)


def run_train(args: argparse.Namespace) -> None:
    from diffsec.artifact import artifact_dir
    from diffsec.backdoor.attacks import Attack, save_attack
    from diffsec.backdoor.finetune import finetune
    from diffsec.backdoor.targets import load_target
    from diffsec.backdoor.triggers import stealth_norms
    from diffsec.errors import DiffsecError
    from diffsec.imageset import save_imageset, to_float
    from diffsec.models import ddpm

    if any(not 0 < s <= args.steps for s in args.snapshots):
        raise DiffsecError(f"--snapshots {args.snapshots}: every step must lie in 1..{args.steps}")
    device = setup(args)
    unet, sched = ddpm.load_ddpm(str(args.model / "pipeline"), device)
    res = unet.config.sample_size
    train, test, data_name, mnist = _load_sets(args)
    target = load_target(args.target, data_train=train, data_test=test, data_name=data_name,
                         mnist_heldout=mnist, resolution=res)
    try:
        attack = Attack(args.method, args.trigger, _trigger_image(args, res), lam=args.lam, gamma=args.gamma,
                        shape=(3, res, res))
    except ValueError as e:
        raise DiffsecError(str(e)) from None
    ckpt_dir = args.out.with_name(args.out.name + ".ckpt")
    with artifact_dir(args.out, "backdoor-train", params_of(args)) as art:
        art.device = str(device)
        art.add_input("model", args.model / "pipeline"), art.add_input("data", args.data)
        if args.mnist:
            art.add_input("mnist", args.mnist)
        if args.mist:
            art.add_input("mist", args.mist)

        def snapshot(step, ema):
            ema.save_pretrained(art.file(f"snapshots/step-{step}"), safe_serialization=True)

        ema, curve = finetune(unet, sched, to_float(train["images"]), to_float(target.train), attack,
                              steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                              poison_rate=args.poison_rate, ema_decay=args.ema_decay, seed=args.seed,
                              ckpt_dir=ckpt_dir, ckpt_every=args.ckpt_every, snapshots=tuple(args.snapshots),
                              on_snapshot=snapshot, device=device)
        ddpm.save_ddpm(ema, sched, art.file("pipeline"))
        chain = attack.chain()
        meta = save_attack(attack, art.path, target=target.spec, target_kind=target.kind,
                           target_dataset=target.dataset, target_label=target.label,
                           one_image=target.one_image, chain_gamma=chain.gamma, chain_kappa=chain.kappa,
                           trigger_std=attack.free_std if attack.trigger == "free" else None,
                           stealth=stealth_norms(attack.added()), snapshots=list(args.snapshots))
        save_imageset(art.file("target.npz"), target.reference)
        ddpm.write_curve(curve, art.file("curve.csv"), art.file("curve.png"), f"backdoor {args.method} ({args.target})")
        _grid(ema, sched, attack, art.file("samples.png"), args.seed, device)
        art.extra.update({"attack": meta, "final_loss": curve[-1], "n_target_train": int(len(target.train))})
    ddpm.clear_checkpoint(ckpt_dir)


def _grid(unet, sched, attack, path, seed: int, device) -> None:
    """Row pairs: 16 DDIM-50 samples from clean noise above 16 from triggered noise."""
    import numpy as np
    import torch

    from diffsec.diffusion.chain import sample_chain
    from diffsec.imageset import grid, save_png, to_uint8
    from diffsec.models.ddpm import unet_eps

    gen = torch.Generator().manual_seed(seed + 1)
    clean = torch.randn(16, *attack.shape, generator=gen)
    x_c, _ = sample_chain(unet_eps(unet), dict(sched.config), clean.to(device), None, "ddim", 50, gen)
    x_t, _ = sample_chain(unet_eps(unet), dict(sched.config), attack.x_T(16, gen).to(device), attack.chain(),
                          "ddim", 50, gen)
    save_png(path, grid(np.concatenate([to_uint8(x_c), to_uint8(x_t)]), nrow=8), scale=3)


def run_sample(args: argparse.Namespace) -> None:
    import numpy as np
    import torch
    from tqdm.auto import tqdm

    from diffsec.artifact import artifact_dir
    from diffsec.backdoor.attacks import load_attack
    from diffsec.diffusion.chain import sample_chain
    from diffsec.errors import DiffsecError
    from diffsec.imageset import grid, save_imageset, save_png, to_uint8
    from diffsec.models.ddpm import load_ddpm, unet_eps

    device = setup(args)
    unet, sched = load_ddpm(str(args.model / "pipeline"), device)
    if args.snapshot:
        from diffusers import UNet2DModel

        snap = args.model / "snapshots" / f"step-{args.snapshot}"
        if not snap.is_dir():
            raise DiffsecError(f"{args.model} has no snapshot of step {args.snapshot}")
        unet = UNet2DModel.from_pretrained(str(snap)).to(device).eval()
    attack = load_attack(args.model)[0] if (args.model / "attack.json").exists() else None
    eps_model, cfg = unet_eps(unet), dict(sched.config)
    every = max(1, (sched.config.num_train_timesteps if args.sampler == "ddpm" else args.steps) // args.frames)
    with artifact_dir(args.out, "backdoor-sample", params_of(args)) as art:
        art.device = str(device)
        art.add_input("model", args.snapshot and args.model / "snapshots" / f"step-{args.snapshot}"
                      or args.model / "pipeline")
        gen = torch.Generator().manual_seed(args.seed)   # CPU noise: same samples on any device
        sets = {"clean": None} if attack is None else {"clean": None, "trigger": attack}
        grids = []
        for name, att in sets.items():
            out, traj = [], []
            for i in tqdm(range(0, args.n, args.batch_size), desc=f"{name} {args.sampler}"):
                b = min(args.batch_size, args.n - i)
                x_T = (torch.randn(b, 3, unet.config.sample_size, unet.config.sample_size, generator=gen)
                       if att is None else att.x_T(b, gen))
                keep = every if i == 0 and args.trajectory else 0
                x0, frames = sample_chain(eps_model, cfg, x_T.to(device), att.chain() if att else None,
                                          args.sampler, args.steps, gen, progress=False, trajectory_every=keep)
                if keep:
                    traj = [x_T[:args.trajectory]] + [f[:args.trajectory] for f in frames]
                out.append(to_uint8(x0))
            images = np.concatenate(out)
            save_imageset(art.file(f"{name}.npz"), images)
            if traj:
                # frames as [-1, 1] float16 (x_T and noisy states leave the image range)
                np.savez_compressed(art.file(f"trajectory_{name}.npz"),
                                    frames=torch.stack(traj).numpy().astype(np.float16))
            grids.append(images[:32])
        save_png(art.file("samples.png"), grid(np.concatenate(grids), nrow=8), scale=3)
        art.extra.update({"n": args.n, "sets": list(sets), "sampler": args.sampler,
                          "steps": sched.config.num_train_timesteps if args.sampler == "ddpm" else args.steps})
