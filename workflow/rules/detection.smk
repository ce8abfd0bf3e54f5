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
        gpu=GPU,
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
        gpu=GPU,
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
        gpu=GPU,
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
