# SeDID (paper 002): real training images vs the DDPM world's own samples, told apart by
# stepwise inversion errors (results/detect/...), then sedid.csv (src/diffsec/plan/sedid.py).
rule sample_sedid:
    input:
        model="results/models/ddpm-cifar10",
        code=code("sample-ddpm"),
    output:
        directory("results/samples/sedid-ddpm"),
    log:
        "logs/sample_sedid.log",
    benchmark:
        "benchmarks/sample_sedid.tsv"
    conda:
        CONDA_ENV
    threads: config["threads"]
    resources:
        gpu=gpu_per_job,
    params:
        run=RUN,
        flags=flags(
            n=SEDID["generated"]["n"],
            sampler="ddpm",
            batch_size=METRICS["sample_batch"],
        ),
    shell:
        "diffsec sample-ddpm --model {input.model:q} {params.flags} --out {output:q} {params.run} --threads {threads} "
        "> {log:q} 2>&1"


rule sedid_score:
    input:
        model="results/models/ddpm-cifar10",
        images=lambda w: SEDID_SETS[w.scored][0],
        code=code("sedid-score"),
    output:
        directory("results/detect/scores/{scored}"),
    log:
        "logs/sedid_score/{scored}.log",
    benchmark:
        "benchmarks/sedid_score/{scored}.tsv"
    conda:
        CONDA_ENV
    threads: config["threads"]
    resources:
        gpu=gpu_per_job,
    params:
        run=RUN,
        flags=sedid_score_flags,
    shell:
        "diffsec sedid-score --model {input.model:q} {params.flags} --out {output:q} {params.run} "
        "--threads {threads} > {log:q} 2>&1"


rule sedid_eval:
    input:
        real="results/detect/scores/real",
        generated="results/detect/scores/{generated}",
        code=code("sedid-eval"),
    output:
        directory("results/detect/eval/{generated}"),
    log:
        "logs/sedid_eval/{generated}.log",
    benchmark:
        "benchmarks/sedid_eval/{generated}.tsv"
    conda:
        CONDA_ENV
    threads: config["threads"]
    resources:
        gpu=gpu_per_job,
    params:
        run=RUN,
        flags=lambda w: flags(label=w.generated, **SEDID["nn"]),
    shell:
        "diffsec sedid-eval --real {input.real:q} --generated {input.generated:q} {params.flags} --out {output:q} "
        "{params.run} --threads {threads} > {log:q} 2>&1"


rule table_sedid:
    input:
        metrics=expand(
            "results/detect/eval/{generated}", generated=SEDID_PLAN.generated
        ),
        figures="results/figures/sedid",
        code=code("table-sedid"),
    output:
        csv="results/tables/sedid.csv",
        md="results/tables/sedid.md",
    log:
        "logs/table_sedid.log",
    benchmark:
        "benchmarks/table_sedid.tsv"
    conda:
        CONDA_ENV
    params:
        profile=PROFILE,
        seed=SEED,
    shell:
        "diffsec table-sedid --metrics {input.metrics:q} --profile {params.profile:q} --seed {params.seed:q} "
        "--out {output.csv:q} > {log:q} 2>&1"


rule figure_sedid:
    input:
        eval="results/detect/eval/ddpm",
        real="results/detect/scores/real",
        generated="results/detect/scores/ddpm",
        real_images=SEDID_SETS["real"][0],
        generated_images=SEDID_SETS["ddpm"][0],
        code=code("figure-sedid"),
    output:
        report(
            directory("results/figures/sedid"),
            patterns=["{name}.png"],
            category="SeDID",
            caption="../report/sedid.rst",
        ),
    log:
        "logs/figure_sedid.log",
    benchmark:
        "benchmarks/figure_sedid.tsv"
    conda:
        CONDA_ENV
    threads: config["threads"]
    params:
        run=RUN,
        real_images=sedid_image_file("real"),
        generated_images=sedid_image_file("ddpm"),
    shell:
        "diffsec figure-sedid --eval {input.eval:q} --real {input.real:q} --generated {input.generated:q} "
        "--real-images {params.real_images:q} --generated-images {params.generated_images:q} "
        "--out {output:q} {params.run} --threads {threads} > {log:q} 2>&1"


# sedid_mia: the same scores as a membership-inference attack on a DDPM trained here on a saved
# member subset (results/detect/mia/...); non-members are held-out training images.
rule member_split:
    input:
        data="results/data/cifar10",
        code=code("member-split"),
    output:
        directory("results/data/cifar10-members"),
    log:
        "logs/member_split.log",
    benchmark:
        "benchmarks/member_split.tsv"
    conda:
        CONDA_ENV
    threads: 1
    params:
        run=RUN,
        flags=flags(members=MIA["members"], heldout=MIA["heldout"]),
    shell:
        "diffsec member-split --data {input.data:q}/train.npz {params.flags} --out {output:q} {params.run} "
        "--threads {threads} > {log:q} 2>&1"


rule train_mia_ddpm:
    input:
        data="results/data/cifar10-members",
        code=code("train-ddpm"),
    output:
        report(
            directory("results/detect/mia/model"),
            patterns=["{name}.png"],
            category="SeDID",
            caption="../report/sedid_mia_model.rst",
        ),
    log:
        "logs/train_mia_ddpm.log",
    benchmark:
        "benchmarks/train_mia_ddpm.tsv"
    conda:
        CONDA_ENV
    threads: config["threads"]
    resources:
        gpu=gpu_per_job,
    params:
        run=RUN,
        flags=flags(
            **MIA["world"], steps=MIA_PLAN.steps, snapshots=list(MIA_PLAN.snapshots)
        ),
    shell:
        "diffsec train-ddpm --data {input.data:q}/members.npz {params.flags} --out {output:q} {params.run} "
        "--threads {threads} > {log:q} 2>&1"


rule mia_score:
    input:
        model="results/detect/mia/model",
        images="results/data/cifar10-members",
        code=code("sedid-score"),
    output:
        directory("results/detect/mia/scores/{variant}/{group}"),
    log:
        "logs/mia_score/{variant}/{group}.log",
    benchmark:
        "benchmarks/mia_score/{variant}/{group}.tsv"
    conda:
        CONDA_ENV
    threads: config["threads"]
    resources:
        gpu=gpu_per_job,
    params:
        run=RUN,
        flags=mia_score_flags,
    shell:
        "diffsec sedid-score --model {input.model:q} {params.flags} --out {output:q} {params.run} "
        "--threads {threads} > {log:q} 2>&1"


rule mia_eval:
    input:
        real="results/detect/mia/scores/{variant}/heldout",
        generated="results/detect/mia/scores/{variant}/members",
        code=code("sedid-eval"),
    output:
        directory("results/detect/mia/eval/{variant}"),
    log:
        "logs/mia_eval/{variant}.log",
    benchmark:
        "benchmarks/mia_eval/{variant}.tsv"
    conda:
        CONDA_ENV
    threads: config["threads"]
    resources:
        gpu=gpu_per_job,
    params:
        run=RUN,
        flags=lambda w: flags(label=f"mia-{w.variant}", **SEDID["nn"]),
    shell:
        "diffsec sedid-eval --real {input.real:q} --generated {input.generated:q} {params.flags} --out {output:q} "
        "{params.run} --threads {threads} > {log:q} 2>&1"


rule figure_sedid_mia:
    input:
        metrics=expand("results/detect/mia/eval/{variant}", variant=MIA_PLAN.variants),
        model="results/detect/mia/model",
        code=code("figure-sedid-mia"),
    output:
        report(
            directory("results/figures/sedid-mia"),
            patterns=["{name}.png"],
            category="SeDID",
            caption="../report/sedid_mia.rst",
        ),
    log:
        "logs/figure_sedid_mia.log",
    benchmark:
        "benchmarks/figure_sedid_mia.tsv"
    conda:
        CONDA_ENV
    params:
        run=RUN,
        epochs=words(MIA_PLAN.epochs),
    shell:
        "diffsec figure-sedid-mia --metrics {input.metrics:q} --epochs {params.epochs} --model {input.model:q} "
        "--out {output:q} {params.run} > {log:q} 2>&1"


rule table_sedid_mia:
    input:
        metrics=expand("results/detect/mia/eval/{variant}", variant=MIA_PLAN.variants),
        figures="results/figures/sedid-mia",
        code=code("table-sedid-mia"),
    output:
        csv="results/tables/sedid_mia.csv",
        md="results/tables/sedid_mia.md",
    log:
        "logs/table_sedid_mia.log",
    benchmark:
        "benchmarks/table_sedid_mia.tsv"
    conda:
        CONDA_ENV
    params:
        profile=PROFILE,
        seed=SEED,
        epochs=words(MIA_PLAN.epochs),
    shell:
        "diffsec table-sedid-mia --metrics {input.metrics:q} --epochs {params.epochs} --profile {params.profile:q} "
        "--seed {params.seed:q} --out {output.csv:q} > {log:q} 2>&1"
