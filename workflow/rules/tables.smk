# Paper-shaped long-format tables (results/tables/<name>.csv + .md).


rule table_worlds:
    output:
        csv="results/tables/worlds.csv",
        md="results/tables/worlds.md",
    input:
        resnet=expand("results/models/{arch}-cifar10", arch=WORLDS["resnets"]),
        mnist="results/models/mnist-classifier",
        ddpm_fid="results/metrics/fid-ddpm-vs-test",
        train_fid="results/metrics/fid-train-vs-test",
        t2i_class="results/metrics/t2i-class-fidelity",
        t2i_vae=[] if WORLDS["t2i"]["pretrained"] else "results/metrics/t2i-vae-ceiling",
        code=code("cli/tables.py", "tables.py"),
    params:
        profile=PROFILE,
        seed=SEED,
        t2i_vae="" if WORLDS["t2i"]["pretrained"] else "--t2i-vae results/metrics/t2i-vae-ceiling",
    log:
        "logs/table_worlds.log",
    benchmark:
        "benchmarks/table_worlds.tsv"
    conda:
        CONDA_ENV
    shell:
        "diffsec table-worlds --resnet {input.resnet} --mnist {input.mnist} --ddpm-fid {input.ddpm_fid} "
        "--train-fid {input.train_fid} --t2i-class {input.t2i_class} {params.t2i_vae} --profile {params.profile} "
        "--seed {params.seed} "
        "--out {output.csv} > {log} 2>&1"


rule table_szt:
    output:
        csv="results/tables/{table}.csv",
        md="results/tables/{table}.md",
    input:
        metrics=lambda w: expand("results/metrics/szt/{defense}", defense=defenses_of(w.table)),
        # the main table's figures come with it, so `snakemake results/tables/szt.csv` gives both
        figures=lambda w: SZT_FIGURES if w.table == "szt" else [],
        code=code("cli/tables.py", "tables.py", "paper/__init__.py", "paper/szt.py", "paper/szt.csv"),
    params:
        profile=PROFILE,
        seed=SEED,
    wildcard_constraints:
        table="|".join(TABLES),
    log:
        "logs/table_{table}.log",
    benchmark:
        "benchmarks/table_{table}.tsv"
    conda:
        CONDA_ENV
    shell:
        "diffsec table-szt --table {wildcards.table} --metrics {input.metrics} --profile {params.profile} "
        "--seed {params.seed} --out {output.csv} > {log} 2>&1"


rule table_invisible:
    output:
        csv="results/tables/invisible_diffusion.csv",
        md="results/tables/invisible_diffusion.md",
    input:
        metrics=invisible_evals("invisible_diffusion"),
        figures=INV_FIGURES,
        code=code("cli/tables.py", "tables.py", "paper/__init__.py", "paper/invisible.py", "paper/invisible.csv"),
    params:
        profile=PROFILE,
        seed=SEED,
        datasets=" ".join(INV_DATASETS),
    log:
        "logs/table_invisible_diffusion.log",
    benchmark:
        "benchmarks/table_invisible_diffusion.tsv"
    conda:
        CONDA_ENV
    shell:
        "diffsec table-invisible --metrics {input.metrics} --datasets {params.datasets} --profile {params.profile} "
        "--seed {params.seed} --out {output.csv} > {log} 2>&1"


rule table_invisible_ablation:
    output:
        csv="results/tables/invisible_ablation.csv",
        md="results/tables/invisible_ablation.md",
    input:
        metrics=invisible_evals("invisible_ablation"),
        figures="results/figures/invisible/ablation",
        code=code("cli/tables.py", "tables.py", "paper/__init__.py", "paper/invisible.py", "paper/invisible.csv"),
    params:
        profile=PROFILE,
        seed=SEED,
        lambdas=" ".join(f"{l:g}" for l in INV_LAMBDAS),
        snapshots=" ".join(str(n) for n in [*INV_SNAPSHOTS, INV["finetune"]["steps"]]),
        base_lam=INV["lam"],
    log:
        "logs/table_invisible_ablation.log",
    benchmark:
        "benchmarks/table_invisible_ablation.tsv"
    conda:
        CONDA_ENV
    shell:
        "diffsec table-invisible-ablation --metrics {input.metrics} --lambdas {params.lambdas} "
        "--base-lam {params.base_lam} --snapshots {params.snapshots} --profile {params.profile} "
        "--seed {params.seed} --out {output.csv} > {log} 2>&1"
