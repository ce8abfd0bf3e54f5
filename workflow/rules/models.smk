# World models: the pixel DDPM, the text-to-image latent diffusion model, the classifiers.

WORLDS = config["worlds"]


rule train_ddpm:
    output:
        directory("results/models/ddpm-cifar10"),
    input:
        data=[] if WORLDS["ddpm"]["pretrained"] else "results/data/cifar10",
        code=code("cli/ddpm.py", "models/ddpm.py", "diffusion/sampling.py", "imageset.py"),
    params:
        data=lambda w, input: f"--data {input.data}/train.npz" if input.data else "",
        flags=flags(**WORLDS["ddpm"]),
    threads: workflow.cores
    resources:
        gpu=1,
    log:
        "logs/train_ddpm.log",
    benchmark:
        "benchmarks/train_ddpm.tsv"
    conda:
        CONDA_ENV
    shell:
        "diffsec train-ddpm {params.data} {params.flags} --out {output} {RUN} > {log} 2>&1"


rule train_t2i:
    output:
        directory("results/models/t2i-cifar10"),
    input:
        data=[] if WORLDS["t2i"]["pretrained"] else "results/data/cifar10",
        code=code("cli/t2i.py", "models/t2i.py", "models/tokenizer.py", "imageset.py"),
    params:
        data=lambda w, input: f"--data {input.data}/train.npz" if input.data else "",
        flags=flags(**WORLDS["t2i"]),
    threads: workflow.cores
    resources:
        gpu=1,
    log:
        "logs/train_t2i.log",
    benchmark:
        "benchmarks/train_t2i.tsv"
    conda:
        CONDA_ENV
    shell:
        "diffsec train-t2i {params.data} {params.flags} --out {output} {RUN} > {log} 2>&1"


rule train_mnist_classifier:
    output:
        directory("results/models/mnist-classifier"),
    input:
        data="results/data/mnist",
        code=code("cli/mnist.py", "models/mnist_net.py"),
    params:
        flags=flags(**WORLDS["mnist_classifier"]),
    threads: 1
    log:
        "logs/train_mnist_classifier.log",
    benchmark:
        "benchmarks/train_mnist_classifier.tsv"
    conda:
        CONDA_ENV
    shell:
        "diffsec train-mnist-classifier --data {input.data} {params.flags} --out {output} {RUN} > {log} 2>&1"


rule classifier_resnet:
    output:
        directory("results/models/{arch}-cifar10"),
    input:
        weights="results/sources/{arch}",
        data="results/data/cifar10",
        code=code("cli/classifiers.py", "models/resnet_cifar.py", "metrics/classify.py"),
    wildcard_constraints:
        arch="resnet20|resnet56",
    threads: 1
    log:
        "logs/classifier_resnet/{arch}.log",
    benchmark:
        "benchmarks/classifier_resnet/{arch}.tsv"
    conda:
        CONDA_ENV
    shell:
        "diffsec classifier-resnet --arch {wildcards.arch} --weights {input.weights}/{wildcards.arch}-*.th "
        "--testset {input.data}/test.npz --out {output} {RUN} > {log} 2>&1"
