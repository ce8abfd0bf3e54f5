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


METRICS = config["metrics"]


def backbone_inputs(wildcards):
    """The tiny profile's backbone is our ResNet-56 artifact; the paper's comes from config."""
    return "results/models/resnet56-cifar10" if METRICS["backbone"] == "resnet56-cifar10" else []


def backbone_flags(wildcards, input):
    weights = input.backbone if input.backbone else METRICS["backbone_weights"]
    return flags(backbone=METRICS["backbone"], backbone_weights=weights)
