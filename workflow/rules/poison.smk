# SZT training sets: the DreamBooth concepts, poisoned (Appendix F), and purified (Sec. 5.2.4).
# Set paths and flags are built in common.smk.


rule poison_concepts:
    input:
        data="results/data/szt-concepts",
        model="results/models/t2i-cifar10",
        target=lambda w: (
            "results/sources/mist_target" if w.poison in ("ea", "da-targeted") else []
        ),
        code=code("poison"),
    output:
        report(
            directory("results/poison/{poison}"),
            patterns=["{name}.png"],
            category="szt",
            caption="../report/poison.rst",
        ),
    log:
        "logs/poison/{poison}.log",
    benchmark:
        "benchmarks/poison/{poison}.tsv"
    conda:
        CONDA_ENV
    threads: config["threads"]
    resources:
        gpu=gpu_per_job,
    params:
        run=RUN,
        flags=flags(**SZT["poison"]),
        target=lambda w, input: flags(
            target=f"{input.target}/MIST.png" if input.target else ""
        ),
    shell:
        "diffsec poison --method {wildcards.poison:q} --images {input.data:q}/concepts.npz "
        "--model {input.model:q} {params.target} {params.flags} --out {output:q} {params.run} "
        "--threads {threads} > {log:q} 2>&1"


rule purify_set:
    input:
        images=lambda w: set_dir(w.set),
        model=_purifier_model,
        code=code("purify"),
    output:
        report(
            directory("results/purify/{purifier}/{set}"),
            patterns=["{name}.png"],
            category="szt",
            caption="../report/purify.rst",
        ),
    log:
        "logs/purify/{purifier}/{set}.log",
    benchmark:
        "benchmarks/purify/{purifier}/{set}.tsv"
    conda:
        CONDA_ENV
    threads: config["threads"]
    resources:
        gpu=gpu_per_job,
    params:
        run=RUN,
        images=lambda w: set_npz(w.set),
        # the world artifact (an input); a configured `model` (hub id, local dir) is one of the flags
        model=lambda w, input: flags(model=input.model or None),
        flags=lambda w: flags(**SZT["purify"][w.purifier]),
    shell:
        "diffsec purify --method {wildcards.purifier:q} --images {params.images:q} {params.model} "
        "{params.flags} --out {output:q} {params.run} --threads {threads} > {log:q} 2>&1"


rule figure_perturbations:
    input:
        clean="results/data/szt-concepts",
        poisoned=expand("results/poison/{poison}", poison=POISONS),
        code=code("figure-perturbations"),
    output:
        report(
            directory("results/figures/szt/perturbations"),
            patterns=["{name}.png"],
            category="szt",
            caption="../report/perturbations.rst",
        ),
    log:
        "logs/figure_perturbations.log",
    benchmark:
        "benchmarks/figure_perturbations.tsv"
    conda:
        CONDA_ENV
    params:
        sets=named({p: set_npz(p) for p in POISONS}),
        quality=SZT["purify"]["jpeg"].get("quality", 25),
    shell:
        "diffsec figure-perturbations --clean {input.clean:q}/concepts.npz --poisoned {params.sets} "
        "--quality {params.quality:q} --out {output:q} > {log:q} 2>&1"


rule figure_loss_per_t:
    input:
        model="results/models/t2i-cifar10",
        clean="results/data/szt-concepts",
        poisoned=f"results/poison/{FIG['poison']}",
        code=code("figure-loss-per-t"),
    output:
        report(
            directory("results/figures/szt/loss-per-t"),
            patterns=["{name}.png"],
            category="szt",
            caption="../report/loss_per_t.rst",
        ),
    log:
        "logs/figure_loss_per_t.log",
    benchmark:
        "benchmarks/figure_loss_per_t.tsv"
    conda:
        CONDA_ENV
    threads: config["threads"]
    resources:
        gpu=gpu_per_job,
    params:
        run=RUN,
        sets=named({"clean": CONCEPTS_NPZ, FIG["poison"]: set_npz(FIG["poison"])}),
    shell:
        "diffsec figure-loss-per-t --model {input.model:q} --sets {params.sets} --out {output:q} "
        "{params.run} --threads {threads} > {log:q} 2>&1"
