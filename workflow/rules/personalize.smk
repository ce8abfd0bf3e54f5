# SZT: batched textual inversion per defense, its samples, metrics, the SSM figure.
# The defense -> training sets map and the flags are built in common.smk.


rule train_ti:
    output:
        report(
            directory("results/personalize/ti/{defense}"),
            patterns=["loss.png"],
            category="szt",
            subcategory="textual inversion",
            caption="../report/train_ti.rst",
        ),
    input:
        model="results/models/t2i-cifar10",
        concepts="results/data/szt-concepts",
        sets=ti_sets,
        code=code("cli/personalize.py", "personalize/runs.py", "personalize/textual_inversion.py",
                  "personalize/optim.py", "personalize/tokens.py", "defense/masking.py",
                  "defense/timesteps.py"),
    params:
        run=RUN,
        flags=ti_flags,
    wildcard_constraints:
        defense="|".join(re.escape(d) for d in DEFENSES),
    threads: config["threads"]
    resources:
        gpu=1,
    log:
        "logs/train_ti/{defense}.log",
    benchmark:
        "benchmarks/train_ti/{defense}.tsv"
    conda:
        CONDA_ENV
    shell:
        "diffsec train-ti --model {input.model} {params.flags} --out {output} {params.run} "
        "--threads {threads} > {log} 2>&1"


rule generate_ti:
    output:
        report(
            directory("results/personalize/gen/{defense}"),
            patterns=["grid.png"],
            category="szt",
            subcategory="generated",
            caption="../report/generate_ti.rst",
        ),
    input:
        model="results/models/t2i-cifar10",
        embeddings="results/personalize/ti/{defense}",
        concepts="results/data/szt-concepts",
        code=code("cli/personalize.py", "personalize/generate.py", "personalize/tokens.py"),
    params:
        run=RUN,
        flags=flags(**SZT["generate"]),
    wildcard_constraints:
        defense="|".join(re.escape(d) for d in DEFENSES),
    threads: config["threads"]
    resources:
        gpu=1,
    log:
        "logs/generate_ti/{defense}.log",
    benchmark:
        "benchmarks/generate_ti/{defense}.tsv"
    conda:
        CONDA_ENV
    shell:
        "diffsec generate-ti --model {input.model} --embeddings {input.embeddings} "
        "--prompts {input.concepts}/prompts.json {params.flags} --out {output} {params.run} "
        "--threads {threads} > {log} 2>&1"


rule eval_ti:
    output:
        directory("results/metrics/szt/{defense}"),
    input:
        generated="results/personalize/gen/{defense}",
        embeddings="results/personalize/ti/{defense}",
        concepts="results/data/szt-concepts",
        backbone=_szt_backbone,
        fid_backbone=_szt_fid_backbone,
        clip=_clip_model,
        code=code("cli/personalize_eval.py", "personalize/evaluate.py", "metrics/similarity.py",
                  "metrics/fid.py", "metrics/backbones.py"),
    params:
        run=RUN,
        flags=eval_ti_flags,
    wildcard_constraints:
        defense="|".join(re.escape(d) for d in DEFENSES),
    threads: 1
    log:
        "logs/eval_ti/{defense}.log",
    benchmark:
        "benchmarks/eval_ti/{defense}.tsv"
    conda:
        CONDA_ENV
    shell:
        "diffsec eval-ti --generated {input.generated} --embeddings {input.embeddings} "
        "--clean {input.concepts}/concepts.npz --prompts {input.concepts}/prompts.json "
        "--label {wildcards.defense} {params.flags} --out {output} {params.run} --threads {threads} > {log} 2>&1"


rule figure_ti_grid:
    output:
        report(
            directory("results/figures/szt/ti-grid"),
            patterns=["{name}.png"],
            category="szt",
            caption="../report/ti_grid.rst",
        ),
    input:
        generated=expand("results/personalize/gen/{defense}", defense=defenses_of("szt")),
        code=code("cli/szt_figures.py"),
    params:
        generated=" ".join(f"{d}=results/personalize/gen/{d}" for d in defenses_of("szt")),
        run=f"{FIG['concept']}-{FIG['poison']}",
        n=min(8, 24 * SZT["generate"].get("per_prompt", 5)),
    log:
        "logs/figure_ti_grid.log",
    benchmark:
        "benchmarks/figure_ti_grid.tsv"
    conda:
        CONDA_ENV
    shell:
        "diffsec figure-ti-grid --generated {params.generated} --run {params.run:q} --n {params.n} "
        "--out {output} > {log} 2>&1"


rule ssm_ti:
    output:
        report(
            directory("results/figures/szt/ssm"),
            patterns=["{name}.png"],
            category="szt",
            caption="../report/ssm.rst",
        ),
    input:
        model="results/models/t2i-cifar10",
        embeddings="results/personalize/ti/nominal",
        concepts="results/data/szt-concepts",
        poisoned=f"results/poison/{FIG['poison']}",
        code=code("cli/personalize.py", "personalize/ssm.py", "personalize/tokens.py"),
    params:
        run=RUN,
        flags=flags(run=f"{FIG['concept']}-{FIG['poison']}", concept=FIG["concept"],
                    timesteps=FIG.get("timesteps"), draws=FIG.get("draws")),
        poisoned=set_npz(FIG["poison"]),
    threads: config["threads"]
    resources:
        gpu=1,
    log:
        "logs/ssm_ti.log",
    benchmark:
        "benchmarks/ssm_ti.tsv"
    conda:
        CONDA_ENV
    shell:
        "diffsec ssm-ti --model {input.model} --embeddings {input.embeddings} "
        "--clean {input.concepts}/concepts.npz --poisoned {params.poisoned} {params.flags} "
        "--out {output} {params.run} --threads {threads} > {log} 2>&1"
