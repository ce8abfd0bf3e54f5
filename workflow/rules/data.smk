# Checksummed sources and the datasets built from them.

DATA_CFG = config["data"]


rule fetch_source:
    input:
        code=code("fetch-source"),
    output:
        directory("results/sources/{source}"),
    log:
        "logs/fetch_source/{source}.log",
    benchmark:
        "benchmarks/fetch_source/{source}.tsv"
    conda:
        CONDA_ENV
    params:
        mirror=MIRROR,
        # the catalog entry itself (not the catalog file) is what this fetch depends on
        entry=lambda w: source_entry(w.source),
    shell:
        "diffsec fetch-source --name {wildcards.source:q} --mirror {params.mirror:q} --out {output:q} > {log:q} 2>&1"


rule prepare_cifar10:
    input:
        source="results/sources/cifar10",
        code=code("prepare-cifar10"),
    output:
        report(
            directory("results/data/cifar10"),
            patterns=["{name}.png"],
            category="data",
            caption="../report/cifar10.rst",
        ),
    log:
        "logs/prepare_cifar10.log",
    benchmark:
        "benchmarks/prepare_cifar10.tsv"
    conda:
        CONDA_ENV
    threads: 1
    params:
        run=RUN,
        flags=flags(**DATA_CFG["cifar10"]),
    shell:
        "diffsec prepare-cifar10 --source {input.source:q} {params.flags} --out {output:q} {params.run} "
        "--threads {threads} > {log:q} 2>&1"


rule prepare_celeba:
    input:
        images="results/sources/celeba_images",
        attributes="results/sources/celeba_attributes",
        partition="results/sources/celeba_partition",
        code=code("prepare-celeba"),
    # InvisibleDiffusion's second dataset (paper profile): 8 classes from 3 attributes
    output:
        report(
            directory("results/data/celeba"),
            patterns=["{name}.png"],
            category="data",
            caption="../report/celeba.rst",
        ),
    log:
        "logs/prepare_celeba.log",
    benchmark:
        "benchmarks/prepare_celeba.tsv"
    conda:
        CONDA_ENV
    threads: 1
    params:
        run=RUN,
        flags=flags(**DATA_CFG["celeba"]),
    shell:
        "diffsec prepare-celeba --images {input.images:q} --attributes {input.attributes:q} "
        "--partition {input.partition:q} {params.flags} --out {output:q} {params.run} --threads {threads} "
        "> {log:q} 2>&1"


rule prepare_mnist:
    input:
        images="results/sources/mnist_test_images",
        labels="results/sources/mnist_test_labels",
        code=code("prepare-mnist"),
    output:
        report(
            directory("results/data/mnist"),
            patterns=["{name}.png"],
            category="data",
            caption="../report/mnist_data.rst",
        ),
    log:
        "logs/prepare_mnist.log",
    benchmark:
        "benchmarks/prepare_mnist.tsv"
    conda:
        CONDA_ENV
    threads: 1
    params:
        run=RUN,
        flags=flags(**DATA_CFG["mnist"]),
    shell:
        "diffsec prepare-mnist --images {input.images:q} --labels {input.labels:q} {params.flags} "
        "--out {output:q} {params.run} --threads {threads} > {log:q} 2>&1"


rule prepare_dreambooth:
    input:
        source="results/sources/dreambooth10",
        code=code("prepare-dreambooth"),
    output:
        report(
            directory("results/data/dreambooth"),
            patterns=["{name}.png"],
            category="data",
            caption="../report/dreambooth.rst",
        ),
    log:
        "logs/prepare_dreambooth.log",
    benchmark:
        "benchmarks/prepare_dreambooth.tsv"
    conda:
        CONDA_ENV
    threads: 1
    resources:
        gpu=gpu_per_job if DATA_CFG["dreambooth"]["masker"] == "sam" else 0,
    params:
        run=RUN,
        flags=flags(**DATA_CFG["dreambooth"]),
    shell:
        "diffsec prepare-dreambooth --source {input.source:q} {params.flags} --out {output:q} {params.run} "
        "--threads {threads} > {log:q} 2>&1"


rule prepare_szt_concepts:
    input:
        source="results/sources/dreambooth10",
        code=code("prepare-dreambooth"),
    # The SZT slice's subjects: the DreamBooth set restricted to szt.concepts ([] = all ten), so
    # poisons and purifiers only touch the images that are learned.
    output:
        report(
            directory("results/data/szt-concepts"),
            patterns=["{name}.png"],
            category="szt",
            caption="../report/dreambooth.rst",
        ),
    log:
        "logs/prepare_szt_concepts.log",
    benchmark:
        "benchmarks/prepare_szt_concepts.tsv"
    conda:
        CONDA_ENV
    threads: 1
    resources:
        gpu=gpu_per_job if DATA_CFG["dreambooth"]["masker"] == "sam" else 0,
    params:
        run=RUN,
        flags=flags(**DATA_CFG["dreambooth"]),
        concepts=words(SZT["concepts"]),
    shell:
        "diffsec prepare-dreambooth --source {input.source:q} {params.flags} --concepts {params.concepts} "
        "--out {output:q} {params.run} --threads {threads} > {log:q} 2>&1"
