# World models: the pixel DDPM, the text-to-image latent diffusion model, the classifiers.

WORLDS = config["worlds"]


rule train_ddpm:
    output:
        report(
            directory("results/models/ddpm-{dataset}"),
            patterns=["{name}.png"],
            category="worlds",
            caption="../report/ddpm.rst",
        ),
    input:
        data=lambda w: [] if ddpm_world(w)["pretrained"] else f"results/data/{w.dataset}",
        code=code("cli/ddpm.py", "models/ddpm.py", "diffusion/sampling.py", "imageset.py"),
    params:
        run=RUN,
        data=lambda w, input: f"--data {input.data}/train.npz" if input.data else "",
        flags=lambda w: flags(**ddpm_world(w)),
    wildcard_constraints:
        dataset="|".join(DDPM_WORLDS),
    threads: config["threads"]
    resources:
        gpu=1,
    log:
        "logs/train_ddpm/{dataset}.log",
    benchmark:
        "benchmarks/train_ddpm/{dataset}.tsv"
    conda:
        CONDA_ENV
    shell:
        "diffsec train-ddpm {params.data} {params.flags} --out {output} {params.run} --threads {threads} > {log} 2>&1"


rule train_t2i:
    output:
        report(
            directory("results/models/t2i-cifar10"),
            patterns=["{name}.png"],
            category="worlds",
            caption="../report/t2i.rst",
        ),
    input:
        data=[] if WORLDS["t2i"]["pretrained"] else "results/data/cifar10",
        code=code("cli/t2i.py", "models/t2i.py", "models/tokenizer.py", "imageset.py"),
    params:
        run=RUN,
        data=lambda w, input: f"--data {input.data}/train.npz" if input.data else "",
        flags=flags(**WORLDS["t2i"]),
    threads: config["threads"]
    resources:
        gpu=1,
    log:
        "logs/train_t2i.log",
    benchmark:
        "benchmarks/train_t2i.tsv"
    conda:
        CONDA_ENV
    shell:
        "diffsec train-t2i {params.data} {params.flags} --out {output} {params.run} --threads {threads} > {log} 2>&1"


rule train_mnist_classifier:
    output:
        report(
            directory("results/models/mnist-classifier"),
            patterns=["{name}.png"],
            category="worlds",
            caption="../report/mnist.rst",
        ),
    input:
        data="results/data/mnist",
        code=code("cli/mnist.py", "models/mnist_net.py", "models/classifier_fit.py"),
    params:
        run=RUN,
        flags=flags(**WORLDS["mnist_classifier"]),
    threads: 1
    log:
        "logs/train_mnist_classifier.log",
    benchmark:
        "benchmarks/train_mnist_classifier.tsv"
    conda:
        CONDA_ENV
    shell:
        "diffsec train-mnist-classifier --data {input.data} {params.flags} --out {output} {params.run} --threads {threads} > {log} 2>&1"


rule classifier_resnet:
    output:
        report(
            directory("results/models/{arch}-cifar10"),
            patterns=["{name}.png"],
            category="worlds",
            caption="../report/resnet.rst",
        ),
    input:
        weights="results/sources/{arch}",
        data="results/data/cifar10",
        code=code("cli/classifiers.py", "models/resnet_cifar.py", "metrics/classify.py"),
    wildcard_constraints:
        arch="resnet20|resnet56",
    params:
        run=RUN,
    threads: 1
    log:
        "logs/classifier_resnet/{arch}.log",
    benchmark:
        "benchmarks/classifier_resnet/{arch}.tsv"
    conda:
        CONDA_ENV
    shell:
        "diffsec classifier-resnet --arch {wildcards.arch} --weights {input.weights}/{wildcards.arch}-*.th "
        "--testset {input.data}/test.npz --out {output} {params.run} --threads {threads} > {log} 2>&1"


rule train_clip:
    # The tiny profile's CLIP-score model: no pretrained CLIP is reachable offline.
    output:
        report(
            directory("results/models/clip-cifar10"),
            patterns=["{name}.png"],
            category="worlds",
            caption="../report/clip.rst",
        ),
    input:
        data="results/data/cifar10",
        code=code("cli/clip.py", "models/clip_tiny.py", "models/clip_train.py"),
    params:
        run=RUN,
        flags=flags(**WORLDS["clip"]),
    threads: config["threads"]
    resources:
        gpu=1,
    log:
        "logs/train_clip.log",
    benchmark:
        "benchmarks/train_clip.tsv"
    conda:
        CONDA_ENV
    shell:
        "diffsec train-clip --data {input.data}/train.npz --test {input.data}/test.npz {params.flags} "
        "--out {output} {params.run} --threads {threads} > {log} 2>&1"


rule train_celeba_classifier:
    # scores CelebA In-D ASR (InvisibleDiffusion's class 7); CIFAR-10's is the mirror's ResNet-56
    output:
        report(
            directory("results/models/celeba-classifier"),
            patterns=["{name}.png"],
            category="worlds",
            caption="../report/celeba_classifier.rst",
        ),
    input:
        data="results/data/celeba",
        code=code("cli/celeba_classifier.py", "models/celeba_net.py", "models/classifier_fit.py"),
    params:
        run=RUN,
        flags=flags(**WORLDS["celeba_classifier"]),
    threads: config["threads"]
    resources:
        gpu=1,
    log:
        "logs/train_celeba_classifier.log",
    benchmark:
        "benchmarks/train_celeba_classifier.tsv"
    conda:
        CONDA_ENV
    shell:
        "diffsec train-celeba-classifier --data {input.data} {params.flags} --out {output} {params.run} "
        "--threads {threads} > {log} 2>&1"
