# Shared helpers: config -> CLI flags, the source files a stage runs, paths of the paper slices
# (their plans, SZT_PLAN and INV_PLAN, come from src/diffsec/plan/ via the Snakefile), and the
# one set of wildcard constraints every rule shares.
import json
import re
import shlex

from diffsec.codedeps import stage_code
from diffsec.paper import invisible as INV_SHAPE
from diffsec.paper.szt import TABLES, column_spec, columns_of, defenses_of
from diffsec.plan.sau import (
    DEFAULT as SAU_DEFAULT,
    DETECTOR as SAU_DETECTOR,
    METHODS as SAU_METHODS,
)
from diffsec.plan.sau import UNLEARN as SAU_UNLEARN, model_name

CONDA_ENV = "../../envs/diffsec.yaml"
SRC = Path(workflow.basedir) / "src"
PROFILE = config["profile"]
SEED = config["seed"]


def code(stage):
    """The files `diffsec <stage>` runs (its CLI module's import closure, src/diffsec/codedeps.py),
    declared as inputs so editing one reruns the stages that run it."""
    return [str(p) for p in stage_code(SRC, stage)]


def flags(**kw):
    """Python values -> shell-quoted CLI flags: lists become JSON, False/None/'' drop the flag."""
    out = []
    for k, v in kw.items():
        flag = f"--{k.replace('_', '-')}"
        if v is True:
            out.append(flag)
        elif v is False or v is None or v == "":
            continue
        elif isinstance(v, (list, dict)):
            out += [flag, shlex.quote(json.dumps(v))]
        else:
            out += [flag, shlex.quote(str(v))]
    return " ".join(out)


def words(items):
    """Values -> shell-quoted words (one CLI argument each)."""
    return " ".join(shlex.quote(str(i)) for i in items)


def named(pairs):
    """{name: path} -> shell-quoted NAME=PATH arguments."""
    return words(f"{n}={p}" for n, p in pairs.items())


def alternatives(names):
    """A wildcard constraint matching exactly these names."""
    return "|".join(re.escape(str(n)) for n in names)


RUN = flags(seed=SEED, device=config["device"])


def gpu_per_job(wildcards=None):
    """What a GPU-capable job declares as `resources: gpu`: 1 where it may get a GPU (Snakemake
    then runs as many at once as `--resources gpu=N` allows; Slurm asks for one), 0 where none can
    be had (device cpu, or auto on a machine without an NVIDIA device), so that on a CPU machine
    those jobs run side by side, as many as --cores allows, instead of one at a time. Under a
    cluster executor (Slurm) jobs run on other hosts: 1 unless device is cpu. Config `gpu_jobs`
    0 / 1 decides instead. A function, evaluated per job: the executor is known only once the DAG
    is built, after the Snakefile is read."""
    from diffsec.device import gpu_jobs

    cluster = workflow.non_local_exec or workflow.remote_exec
    return gpu_jobs(config["device"], config["gpu_jobs"], cluster=cluster)


def _mirror():
    """'auto' -> ../shared/mirror beside the workflow (absolute, so --directory works); '' -> none."""
    from diffsec.sources import default_mirror

    m = config["mirror"]
    if m == "auto":
        found = default_mirror(workflow.basedir)
        return str(found) if found else "none"
    return str(Path(m).resolve()) if m else "none"


MIRROR = _mirror()
from diffsec.catalog import SOURCES

SOURCE_NAMES = list(SOURCES)


def source_entry(name):
    """One source's catalog entry as text: a fetch_source param, so editing the catalog reruns
    only the fetches whose entry changed (and what reads them)."""
    from dataclasses import asdict

    from diffsec.catalog import SOURCES

    entry = asdict(SOURCES[name])
    return " ".join(f"{k}={v}" for k, v in sorted(entry.items()) if k != "description")


# dataset -> its pixel DDPM world's config (CelebA's only when invisible.datasets names it)
DDPM_WORLDS = {"cifar10": "ddpm", "celeba": "ddpm_celeba"}


def ddpm_world(wildcards):
    return config["worlds"][DDPM_WORLDS[wildcards.dataset]]


# results/models/<world> -> its config key; a world whose config names a published build
# (`published: world_<name>`, a catalog source) is installed from it instead of trained here.
WORLD_KEYS = {
    "ddpm-cifar10": "ddpm",
    "t2i-cifar10": "t2i",
    "clip-cifar10": "clip",
    "mnist-classifier": "mnist_classifier",
}
PUBLISHED = {
    world: config["worlds"][key]["published"]
    for world, key in WORLD_KEYS.items()
    if config["worlds"][key].get("published")
}


def world_flags(cfg):
    """A world's training flags: its config block without the install switch."""
    return flags(**{k: v for k, v in cfg.items() if k != "published"})


METRICS = config["metrics"]


def _resnet_artifact(name):
    """Our CIFAR ResNet artifacts stand for a backbone's weights; other backbones name theirs."""
    return (
        f"results/models/{name}"
        if name in ("resnet56-cifar10", "resnet20-cifar10")
        else []
    )


def backbone_inputs(wildcards):
    """The tiny profile's backbone is our ResNet-56 artifact; the paper's comes from config."""
    return _resnet_artifact(METRICS["backbone"])


# Params functions take wildcards only: Snakemake does not record params derived from `input`,
# so a config value read inside such a function would never trigger a rerun when it changes.
def backbone_flags(wildcards):
    weights = backbone_inputs(wildcards) or METRICS["backbone_weights"]
    return flags(backbone=METRICS["backbone"], backbone_weights=weights)


# ---- SZT (paper 004): training sets, defenses, and the flags of their stages ----
SZT = config["szt"]
POISONS = SZT["poisons"]
SETS = SZT_PLAN.sets
DEFENSES = SZT["defenses"]
PURIFIERS = ["jpeg", "regen", "pdmpure", "advclean"]
CONCEPTS_NPZ = "results/data/szt-concepts/concepts.npz"
SZT_REFERENCE = "results/metrics/szt/reference"
# every table that holds paper values (what table_agreement compares)
PAPER_TABLE_FILES = [
    *(f"results/tables/{t}.csv" for t in TABLES),
    "results/tables/invisible_diffusion.csv",
    "results/tables/invisible_ablation.csv",
    "results/tables/sedid.csv",
    "results/tables/spd.csv",
    "results/tables/sau.csv",
]
FIG = SZT["figures"]
SZT_FIGURES = [
    f"results/figures/szt/{f}"
    for f in ("perturbations", "loss-per-t", "ti-grid", "ssm")
]


def set_dir(name, purifier="none"):
    """The artifact directory holding training set `name` after `purifier`."""
    if purifier != "none":
        return f"results/purify/{purifier}/{name}"
    return "results/data/szt-concepts" if name == "clean" else f"results/poison/{name}"


def set_npz(name, purifier="none"):
    npz = "concepts" if (name, purifier) == ("clean", "none") else "images"
    return f"{set_dir(name, purifier)}/{npz}.npz"


def _purifier_model(wildcards):
    """The purifier's model as a DAG input: its world artifact, unless `szt.purify.<purifier>.model`
    names one (a hub id or local dir: no DAG input, purify_set passes it with the other flags, so a
    change of it is a params change)."""
    if SZT["purify"][wildcards.purifier].get("model"):
        return []
    models = {
        "regen": "results/models/t2i-cifar10",
        "pdmpure": "results/models/ddpm-cifar10",
    }
    return models.get(wildcards.purifier, [])


def ti_sets(wildcards):
    p = SZT_PLAN.purifier[wildcards.defense]
    return [set_dir(s, p) for s in SZT_PLAN.defense_sets[wildcards.defense]]


def ti_flags(wildcards):
    d, p = DEFENSES[wildcards.defense], SZT_PLAN.purifier[wildcards.defense]
    sets = named({s: set_npz(s, p) for s in SZT_PLAN.defense_sets[wildcards.defense]})
    rest = flags(
        masks_from=CONCEPTS_NPZ,
        sampler=d.get("sampler"),
        objective=d.get("objective"),
        dilation=d.get("dilation"),
        **{**SZT["ti"], **{k: d[k] for k in ("lr", "steps") if k in d}},
    )
    return f"--sets {sets} {rest}"


def generate_ti_flags(wildcards):
    """The config's generation flags; the paper's token-only prompts unless {prompts} is class."""
    return flags(**SZT["generate"], no_class_noun=wildcards.prompts == "token")


def szt_label(wildcards):
    """The table column spec these samples fill (diffsec.paper.szt.column_spec)."""
    return column_spec(wildcards.defense, wildcards.prompts)


def szt_table_metrics(wildcards):
    return [f"results/metrics/szt/{p}/{d}" for d, p in columns_of(wildcards.table)]


def _szt_backbone(wildcards):
    return _resnet_artifact(SZT["metrics"]["backbone"])


def _szt_fid_backbone(wildcards):
    """FID's own backbone when the config names one other than the similarity backbone."""
    m = SZT["metrics"]
    own = m.get("fid_backbone") not in ("", m["backbone"])
    return _resnet_artifact(m["fid_backbone"]) if own else []


def _clip_model(wildcards):
    return (
        "results/models/clip-cifar10"
        if SZT["metrics"]["clip_backbone"] == "clip-tiny"
        else []
    )


def szt_backbone_flags(wildcards):
    m = SZT["metrics"]
    return flags(
        backbone=m["backbone"],
        backbone_weights=_szt_backbone(wildcards) or m.get("backbone_weights"),
    )


def eval_ti_flags(wildcards):
    m = SZT["metrics"]
    rest = flags(
        fid_backbone=m.get("fid_backbone"),
        fid_weights=_resnet_artifact(m.get("fid_backbone")) or m.get("fid_weights"),
        clip_backbone=m["clip_backbone"],
        clip_weights=_clip_model(wildcards) or m.get("clip_weights"),
    )
    return f"{szt_backbone_flags(wildcards)} {rest}"


# ---- InvisibleDiffusion (paper 000): attacks, their models, samples and measurements ----
INV = config["invisible"]
INV_ATTACKS = INV_PLAN.attacks
INV_FIGURES = [
    "results/figures/invisible/trajectories",
    "results/figures/invisible/targets",
]


def inv_dataset(attack):
    return INV_SHAPE.split_attack(attack)[0]


def world_model(attack):
    """The pixel DDPM world an attack fine-tunes (or that the benign row samples)."""
    return f"results/models/ddpm-{inv_dataset(attack)}"


def backdoor_model(attack):
    """The model a name samples: an attack's backdoored model, or the clean world (the benign row
    and the benign baselines)."""
    if INV_SHAPE.split_attack(attack)[1] == "benign" or INV_PLAN.is_baseline(attack):
        return world_model(attack)
    return f"results/backdoor/models/{attack}"


def backdoor_trigger(attack):
    """The backdoor-train artifact whose trigger a benign baseline samples / is scored by ([] otherwise)."""
    owner = INV_PLAN.trigger_of(attack)
    return f"results/backdoor/models/{owner}" if owner else []


def backdoor_samples(wildcards):
    """The backdoor-sample artifact a measurement reads (baselines on one trigger share theirs)."""
    name = INV_PLAN.samples_of(wildcards.attack)
    return f"results/backdoor/samples/{name}/{wildcards.sampler}/{wildcards.variant}"


def in_d_classifier(wildcards):
    """What scores In-D ASR: the mirror's CIFAR ResNet-56, or the CelebA attribute classifier."""
    dataset = inv_dataset(wildcards.attack)
    return {
        "cifar10": "results/models/resnet56-cifar10",
        "celeba": "results/models/celeba-classifier",
    }[dataset]


def in_d_flag(wildcards):
    return {"cifar10": "--resnet", "celeba": "--celeba-classifier"}[
        inv_dataset(wildcards.attack)
    ]


def backdoor_mnist(wildcards):
    return (
        "results/data/mnist"
        if INV_ATTACKS[wildcards.attack]["target"].startswith("mnist")
        else []
    )


def backdoor_mist(wildcards):
    return (
        "results/sources/mist_target"
        if INV_ATTACKS[wildcards.attack]["trigger"] == "mist"
        else []
    )


def backdoor_train_flags(wildcards):
    # wildcards only (no `input` argument): Snakemake records such params, so changing an attack
    # in the config reruns exactly that attack
    a = INV_ATTACKS[wildcards.attack]
    return flags(
        method=a["method"],
        trigger=a["trigger"],
        target=a["target"],
        lam=a["lam"],
        gamma=INV["gamma"],
        trigger_seed=INV.get("trigger_seed"),
        box_size=INV.get("box_size"),
        mist=backdoor_mist(wildcards) or None,
        mnist=backdoor_mnist(wildcards) or None,
        snapshots=INV_PLAN.snapshots_of(wildcards.attack),
        **{**INV["finetune"], **a.get("finetune", {})},
    )


def backdoor_sample_flags(wildcards):
    # <sampler>_ordinary: the ordinary sampler from the triggered noise; a run that is not the
    # attacker chain on the model's own trigger leaves the clean set to the run that is
    sampler = wildcards.sampler.removesuffix(INV_SHAPE.ORDINARY)
    ordinary = sampler != wildcards.sampler
    baseline = INV_PLAN.is_baseline(wildcards.attack)
    s = INV["sample"][sampler]
    snap = (
        0
        if wildcards.variant == "final"
        else int(wildcards.variant.removeprefix("step-"))
    )
    return flags(
        sampler=sampler,
        n=s["n"],
        steps=s.get("steps"),
        snapshot=snap,
        batch_size=INV["sample"].get("batch_size"),
        trigger=backdoor_trigger(wildcards.attack) or None,
        chain="ordinary" if ordinary else None,
        no_clean=ordinary or baseline,
    )


def backdoor_eval_flags(wildcards):
    """--trigger: the attack that scores a benign baseline's triggered samples; the FID's bootstrap."""
    return flags(
        trigger=backdoor_trigger(wildcards.attack) or None,
        fid_bootstrap=config["metrics"]["fid_bootstrap"],
    )


def invisible_evals(table):
    """The backdoor-eval artifacts one of the InvisibleDiffusion tables reads."""
    return [f"results/metrics/backdoor/{m}" for m in INV_PLAN.evals(table)]


def backdoor_label(wildcards):
    """<attack>/<sampler>[/step-<n>]: how the tables find one backdoor-eval measurement."""
    variant = [] if wildcards.variant == "final" else [wildcards.variant]
    return "/".join([wildcards.attack, wildcards.sampler, *variant])


# SeDID: scored set -> (images input, the image file inside it, CLI flags)
SEDID = config["sedid"]

SEDID_SETS = {
    "real": (
        "results/data/cifar10",
        "train.npz",
        dict(n=SEDID["real"]["n"], pick="random", sweep_n=SEDID["sweep"]["n"]),
    ),
    "ddpm": (
        "results/samples/sedid-ddpm",
        "samples.npz",
        dict(sweep_n=SEDID["sweep"]["n"]),
    ),
    "jpeg": (
        "results/samples/sedid-ddpm",
        "samples.npz",
        dict(jpeg=SEDID["jpeg_control"]),
    ),
    "ddim": (
        "results/samples/ddpm-cifar10",
        "samples.npz",
        dict(n=SEDID_PLAN.ddim_n, pick="first"),
    ),
}


def sedid_image_file(scored):
    """The image file a scored set reads, inside its input folder."""
    folder, name, _ = SEDID_SETS[scored]
    return f"{folder}/{name}"


def sedid_score_flags(wildcards):
    extra = SEDID_SETS[wildcards.scored][2]
    return flags(
        images=sedid_image_file(wildcards.scored),
        k=SEDID["k"],
        t_secs=SEDID["t_secs"],
        loss_ts=SEDID["loss_ts"],
        sweep_ks=SEDID["sweep"]["ks"],
        sweep_t=SEDID["sweep"]["t"],
        batch_size=SEDID.get("batch_size", 64),
        **extra,
    )


# sedid_mia: the member / held-out sets scored by each kept model of the target DDPM
MIA = SEDID["mia"]


def mia_score_flags(wildcards):
    """Scores of one group at one kept model: SeDID's grid and loss sweep, and SecMI's stat
    (t, k) as the one-entry step sweep, on every image of the group."""
    return flags(
        images=f"results/data/cifar10-members/{wildcards.group}.npz",
        snapshot=(
            0
            if wildcards.variant == "final"
            else int(wildcards.variant.removeprefix("step-"))
        ),
        k=SEDID["k"],
        t_secs=SEDID["t_secs"],
        loss_ts=SEDID["loss_ts"],
        sweep_ks=[MIA["secmi"]["k"]],
        sweep_t=MIA["secmi"]["t"],
        sweep_n=max(MIA["members"], MIA["heldout"]),
        batch_size=SEDID.get("batch_size", 64),
    )


# SPD: universal fits per (method, eps), immunized sets per (condition, eps), the clean set's edits
SPD = config["spd"]
SPD_OURS = next(n for n, m in SPD_PLAN.methods.items() if m["column"] == "Ours")
SPD_EVALS = [f"results/immunize/spd/eval/{s}" for s in SPD_PLAN.immunized]


def spd_edits(condition):
    """The spd-edit artifacts of one condition, one per eps in order."""
    return [f"results/immunize/spd/edit/{condition}/eps-{e}" for e in SPD_PLAN.eps]


def _spd_optimiser(m):
    return flags(
        objective=m["objective"],
        optimizer=m["optimizer"],
        iters=SPD["iters"],
        batch_size=SPD["batch_size"],
        step_frac=SPD["step_frac"],
        target=SPD["target"],
    )


def spd_fit_flags(wildcards):
    return _spd_optimiser(SPD_PLAN.methods[wildcards.spd_method])


def spd_delta(wildcards):
    """A universal condition's fit at its eps (random and PhotoGuard fit none)."""
    if wildcards.spd_condition in SPD_PLAN.methods:
        return f"results/immunize/spd/fit/{wildcards.spd_condition}/eps-{wildcards.spd_eps}"
    return []


def spd_attacked_model(wildcards):
    """PhotoGuard fits per image on the T2I world's VAE; the others read no model."""
    return (
        "results/models/t2i-cifar10" if wildcards.spd_condition == "photoguard" else []
    )


def spd_apply_flags(wildcards):
    c = wildcards.spd_condition
    if c in SPD_PLAN.methods:
        return flags(
            kind="universal",
            delta=spd_delta(wildcards),
            step_frac=SPD["step_frac"],
        )
    if c == "photoguard":
        return (
            "--kind photoguard "
            + _spd_optimiser(dict(objective="encoder", optimizer="pgd"))
            + " "
            + flags(model=spd_attacked_model(wildcards))
        )
    return flags(kind="random", step_frac=SPD["step_frac"])


def spd_edit_images(wildcards):
    if wildcards.spd_set == "clean":
        return "results/immunize/spd/images"
    return f"results/immunize/spd/apply/{wildcards.spd_set}"


def spd_eval_flags(wildcards):
    return flags(
        label=f"{wildcards.spd_condition}/eps-{wildcards.spd_eps}",
        column=SPD_PLAN.column(wildcards.spd_condition),
        eps=wildcards.spd_eps,
    )


# SAU: the fine-tuned models, seed-matched generation sets, SAU settings and evaluations
# (src/diffsec/plan/sau.py); every path below results/unlearn/sau/
SAU = config["sau"]
SAU_DIR = "results/unlearn/sau"
SAU_EVALS = [f"{SAU_DIR}/eval/{e}" for e in SAU_PLAN.evals]


def sau_patch(wildcards):
    """The MIST image, for whatever draws the pixel backdoor's patch."""
    kind = getattr(wildcards, "sau_detector", None) or getattr(
        wildcards, "sau_backdoor", None
    )
    return "results/sources/mist_target" if kind in ("patch", "pixel") else []


def sau_detector_flags(wildcards):
    """The detector's settings; min_contrast only shapes the patch judge's examples."""
    d = dict(SAU["detector"])
    if wildcards.sau_detector != "patch":
        d.pop("min_contrast", None)
    return flags(**d)


def sau_attack_flags(wildcards):
    """BadT2I's settings with this backdoor's steps."""
    a = {**SAU["attack"], "steps": SAU_PLAN.attack_steps[wildcards.sau_backdoor]}
    return flags(n_images=SAU["train_images"], **a)


def sau_unet(wildcards):
    """The fine-tuned UNet a generation set comes from (the Unpoisoned world has none)."""
    m = wildcards.sau_model
    return [] if m == "unpoisoned" else f"{SAU_DIR}/model/{m}"


def sau_generate_flags(wildcards):
    g, ps = SAU["generate"], wildcards.sau_prompts
    return flags(
        seeds=g["calib_seeds"] if ps.startswith("calib-") else g["seeds"],
        prompt_set=ps.removeprefix("calib-"),
        guidance=g["guidance"],
        steps=g["steps"],
        sampler=g["sampler"],
        batch_size=g["batch_size"],
    )


def sau_apply_inputs(wildcards):
    gen = f"{SAU_DIR}/gen/{wildcards.sau_backdoor}-poisoned"
    return {
        k.replace("-", "_"): f"{gen}/{k}"
        for k in ("triggered", "clean", "calib-triggered", "calib-clean")
    }


def sau_apply_flags(wildcards):
    return flags(**SAU_PLAN.settings[wildcards.sau_setting])


def sau_eval_images(wildcards):
    tail = SAU_PLAN.eval_source(wildcards.sau_backdoor, wildcards.sau_eval)[1]
    return f"{SAU_DIR}/{tail}"


def sau_eval_flags(wildcards):
    method, _ = SAU_PLAN.eval_source(wildcards.sau_backdoor, wildcards.sau_eval)
    variant = wildcards.sau_eval[4:] if method == "sau" else ""
    named_flags = flags(
        backdoor=wildcards.sau_backdoor,
        method=method,
        variant="" if variant == SAU_DEFAULT else variant,
        clip_backbone=SAU["clip_backbone"],
        clip=sau_clip(wildcards) or SAU.get("clip", ""),
    )
    return f"{named_flags} --iqa-prompts {words(SAU['iqa_prompts'])}"


def sau_unlearn_settings(wildcards):
    """unlearn-t2i's settings of one baseline (ESD's sampler keys carry their flag's prefix)."""
    cfg = dict(SAU[wildcards.sau_unlearn])
    if wildcards.sau_unlearn == "concept_erasure":
        cfg["esd_ddim_steps"], cfg["esd_guidance"] = cfg.pop("ddim_steps"), cfg.pop(
            "guidance"
        )
    return cfg


def _sau_figure_columns(backdoor):
    """Tables 1-2 of the paper: each method's triggered set (SAU: its default setting)."""
    cols = {
        m: f"{SAU_DIR}/gen/{model_name(backdoor, m)}/triggered" for m in SAU_METHODS
    }
    cols["sau"] = f"{SAU_DIR}/defended/{backdoor}/{SAU_DEFAULT}"
    return cols


def _sau_mask_backdoor():
    return "pixel" if "pixel" in SAU_PLAN.backdoors else SAU_PLAN.backdoors[0]


def sau_figure_inputs(wildcards):
    b = _sau_mask_backdoor()
    paths = {
        f"{bd}_{m}": p
        for bd in SAU_PLAN.backdoors
        for m, p in _sau_figure_columns(bd).items()
    }
    paths.update(
        {
            f"detector_{bd}": f"{SAU_DIR}/detector/{SAU_DETECTOR[bd]}"
            for bd in SAU_PLAN.backdoors
        }
    )
    paths["mask_clean"] = f"{SAU_DIR}/gen/{b}-poisoned/clean"
    return paths


def sau_figure_flags(wildcards):
    b = _sau_mask_backdoor()
    detectors = {
        bd: f"{SAU_DIR}/detector/{SAU_DETECTOR[bd]}" for bd in SAU_PLAN.backdoors
    }
    out = [f"--{bd} {named(_sau_figure_columns(bd))}" for bd in SAU_PLAN.backdoors]
    out.append(f"--detectors {named(detectors)}")
    out.append(
        flags(
            mask_sau=f"{SAU_DIR}/defended/{b}/{SAU_DEFAULT}",
            mask_triggered=f"{SAU_DIR}/gen/{b}-poisoned/triggered",
            mask_clean=f"{SAU_DIR}/gen/{b}-poisoned/clean",
        )
    )
    return " ".join(out)


def sau_clip(wildcards):
    return "results/models/clip-cifar10" if SAU["clip_backbone"] == "clip-tiny" else []


# Every wildcard of every rule, matched against exactly the names the config defines.
wildcard_constraints:
    source=alternatives(SOURCE_NAMES),
    dataset=alternatives(DDPM_WORLDS),
    world=alternatives(PUBLISHED),
    arch="resnet20|resnet56",
    poison=alternatives(POISONS),
    purifier=alternatives(PURIFIERS),
    set=alternatives(SETS),
    defense=alternatives(DEFENSES),
    prompts="token|class",
    attack=alternatives([*INV_PLAN.benign, *INV_ATTACKS, *INV_PLAN.baselines]),
    sampler="ddpm|ddim|ddpm_ordinary|ddim_ordinary",
    variant=r"final|step-\d+",
    table=alternatives(TABLES),
    scored=alternatives(SEDID_PLAN.sets),
    generated=alternatives(SEDID_PLAN.generated),
    group="members|heldout",
    spd_method=alternatives(SPD_PLAN.methods),
    spd_condition=alternatives(SPD_PLAN.conditions),
    spd_eps=alternatives(SPD_PLAN.eps),
    spd_set=alternatives(["clean", *SPD_PLAN.immunized]),
    sau_backdoor=alternatives(SAU_PLAN.backdoors),
    sau_detector=alternatives(SAU_DETECTOR[b] for b in SAU_PLAN.backdoors),
    sau_unlearn=alternatives(SAU_UNLEARN),
    sau_model=alternatives(SAU_PLAN.models),
    sau_prompts="triggered|clean|calib-triggered|calib-clean",
    sau_setting=alternatives(SAU_PLAN.settings),
    sau_eval=alternatives(sorted({e.split("/", 1)[1] for e in SAU_PLAN.evals})),
