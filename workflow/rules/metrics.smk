# Measurements shared by every paper slice: samples from the worlds, FID / precision / recall,
# classifier accuracy on generated images.

METRICS = config["metrics"]


def backbone_inputs(wildcards):
    """The tiny profile's backbone is our ResNet-56 artifact; the paper's comes from config."""
    return "results/models/resnet56-cifar10" if METRICS["backbone"] == "resnet56-cifar10" else []


def backbone_flags(wildcards, input):
    weights = input.backbone if input.backbone else METRICS["backbone_weights"]
    return flags(backbone=METRICS["backbone"], backbone_weights=weights)


rule sample_ddpm:
    output:
        directory("results/samples/ddpm-cifar10"),
    input:
        model="results/models/ddpm-cifar10",
        code=code("cli/evaluate.py", "models/ddpm.py", "diffusion/sampling.py"),
    params:
        flags=flags(n=METRICS["fid_samples"], sampler=METRICS["sampler"], steps=METRICS["sampler_steps"]),
    threads: workflow.cores
    resources:
        gpu=1,
    log:
        "logs/sample_ddpm.log",
    benchmark:
        "benchmarks/sample_ddpm.tsv"
    conda:
        CONDA_ENV
    shell:
        "diffsec sample-ddpm --model {input.model} {params.flags} --out {output} {RUN} > {log} 2>&1"


rule fid_ddpm_vs_test:
    output:
        directory("results/metrics/fid-ddpm-vs-test"),
    input:
        fake="results/samples/ddpm-cifar10",
        real="results/data/cifar10",
        backbone=backbone_inputs,
        code=code("cli/evaluate.py", "metrics/fid.py", "metrics/prdc.py", "metrics/backbones.py"),
    params:
        backbone=backbone_flags,
    threads: workflow.cores
    resources:
        gpu=1,
    log:
        "logs/fid_ddpm_vs_test.log",
    benchmark:
        "benchmarks/fid_ddpm_vs_test.tsv"
    conda:
        CONDA_ENV
    shell:
        "diffsec eval-fid --fake {input.fake} --real {input.real}/test.npz {params.backbone} "
        "--out {output} {RUN} > {log} 2>&1"


rule fid_train_vs_test:
    # The reference: how far real CIFAR-10 train images are from the test set under the same
    # backbone and the same sample count as the generated set.
    output:
        directory("results/metrics/fid-train-vs-test"),
    input:
        real="results/data/cifar10",
        backbone=backbone_inputs,
        code=code("cli/evaluate.py", "metrics/fid.py", "metrics/prdc.py", "metrics/backbones.py"),
    params:
        backbone=backbone_flags,
        n=METRICS["fid_samples"],
    threads: workflow.cores
    resources:
        gpu=1,
    log:
        "logs/fid_train_vs_test.log",
    benchmark:
        "benchmarks/fid_train_vs_test.tsv"
    conda:
        CONDA_ENV
    shell:
        "diffsec eval-fid --fake {input.real}/train.npz --fake-n {params.n} --real {input.real}/test.npz "
        "{params.backbone} --out {output} {RUN} > {log} 2>&1"


rule t2i_class_fidelity:
    output:
        directory("results/metrics/t2i-class-fidelity"),
    input:
        model="results/models/t2i-cifar10",
        classifier="results/models/resnet56-cifar10",
        code=code("cli/evaluate.py", "metrics/classify.py"),
    threads: 1
    log:
        "logs/t2i_class_fidelity.log",
    benchmark:
        "benchmarks/t2i_class_fidelity.tsv"
    conda:
        CONDA_ENV
    shell:
        "diffsec eval-class --images {input.model}/samples.npz --classifier {input.classifier} "
        "--out {output} {RUN} > {log} 2>&1"
