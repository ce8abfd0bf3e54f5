# Paper-shaped long-format tables (results/tables/<name>.csv + .md).


rule table_worlds:
    input:
        resnet=expand("results/models/{arch}-cifar10", arch=WORLDS["resnets"]),
        mnist="results/models/mnist-classifier",
        ddpm_fid="results/metrics/fid-ddpm-vs-test",
        train_fid="results/metrics/fid-train-vs-test",
        t2i_class="results/metrics/t2i-class-fidelity",
        t2i_vae=[] if WORLDS["t2i"]["pretrained"] else "results/metrics/t2i-vae-ceiling",
        code=code("table-worlds"),
    output:
        csv="results/tables/worlds.csv",
        md="results/tables/worlds.md",
    log:
        "logs/table_worlds.log",
    benchmark:
        "benchmarks/table_worlds.tsv"
    conda:
        CONDA_ENV
    params:
        profile=PROFILE,
        seed=SEED,
        t2i_vae=flags(
            t2i_vae=(
                ""
                if WORLDS["t2i"]["pretrained"]
                else "results/metrics/t2i-vae-ceiling"
            )
        ),
    shell:
        "diffsec table-worlds --resnet {input.resnet:q} --mnist {input.mnist:q} --ddpm-fid {input.ddpm_fid:q} "
        "--train-fid {input.train_fid:q} --t2i-class {input.t2i_class:q} {params.t2i_vae} "
        "--profile {params.profile:q} --seed {params.seed:q} --out {output.csv:q} > {log:q} 2>&1"


rule table_szt:
    input:
        metrics=szt_table_metrics,
        # the main table's figures and DINO floor / ceiling come with it
        figures=lambda w: SZT_FIGURES if w.table == "szt" else [],
        reference=lambda w: SZT_REFERENCE if w.table == "szt" else [],
        code=code("table-szt"),
    output:
        csv="results/tables/{table}.csv",
        md="results/tables/{table}.md",
    log:
        "logs/table_{table}.log",
    benchmark:
        "benchmarks/table_{table}.tsv"
    conda:
        CONDA_ENV
    params:
        profile=PROFILE,
        seed=SEED,
        reference=lambda w, input: flags(reference=input.reference or None),
    shell:
        "diffsec table-szt --table {wildcards.table:q} --metrics {input.metrics:q} {params.reference} "
        "--profile {params.profile:q} --seed {params.seed:q} --out {output.csv:q} > {log:q} 2>&1"


rule table_invisible:
    input:
        metrics=invisible_evals("invisible_diffusion"),
        figures=INV_FIGURES,
        code=code("table-invisible"),
    output:
        csv="results/tables/invisible_diffusion.csv",
        md="results/tables/invisible_diffusion.md",
    log:
        "logs/table_invisible_diffusion.log",
    benchmark:
        "benchmarks/table_invisible_diffusion.tsv"
    conda:
        CONDA_ENV
    params:
        profile=PROFILE,
        seed=SEED,
        datasets=words(INV_PLAN.datasets),
        ordinary=flags(ordinary=list(INV_PLAN.ordinary)),
    shell:
        "diffsec table-invisible --metrics {input.metrics:q} --datasets {params.datasets} {params.ordinary} "
        "--profile {params.profile:q} --seed {params.seed:q} --out {output.csv:q} > {log:q} 2>&1"


rule table_invisible_ablation:
    input:
        metrics=invisible_evals("invisible_ablation"),
        code=code("table-invisible-ablation"),
    output:
        csv="results/tables/invisible_ablation.csv",
        md="results/tables/invisible_ablation.md",
    log:
        "logs/table_invisible_ablation.log",
    benchmark:
        "benchmarks/table_invisible_ablation.tsv"
    conda:
        CONDA_ENV
    params:
        profile=PROFILE,
        seed=SEED,
        lambdas=words(f"{lam:g}" for lam in INV_PLAN.lambdas),
        snapshots=words([*INV_PLAN.snapshots, INV_PLAN.final_step]),
        base_lam=INV_PLAN.lam,
        ordinary=flags(ordinary=list(INV_PLAN.ordinary)),
    shell:
        "diffsec table-invisible-ablation --metrics {input.metrics:q} --lambdas {params.lambdas} "
        "--base-lam {params.base_lam:q} --snapshots {params.snapshots} {params.ordinary} "
        "--profile {params.profile:q} --seed {params.seed:q} --out {output.csv:q} > {log:q} 2>&1"


# issue 19 item 10: ASR of the In-D attack against fine-tuning steps, per fine-tuning variant
rule table_invisible_take:
    input:
        metrics=invisible_evals("invisible_take") if INV_PLAN.take else [],
        code=code("table-invisible-take"),
    output:
        csv="results/tables/invisible_take.csv",
        md="results/tables/invisible_take.md",
    log:
        "logs/table_invisible_take.log",
    benchmark:
        "benchmarks/table_invisible_take.tsv"
    conda:
        CONDA_ENV
    params:
        profile=PROFILE,
        seed=SEED,
        variants=flags(variants=INV_PLAN.take),
        snapshots=words(INV_PLAN.take_snapshots),
    shell:
        "diffsec table-invisible-take --metrics {input.metrics:q} {params.variants} "
        "--snapshots {params.snapshots} --profile {params.profile:q} --seed {params.seed:q} "
        "--out {output.csv:q} > {log:q} 2>&1"


# every paper's headline claims as verdicts over the tables above (src/diffsec/paper/claims.py)
rule table_claims:
    input:
        tables=[
            "results/tables/szt.csv",
            "results/tables/invisible_diffusion.csv",
            "results/tables/invisible_ablation.csv",
            "results/tables/sedid.csv",
            "results/tables/spd.csv",
            "results/tables/sau.csv",
        ],
        code=code("table-claims"),
    output:
        csv="results/tables/claims.csv",
        md=report(
            "results/tables/claims.md",
            category="Claims",
            caption="../report/claims.rst",
        ),
        figure=report(
            "results/figures/claims.png",
            category="Claims",
            caption="../report/claims.rst",
        ),
    log:
        "logs/table_claims.log",
    benchmark:
        "benchmarks/table_claims.tsv"
    conda:
        CONDA_ENV
    params:
        profile=PROFILE,
        seed=SEED,
    shell:
        "diffsec table-claims --tables {input.tables:q} --profile {params.profile:q} --seed {params.seed:q} "
        "--out {output.csv:q} --figure {output.figure:q} > {log:q} 2>&1"


# Spearman's rho of our cells against the papers' printed ones, per table and metric
rule table_agreement:
    input:
        tables=PAPER_TABLE_FILES,
        code=code("table-agreement"),
    output:
        csv="results/tables/agreement.csv",
        md="results/tables/agreement.md",
    log:
        "logs/table_agreement.log",
    benchmark:
        "benchmarks/table_agreement.tsv"
    conda:
        CONDA_ENV
    params:
        profile=PROFILE,
        seed=SEED,
    shell:
        "diffsec table-agreement --tables {input.tables:q} --profile {params.profile:q} "
        "--seed {params.seed:q} --out {output.csv:q} > {log:q} 2>&1"
