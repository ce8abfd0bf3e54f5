# Measurements shared by every paper slice: samples from the worlds, FID / precision / recall,
# classifier accuracy on generated images.


rule sample_ddpm:
    input:
        model="results/models/ddpm-cifar10",
        code=code("sample-ddpm"),
    output:
        report(
            directory("results/samples/ddpm-cifar10"),
            patterns=["{name}.png"],
            category="worlds",
            caption="../report/ddpm_samples.rst",
        ),
    log:
        "logs/sample_ddpm.log",
    benchmark:
        "benchmarks/sample_ddpm.tsv"
    conda:
        CONDA_ENV
    threads: config["threads"]
    resources:
        gpu=gpu_per_job,
    params:
        run=RUN,
        flags=flags(
            n=METRICS["fid_samples"],
            sampler=METRICS["sampler"],
            steps=METRICS["sampler_steps"],
            batch_size=METRICS["sample_batch"],
        ),
    shell:
        "diffsec sample-ddpm --model {input.model:q} {params.flags} --out {output:q} {params.run} --threads {threads} "
        "> {log:q} 2>&1"


rule fid_ddpm_vs_test:
    input:
        fake="results/samples/ddpm-cifar10",
        real="results/data/cifar10",
        backbone=backbone_inputs,
        code=code("eval-fid"),
    output:
        directory("results/metrics/fid-ddpm-vs-test"),
    log:
        "logs/fid_ddpm_vs_test.log",
    benchmark:
        "benchmarks/fid_ddpm_vs_test.tsv"
    conda:
        CONDA_ENV
    threads: config["threads"]
    resources:
        gpu=gpu_per_job,
    params:
        run=RUN,
        backbone=backbone_flags,
    shell:
        "diffsec eval-fid --fake {input.fake:q} --real {input.real:q}/test.npz {params.backbone} "
        "--out {output:q} {params.run} --threads {threads} > {log:q} 2>&1"


rule fid_train_vs_test:
    input:
        real="results/data/cifar10",
        backbone=backbone_inputs,
        code=code("eval-fid"),
    # The reference: how far real CIFAR-10 train images are from the test set under the same
    # backbone and the same sample count as the generated set.
    output:
        directory("results/metrics/fid-train-vs-test"),
    log:
        "logs/fid_train_vs_test.log",
    benchmark:
        "benchmarks/fid_train_vs_test.tsv"
    conda:
        CONDA_ENV
    threads: config["threads"]
    resources:
        gpu=gpu_per_job,
    params:
        run=RUN,
        backbone=backbone_flags,
        n=METRICS["fid_samples"],
    shell:
        "diffsec eval-fid --fake {input.real:q}/train.npz --fake-n {params.n:q} --real {input.real:q}/test.npz "
        "{params.backbone} --out {output:q} {params.run} --threads {threads} > {log:q} 2>&1"


rule t2i_class_fidelity:
    input:
        model="results/models/t2i-cifar10",
        classifier="results/models/resnet56-cifar10",
        code=code("eval-class"),
    output:
        directory("results/metrics/t2i-class-fidelity"),
    log:
        "logs/t2i_class_fidelity.log",
    benchmark:
        "benchmarks/t2i_class_fidelity.tsv"
    conda:
        CONDA_ENV
    threads: 1
    params:
        run=RUN,
    shell:
        "diffsec eval-class --images {input.model:q}/samples.npz --classifier {input.classifier:q} "
        "--out {output:q} {params.run} --threads {threads} > {log:q} 2>&1"


# The tiny T2I world's latent space bounds what its samples can show a classifier: the CIFAR-10
# test images themselves, encoded and decoded by its VAE, classified by the same ResNet-56.
# Only for a world trained here; SD's VAE is not made for 32 px images.
if not WORLDS["t2i"]["pretrained"]:

    rule t2i_vae_ceiling:
        input:
            model="results/models/t2i-cifar10",
            data="results/data/cifar10",
            classifier="results/models/resnet56-cifar10",
            code=code("eval-class"),
        output:
            directory("results/metrics/t2i-vae-ceiling"),
        log:
            "logs/t2i_vae_ceiling.log",
        benchmark:
            "benchmarks/t2i_vae_ceiling.tsv"
        conda:
            CONDA_ENV
        threads: 1
        params:
            run=RUN,
            n=METRICS["fid_samples"],
        shell:
            "diffsec eval-class --images {input.data:q}/test.npz --n {params.n:q} --vae-roundtrip {input.model:q} "
            "--classifier {input.classifier:q} --out {output:q} {params.run} --threads {threads} > {log:q} 2>&1"
