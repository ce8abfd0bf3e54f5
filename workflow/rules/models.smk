# World models: the pixel DDPM, the text-to-image latent diffusion model, the classifiers.

WORLDS = config["worlds"]


if PUBLISHED:

    ruleorder: install_world > train_ddpm
    ruleorder: install_world > train_t2i
    ruleorder: install_world > train_clip
    ruleorder: install_world > train_mnist_classifier

    rule install_world:
        # fetch + verify + unpack a world this DAG built before (config `published:`)
        input:
            source=lambda w: f"results/sources/{PUBLISHED[w.world]}",
            code=code("install-world"),
        output:
            directory("results/models/{world}"),
        log:
            "logs/install_world/{world}.log",
        benchmark:
            "benchmarks/install_world/{world}.tsv"
        conda:
            CONDA_ENV
        threads: 1
        params:
            run=RUN,
        shell:
            "diffsec install-world --source {input.source:q} --world {wildcards.world:q} --out {output:q} "
            "{params.run} --threads {threads} > {log:q} 2>&1"


rule train_ddpm:
    input:
        data=lambda w: (
            [] if ddpm_world(w)["pretrained"] else f"results/data/{w.dataset}"
        ),
        code=code("train-ddpm"),
    output:
        report(
            directory("results/models/ddpm-{dataset}"),
            patterns=["{name}.png"],
            category="worlds",
            caption="../report/ddpm.rst",
        ),
    log:
        "logs/train_ddpm/{dataset}.log",
    benchmark:
        "benchmarks/train_ddpm/{dataset}.tsv"
    conda:
        CONDA_ENV
    threads: config["threads"]
    resources:
        gpu=gpu_per_job,
    params:
        run=RUN,
        data=lambda w, input: flags(
            data=f"{input.data}/train.npz" if input.data else ""
        ),
        flags=lambda w: world_flags(ddpm_world(w)),
    shell:
        "diffsec train-ddpm {params.data} {params.flags} --out {output:q} {params.run} --threads {threads} "
        "> {log:q} 2>&1"


rule train_t2i:
    input:
        data=[] if WORLDS["t2i"]["pretrained"] else "results/data/cifar10",
        code=code("train-t2i"),
    output:
        report(
            directory("results/models/t2i-cifar10"),
            patterns=["{name}.png"],
            category="worlds",
            caption="../report/t2i.rst",
        ),
    log:
        "logs/train_t2i.log",
    benchmark:
        "benchmarks/train_t2i.tsv"
    conda:
        CONDA_ENV
    threads: config["threads"]
    resources:
        gpu=gpu_per_job,
    params:
        run=RUN,
        data=lambda w, input: flags(
            data=f"{input.data}/train.npz" if input.data else ""
        ),
        flags=world_flags(WORLDS["t2i"]),
    shell:
        "diffsec train-t2i {params.data} {params.flags} --out {output:q} {params.run} --threads {threads} "
        "> {log:q} 2>&1"


rule train_mnist_classifier:
    input:
        data="results/data/mnist",
        code=code("train-mnist-classifier"),
    output:
        report(
            directory("results/models/mnist-classifier"),
            patterns=["{name}.png"],
            category="worlds",
            caption="../report/mnist.rst",
        ),
    log:
        "logs/train_mnist_classifier.log",
    benchmark:
        "benchmarks/train_mnist_classifier.tsv"
    conda:
        CONDA_ENV
    threads: 1
    params:
        run=RUN,
        flags=world_flags(WORLDS["mnist_classifier"]),
    shell:
        "diffsec train-mnist-classifier --data {input.data:q} {params.flags} --out {output:q} {params.run} "
        "--threads {threads} > {log:q} 2>&1"


rule classifier_resnet:
    input:
        weights="results/sources/{arch}",
        data="results/data/cifar10",
        code=code("classifier-resnet"),
    output:
        report(
            directory("results/models/{arch}-cifar10"),
            patterns=["{name}.png"],
            category="worlds",
            caption="../report/resnet.rst",
        ),
    log:
        "logs/classifier_resnet/{arch}.log",
    benchmark:
        "benchmarks/classifier_resnet/{arch}.tsv"
    conda:
        CONDA_ENV
    threads: 1
    params:
        run=RUN,
    shell:
        "diffsec classifier-resnet --arch {wildcards.arch:q} --weights {input.weights:q}/{wildcards.arch:q}-*.th "
        "--testset {input.data:q}/test.npz --out {output:q} {params.run} --threads {threads} > {log:q} 2>&1"


rule train_clip:
    input:
        data="results/data/cifar10",
        code=code("train-clip"),
    # The tiny profile's CLIP-score model: no pretrained CLIP is reachable offline.
    output:
        report(
            directory("results/models/clip-cifar10"),
            patterns=["{name}.png"],
            category="worlds",
            caption="../report/clip.rst",
        ),
    log:
        "logs/train_clip.log",
    benchmark:
        "benchmarks/train_clip.tsv"
    conda:
        CONDA_ENV
    threads: config["threads"]
    resources:
        gpu=gpu_per_job,
    params:
        run=RUN,
        flags=world_flags(WORLDS["clip"]),
    shell:
        "diffsec train-clip --data {input.data:q}/train.npz --test {input.data:q}/test.npz {params.flags} "
        "--out {output:q} {params.run} --threads {threads} > {log:q} 2>&1"


rule train_celeba_classifier:
    input:
        data="results/data/celeba",
        code=code("train-celeba-classifier"),
    # scores CelebA In-D ASR (InvisibleDiffusion's class 7); CIFAR-10's is the mirror's ResNet-56
    output:
        report(
            directory("results/models/celeba-classifier"),
            patterns=["{name}.png"],
            category="worlds",
            caption="../report/celeba_classifier.rst",
        ),
    log:
        "logs/train_celeba_classifier.log",
    benchmark:
        "benchmarks/train_celeba_classifier.tsv"
    conda:
        CONDA_ENV
    threads: config["threads"]
    resources:
        gpu=gpu_per_job,
    params:
        run=RUN,
        flags=world_flags(WORLDS["celeba_classifier"]),
    shell:
        "diffsec train-celeba-classifier --data {input.data:q} {params.flags} --out {output:q} {params.run} "
        "--threads {threads} > {log:q} 2>&1"
