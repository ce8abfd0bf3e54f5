# SZT: batched textual inversion per defense, its samples, metrics, the SSM figure.
# The defense -> training sets map is SZT_PLAN (src/diffsec/plan/szt.py); flags are built in common.smk.
# {prompts}: token = the paper's generation prompts ("a <tok> on the beach"), class = with the class
# noun ("a <tok> dog on the beach"), the szt_prompts ablation.


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
            directory("results/personalize/gen/{prompts}/{defense}"),
            patterns=["grid.png"],
            category="szt",
            subcategory="generated",
            caption="../report/generate_ti.rst",
        ),
    log:
        "logs/generate_ti/{prompts}/{defense}.log",
    benchmark:
        "benchmarks/generate_ti/{prompts}/{defense}.tsv"
    conda:
        CONDA_ENV
    threads: config["threads"]
    resources:
        gpu=gpu_per_job,
    params:
        run=RUN,
        flags=generate_ti_flags,
    shell:
        "diffsec generate-ti --model {input.model:q} --embeddings {input.embeddings:q} "
        "--prompts {input.concepts:q}/prompts.json {params.flags} --out {output:q} {params.run} "
        "--threads {threads} > {log:q} 2>&1"


rule eval_ti:
    input:
        generated="results/personalize/gen/{prompts}/{defense}",
        embeddings="results/personalize/ti/{defense}",
        concepts="results/data/szt-concepts",
        reference=SZT_REFERENCE,
        backbone=_szt_backbone,
        fid_backbone=_szt_fid_backbone,
        clip=_clip_model,
        code=code("eval-ti"),
    output:
        directory("results/metrics/szt/{prompts}/{defense}"),
    log:
        "logs/eval_ti/{prompts}/{defense}.log",
    benchmark:
        "benchmarks/eval_ti/{prompts}/{defense}.tsv"
    conda:
        CONDA_ENV
    threads: 1
    params:
        run=RUN,
        label=szt_label,
        flags=eval_ti_flags,
    shell:
        "diffsec eval-ti --generated {input.generated:q} --embeddings {input.embeddings:q} "
        "--clean {input.concepts:q}/concepts.npz --prompts {input.concepts:q}/prompts.json "
        "--centre {input.reference:q}/centre.npy --label {params.label:q} {params.flags} --out {output:q} {params.run} --threads {threads} "
        "> {log:q} 2>&1"


# what the DINO metric is read against: same-class CIFAR photos (floor), held-out concept photos (ceiling)
rule eval_ti_reference:
    input:
        concepts="results/data/szt-concepts",
        cifar="results/data/cifar10",
        backbone=_szt_backbone,
        code=code("eval-ti-reference"),
    output:
        directory(SZT_REFERENCE),
    log:
        "logs/eval_ti_reference.log",
    benchmark:
        "benchmarks/eval_ti_reference.tsv"
    conda:
        CONDA_ENV
    threads: 1
    params:
        run=RUN,
        flags=szt_backbone_flags,
        n=SZT["metrics"]["reference_n"],
    shell:
        "diffsec eval-ti-reference --clean {input.concepts:q}/concepts.npz --others {input.cifar:q}/test.npz "
        "--n {params.n:q} {params.flags} --out {output:q} {params.run} --threads {threads} > {log:q} 2>&1"


rule figure_ti_grid:
    input:
        generated=expand(
            "results/personalize/gen/token/{defense}", defense=defenses_of("szt")
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
        generated=named(
            {d: f"results/personalize/gen/token/{d}" for d in defenses_of("szt")}
        ),
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
