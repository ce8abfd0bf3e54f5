# SZT: batched textual inversion per defense, its samples, metrics, the SSM figure.
# The defense -> training sets map is SZT_PLAN (src/diffsec/plan/szt.py); flags are built in common.smk.


rule train_ti:
    input:
        model="results/models/t2i-cifar10",
        concepts="results/data/szt-concepts",
        sets=ti_sets,
        code=code("train-ti"),
    output:
        report(
            directory("results/personalize/ti/{defense}"),
            patterns=["loss.png"],
            category="szt",
            subcategory="textual inversion",
            caption="../report/train_ti.rst",
        ),
    log:
        "logs/train_ti/{defense}.log",
    benchmark:
        "benchmarks/train_ti/{defense}.tsv"
    conda:
        CONDA_ENV
    threads: config["threads"]
    resources:
        gpu=gpu_per_job,
    params:
        run=RUN,
        flags=ti_flags,
    shell:
        "diffsec train-ti --model {input.model:q} {params.flags} --out {output:q} {params.run} "
        "--threads {threads} > {log:q} 2>&1"


rule generate_ti:
    input:
        model="results/models/t2i-cifar10",
        embeddings="results/personalize/ti/{defense}",
        concepts="results/data/szt-concepts",
        code=code("generate-ti"),
    output:
        report(
            directory("results/personalize/gen/{defense}"),
            patterns=["grid.png"],
            category="szt",
            subcategory="generated",
            caption="../report/generate_ti.rst",
        ),
    log:
        "logs/generate_ti/{defense}.log",
    benchmark:
        "benchmarks/generate_ti/{defense}.tsv"
    conda:
        CONDA_ENV
    threads: config["threads"]
    resources:
        gpu=gpu_per_job,
    params:
        run=RUN,
        flags=flags(**SZT["generate"]),
    shell:
        "diffsec generate-ti --model {input.model:q} --embeddings {input.embeddings:q} "
        "--prompts {input.concepts:q}/prompts.json {params.flags} --out {output:q} {params.run} "
        "--threads {threads} > {log:q} 2>&1"


rule eval_ti:
    input:
        generated="results/personalize/gen/{defense}",
        embeddings="results/personalize/ti/{defense}",
        concepts="results/data/szt-concepts",
        backbone=_szt_backbone,
        fid_backbone=_szt_fid_backbone,
        clip=_clip_model,
        code=code("eval-ti"),
    output:
        directory("results/metrics/szt/{defense}"),
    log:
        "logs/eval_ti/{defense}.log",
    benchmark:
        "benchmarks/eval_ti/{defense}.tsv"
    conda:
        CONDA_ENV
    threads: 1
    params:
        run=RUN,
        flags=eval_ti_flags,
    shell:
        "diffsec eval-ti --generated {input.generated:q} --embeddings {input.embeddings:q} "
        "--clean {input.concepts:q}/concepts.npz --prompts {input.concepts:q}/prompts.json "
        "--label {wildcards.defense:q} {params.flags} --out {output:q} {params.run} --threads {threads} "
        "> {log:q} 2>&1"


rule figure_ti_grid:
    input:
        generated=expand(
            "results/personalize/gen/{defense}", defense=defenses_of("szt")
        ),
        code=code("figure-ti-grid"),
    output:
        report(
            directory("results/figures/szt/ti-grid"),
            patterns=["{name}.png"],
            category="szt",
            caption="../report/ti_grid.rst",
        ),
    log:
        "logs/figure_ti_grid.log",
    benchmark:
        "benchmarks/figure_ti_grid.tsv"
    conda:
        CONDA_ENV
    params:
        generated=named({d: f"results/personalize/gen/{d}" for d in defenses_of("szt")}),
        run=f"{FIG['concept']}-{FIG['poison']}",
        n=min(8, 24 * SZT["generate"].get("per_prompt", 5)),
    shell:
        "diffsec figure-ti-grid --generated {params.generated} --run {params.run:q} --n {params.n:q} "
        "--out {output:q} > {log:q} 2>&1"


rule ssm_ti:
    input:
        model="results/models/t2i-cifar10",
        embeddings="results/personalize/ti/nominal",
        concepts="results/data/szt-concepts",
        poisoned=f"results/poison/{FIG['poison']}",
        code=code("ssm-ti"),
    output:
        report(
            directory("results/figures/szt/ssm"),
            patterns=["{name}.png"],
            category="szt",
            caption="../report/ssm.rst",
        ),
    log:
        "logs/ssm_ti.log",
    benchmark:
        "benchmarks/ssm_ti.tsv"
    conda:
        CONDA_ENV
    threads: config["threads"]
    resources:
        gpu=gpu_per_job,
    params:
        run=RUN,
        flags=flags(
            run=f"{FIG['concept']}-{FIG['poison']}",
            concept=FIG["concept"],
            timesteps=FIG.get("timesteps"),
            draws=FIG.get("draws"),
        ),
        poisoned=set_npz(FIG["poison"]),
    shell:
        "diffsec ssm-ti --model {input.model:q} --embeddings {input.embeddings:q} "
        "--clean {input.concepts:q}/concepts.npz --poisoned {params.poisoned:q} {params.flags} "
        "--out {output:q} {params.run} --threads {threads} > {log:q} 2>&1"
