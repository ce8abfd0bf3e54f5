# Shared helpers: config -> CLI flags, the source files a stage runs, the env every rule names.

CONDA_ENV = "../../envs/diffsec.yaml"
SRC = Path(workflow.basedir) / "src" / "diffsec"
PROFILE = config["profile"]
SEED = config["seed"]


def code(*modules):
    """Source files a stage runs, declared as inputs so editing one reruns that stage."""
    return [str(SRC / m) for m in ("cli/common.py", *modules)]


def flags(**kw):
    """Python values -> CLI flags: lists become JSON, False/None/'' drop the flag."""
    import json
    import shlex

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


RUN = f"--seed {SEED} --device {config['device']}"


def _mirror():
    """'auto' -> ../shared/mirror beside the workflow (absolute, so --directory works); '' -> none."""
    from diffsec.sources import default_mirror

    m = config["mirror"]
    if m == "auto":
        found = default_mirror(workflow.basedir)
        return str(found) if found else "none"
    return str(Path(m).resolve()) if m else "none"


MIRROR = _mirror()


def source_entry(name):
    """One source's catalog entry as text: a fetch_source param, so editing the catalog reruns
    only the fetches whose entry changed (and what reads them)."""
    from dataclasses import asdict

    from diffsec.catalog import SOURCES

    return " ".join(f"{k}={v}" for k, v in sorted(asdict(SOURCES[name]).items()) if k != "description")


# dataset -> its pixel DDPM world's config (CelebA's only when invisible.datasets names it)
DDPM_WORLDS = {"cifar10": "ddpm", "celeba": "ddpm_celeba"}


def ddpm_world(wildcards):
    return config["worlds"][DDPM_WORLDS[wildcards.dataset]]


METRICS = config["metrics"]


def _resnet_artifact(name):
    """Our CIFAR ResNet artifacts stand for a backbone's weights; other backbones name theirs."""
    return f"results/models/{name}" if name in ("resnet56-cifar10", "resnet20-cifar10") else []


def backbone_inputs(wildcards):
    """The tiny profile's backbone is our ResNet-56 artifact; the paper's comes from config."""
    return _resnet_artifact(METRICS["backbone"])


# Params functions take wildcards only: Snakemake does not record params derived from `input`,
# so a config value read inside such a function would never trigger a rerun when it changes.
def backbone_flags(wildcards):
    weights = backbone_inputs(wildcards) or METRICS["backbone_weights"]
    return flags(backbone=METRICS["backbone"], backbone_weights=weights)


# ---- SZT (paper 004): training sets, defenses, and the flags of their stages ----
from diffsec.paper.szt import TABLES, defenses_of, sets_of

SZT = config["szt"]
POISONS = SZT["poisons"]
SETS = ["clean", *POISONS]
PURIFIERS = ["jpeg", "regen", "pdmpure", "advclean"]
CONCEPTS_NPZ = "results/data/szt-concepts/concepts.npz"


def set_dir(name, purifier="none"):
    """The artifact directory holding training set `name` after `purifier`."""
    if purifier != "none":
        return f"results/purify/{purifier}/{name}"
    return "results/data/szt-concepts" if name == "clean" else f"results/poison/{name}"


def set_npz(name, purifier="none"):
    return f"{set_dir(name, purifier)}/{'concepts' if (name, purifier) == ('clean', 'none') else 'images'}.npz"


def _purifier_model(wildcards):
    return {"regen": "results/models/t2i-cifar10", "pdmpure": "results/models/ddpm-cifar10"}.get(
        wildcards.purifier, [])


# A defense trains the sets of the tables that show it (src/diffsec/paper/szt.py), so the
# timestep-ablation defenses skip SDS+/-/DA, as the paper's Tables 6-8 do.
DEFENSES = SZT["defenses"]
_missing = sorted({d for t in TABLES for d in defenses_of(t)} - set(DEFENSES))
if _missing:
    sys.exit(f"config error: szt.defenses: the tables need defenses {_missing}")
DEFENSE_SETS = {}
for _t in TABLES:
    for _d in defenses_of(_t):
        DEFENSE_SETS.setdefault(_d, set()).update(sets_of(_t))
for _d in DEFENSES:  # a defense no table shows still trains every set
    DEFENSE_SETS.setdefault(_d, set(SETS))
DEFENSE_SETS = {d: [s for s in SETS if s in v] for d, v in DEFENSE_SETS.items()}
FIG = SZT["figures"]
SZT_FIGURES = [f"results/figures/szt/{f}" for f in ("perturbations", "loss-per-t", "ti-grid", "ssm")]


def _purifier(defense):
    return DEFENSES[defense].get("purify", "none")


def ti_sets(wildcards):
    return [set_dir(s, _purifier(wildcards.defense)) for s in DEFENSE_SETS[wildcards.defense]]


def ti_flags(wildcards):
    d, p = DEFENSES[wildcards.defense], _purifier(wildcards.defense)
    sets = " ".join(f"{s}={set_npz(s, p)}" for s in DEFENSE_SETS[wildcards.defense])
    rest = flags(masks_from=CONCEPTS_NPZ, sampler=d.get("sampler"), objective=d.get("objective"),
                 dilation=d.get("dilation"), **SZT["ti"])
    return f"--sets {sets} {rest}"


def _szt_backbone(wildcards):
    return _resnet_artifact(SZT["metrics"]["backbone"])


def _szt_fid_backbone(wildcards):
    """FID's own backbone when the config names one other than the similarity backbone."""
    m = SZT["metrics"]
    return _resnet_artifact(m["fid_backbone"]) if m.get("fid_backbone") not in ("", m["backbone"]) else []


def _clip_model(wildcards):
    return "results/models/clip-cifar10" if SZT["metrics"]["clip_backbone"] == "clip-tiny" else []


def eval_ti_flags(wildcards):
    m = SZT["metrics"]
    return flags(backbone=m["backbone"],
                 backbone_weights=_szt_backbone(wildcards) or m.get("backbone_weights"),
                 fid_backbone=m.get("fid_backbone"),
                 fid_weights=_resnet_artifact(m.get("fid_backbone")) or m.get("fid_weights"),
                 clip_backbone=m["clip_backbone"],
                 clip_weights=_clip_model(wildcards) or m.get("clip_weights"))


# ---- InvisibleDiffusion (paper 000): attacks, their models, samples and measurements ----
from diffsec.paper import invisible as INV_SHAPE

INV = config["invisible"]
INV_ATTACKS = dict(INV["attacks"])
_missing = sorted(set(INV_SHAPE.attacks_in_tables()) - set(INV_ATTACKS))
if _missing:
    sys.exit(f"config error: invisible.attacks: the tables need attacks {_missing}")
INV_DATASETS = INV["datasets"]
# The main table's attacks again on every further dataset (CelebA), on that dataset's world, with
# the In-D target moved to that dataset's (Out-D MNIST targets stay).
for _ds in INV_DATASETS:
    if _ds == "cifar10":
        continue
    for _sampler in INV_SHAPE.COLUMNS.values():
        for _row in INV_SHAPE.rows_of(_ds, _sampler):
            _a = INV_SHAPE.ROWS[_row]
            if _a != "benign":
                _spec = INV_ATTACKS[_a]
                _target = INV["in_d_targets"][_ds] if _spec["target"].startswith("cifar10:") else _spec["target"]
                INV_ATTACKS[INV_SHAPE.dataset_attack(_ds, _a)] = {**_spec, "target": _target}
INV_BENIGN = [INV_SHAPE.dataset_attack(d, "benign") for d in INV_DATASETS]
# Fig. 4: the base attack again at each lambda of the sweep (the configured lambda is the base itself)
INV_LAMBDAS = sorted(INV["ablation"]["lambdas"])
for _lam in INV_LAMBDAS:
    if _lam != INV["lam"]:
        INV_ATTACKS[INV_SHAPE.lambda_attack(_lam)] = {**INV_ATTACKS[INV_SHAPE.LAMBDA_BASE], "lam": _lam}
# Fig. 5: EMA snapshots of the base attack at shares of its fine-tuning steps (the last is the final model)
_steps = INV["finetune"]["steps"]
INV_SNAPSHOTS = sorted({max(1, round(f * _steps)) for f in INV["ablation"]["step_fractions"]} - {_steps})


def _lambda_label(lam):
    return INV_SHAPE.LAMBDA_BASE if lam == INV["lam"] else INV_SHAPE.lambda_attack(lam)


def inv_dataset(attack):
    return INV_SHAPE.split_attack(attack)[0]


def world_model(attack):
    """The pixel DDPM world an attack fine-tunes (or that the benign row samples)."""
    return f"results/models/ddpm-{inv_dataset(attack)}"


def backdoor_model(attack):
    return world_model(attack) if INV_SHAPE.split_attack(attack)[1] == "benign" else f"results/backdoor/models/{attack}"


def in_d_classifier(wildcards):
    """What scores In-D ASR: the mirror's CIFAR ResNet-56, or the CelebA attribute classifier."""
    return {"cifar10": "results/models/resnet56-cifar10", "celeba": "results/models/celeba-classifier"}[
        inv_dataset(wildcards.attack)]


def in_d_flag(wildcards):
    return {"cifar10": "--resnet", "celeba": "--celeba-classifier"}[inv_dataset(wildcards.attack)]


def backdoor_mnist(wildcards):
    return "results/data/mnist" if INV_ATTACKS[wildcards.attack]["target"].startswith("mnist") else []


def backdoor_mist(wildcards):
    return "results/sources/mist_target" if INV_ATTACKS[wildcards.attack]["trigger"] == "mist" else []


def backdoor_train_flags(wildcards):
    # wildcards only (no `input` argument): Snakemake records such params, so changing an attack
    # in the config reruns exactly that attack
    a = INV_ATTACKS[wildcards.attack]
    snaps = INV_SNAPSHOTS if wildcards.attack == INV_SHAPE.LAMBDA_BASE else []
    return flags(method=a["method"], trigger=a["trigger"], target=a["target"], lam=a.get("lam", INV["lam"]),
                 gamma=INV["gamma"], trigger_seed=INV.get("trigger_seed"), box_size=INV.get("box_size"),
                 mist=backdoor_mist(wildcards) or None, mnist=backdoor_mnist(wildcards) or None,
                 snapshots=snaps, **INV["finetune"])


def backdoor_sample_flags(wildcards):
    s = INV["sample"][wildcards.sampler]
    snap = 0 if wildcards.variant == "final" else int(wildcards.variant.removeprefix("step-"))
    return flags(sampler=wildcards.sampler, n=s["n"], steps=s.get("steps"), snapshot=snap,
                 batch_size=INV["sample"].get("batch_size"))


def invisible_evals(table):
    """The backdoor-eval artifacts one of the two InvisibleDiffusion tables reads."""
    out = []
    if table == "invisible_diffusion":
        for ds in INV_DATASETS:
            for sampler in INV_SHAPE.COLUMNS.values():
                out += [f"results/metrics/backdoor/{INV_SHAPE.dataset_attack(ds, INV_SHAPE.ROWS[r])}/{sampler}/final"
                        for r in INV_SHAPE.rows_of(ds, sampler)]
        return out
    for lam in INV_LAMBDAS:
        out += [f"results/metrics/backdoor/{_lambda_label(lam)}/{s}/final" for s in ("ddpm", "ddim")]
    out += [f"results/metrics/backdoor/{INV_SHAPE.LAMBDA_BASE}/ddim/step-{n}" for n in INV_SNAPSHOTS]
    out += [f"results/metrics/backdoor/{INV_SHAPE.ONE_IMAGE_ATTACK}/{s}/final" for s in ("ddpm", "ddim")]
    return out


# Fig. 2 rows (DDPM trajectories) and Fig. 3 blocks (DDIM targets): figure label -> attack
INV_FIG_TRAJECTORIES = {"benign": "benign", "InvisibleDiffusion (fixed image)": "id_ind_fixed",
                        "InvisibleDiffusion (w/o fixed image)": "id_ind_free", "TrojDiff": "trojdiff_ind",
                        "BadDiffusion": "baddiffusion_img"}
INV_FIG_TARGETS = {"In-D, fixed image": "id_ind_fixed", "In-D, w/o fixed image": "id_ind_free",
                   "Out-D, fixed image": "id_outd_fixed", "Out-D, w/o fixed image": "id_outd_free"}
# Fig. 3 shows CIFAR-10 and CelebA: a block per further dataset's attack when it runs
INV_FIG_TARGETS.update({f"{INV_SHAPE.DATASETS[d]} {n}": INV_SHAPE.dataset_attack(d, a)
                        for d in INV_DATASETS if d != "cifar10" for n, a in list(INV_FIG_TARGETS.items())})
INV_FIGURES = ["results/figures/invisible/trajectories", "results/figures/invisible/targets"]


def backdoor_label(wildcards):
    """<attack>/<sampler>[/step-<n>]: how the tables find one backdoor-eval measurement."""
    parts = [wildcards.attack, wildcards.sampler] + ([] if wildcards.variant == "final" else [wildcards.variant])
    return "/".join(parts)
