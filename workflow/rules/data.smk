# Checksummed sources and the datasets built from them.

DATA_CFG = config["data"]
SOURCE_NAMES = ["cifar10", "mnist_test_images", "mnist_test_labels", "dreambooth10",
                "resnet20", "resnet56", "mist_target", "celeba_images", "celeba_attributes", "celeba_partition"]


rule fetch_source:
    output:
        directory("results/sources/{name}"),
    input:
        code=code("cli/data.py", "sources.py"),
    params:
        mirror=MIRROR,
        # the catalog entry itself (not the catalog file) is what this fetch depends on
        entry=lambda w: source_entry(w.name),
    wildcard_constraints:
        name="|".join(SOURCE_NAMES),
    log:
        "logs/fetch_source/{name}.log",
    benchmark:
        "benchmarks/fetch_source/{name}.tsv"
    conda:
        CONDA_ENV
    shell:
        "diffsec fetch-source --name {wildcards.name} --mirror {params.mirror:q} --out {output} > {log} 2>&1"


rule prepare_cifar10:
    output:
        report(
            directory("results/data/cifar10"),
            patterns=["{name}.png"],
            category="data",
            caption="../report/cifar10.rst",
        ),
    input:
        source="results/sources/cifar10",
        code=code("cli/data.py", "data/cifar.py", "imageset.py"),
    params:
        run=RUN,
        flags=flags(**DATA_CFG["cifar10"]),
    threads: 1
    log:
        "logs/prepare_cifar10.log",
    benchmark:
        "benchmarks/prepare_cifar10.tsv"
    conda:
        CONDA_ENV
    shell:
        "diffsec prepare-cifar10 --source {input.source} {params.flags} --out {output} {params.run} --threads {threads} > {log} 2>&1"


rule prepare_celeba:
    # InvisibleDiffusion's second dataset (paper profile): 8 classes from 3 attributes
    output:
        report(
            directory("results/data/celeba"),
            patterns=["{name}.png"],
            category="data",
            caption="../report/celeba.rst",
        ),
    input:
        images="results/sources/celeba_images",
        attributes="results/sources/celeba_attributes",
        partition="results/sources/celeba_partition",
        code=code("cli/celeba.py", "data/celeba.py", "imageset.py"),
    params:
        run=RUN,
        flags=flags(**DATA_CFG["celeba"]),
    threads: 1
    log:
        "logs/prepare_celeba.log",
    benchmark:
        "benchmarks/prepare_celeba.tsv"
    conda:
        CONDA_ENV
    shell:
        "diffsec prepare-celeba --images {input.images} --attributes {input.attributes} --partition {input.partition} "
        "{params.flags} --out {output} {params.run} --threads {threads} > {log} 2>&1"


rule prepare_mnist:
    output:
        report(
            directory("results/data/mnist"),
            patterns=["{name}.png"],
            category="data",
            caption="../report/mnist_data.rst",
        ),
    input:
        images="results/sources/mnist_test_images",
        labels="results/sources/mnist_test_labels",
        code=code("cli/data.py", "data/mnist.py", "imageset.py"),
    params:
        run=RUN,
        flags=flags(**DATA_CFG["mnist"]),
    threads: 1
    log:
        "logs/prepare_mnist.log",
    benchmark:
        "benchmarks/prepare_mnist.tsv"
    conda:
        CONDA_ENV
    shell:
        "diffsec prepare-mnist --images {input.images} --labels {input.labels} {params.flags} "
        "--out {output} {params.run} --threads {threads} > {log} 2>&1"


rule prepare_dreambooth:
    output:
        report(
            directory("results/data/dreambooth"),
            patterns=["{name}.png"],
            category="data",
            caption="../report/dreambooth.rst",
        ),
    input:
        source="results/sources/dreambooth10",
        code=code("cli/data.py", "data/dreambooth.py", "data/masks.py", "imageset.py"),
    params:
        run=RUN,
        flags=flags(**DATA_CFG["dreambooth"]),
    threads: 1
    resources:
        gpu=1 if DATA_CFG["dreambooth"]["masker"] == "sam" else 0,
    log:
        "logs/prepare_dreambooth.log",
    benchmark:
        "benchmarks/prepare_dreambooth.tsv"
    conda:
        CONDA_ENV
    shell:
        "diffsec prepare-dreambooth --source {input.source} {params.flags} --out {output} {params.run} --threads {threads} > {log} 2>&1"


rule prepare_szt_concepts:
    # The SZT slice's subjects: the DreamBooth set restricted to szt.concepts ([] = all ten), so
    # poisons and purifiers only touch the images that are learned.
    output:
        report(
            directory("results/data/szt-concepts"),
            patterns=["{name}.png"],
            category="szt",
            caption="../report/dreambooth.rst",
        ),
    input:
        source="results/sources/dreambooth10",
        code=code("cli/data.py", "data/dreambooth.py", "data/masks.py", "imageset.py"),
    params:
        run=RUN,
        flags=flags(**DATA_CFG["dreambooth"]),
        concepts=" ".join(config["szt"]["concepts"]),
    threads: 1
    resources:
        gpu=1 if DATA_CFG["dreambooth"]["masker"] == "sam" else 0,
    log:
        "logs/prepare_szt_concepts.log",
    benchmark:
        "benchmarks/prepare_szt_concepts.tsv"
    conda:
        CONDA_ENV
    shell:
        "diffsec prepare-dreambooth --source {input.source} {params.flags} --concepts {params.concepts} "
        "--out {output} {params.run} --threads {threads} > {log} 2>&1"
