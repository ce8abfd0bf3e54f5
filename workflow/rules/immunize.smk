# SPD (paper 003): one universal perturbation immunizes many images against img2img editing
# (results/immunize/spd/...), then spd.csv (src/diffsec/plan/spd.py). Each fit is one
# (method, eps); every condition at every eps is applied, edited and compared with the clean edit.
rule spd_images:
    input:
        data="results/data/cifar10",
        code=code("spd-images"),
    output:
        directory("results/immunize/spd/images"),
    log:
        "logs/spd_images.log",
    benchmark:
        "benchmarks/spd_images.tsv"
    conda:
        CONDA_ENV
    threads: 1
    params:
        run=RUN,
        flags=flags(n=SPD["images"]["n"], train=SPD["images"]["train"]),
    shell:
        "diffsec spd-images --data {input.data:q}/test.npz {params.flags} --out {output:q} {params.run} "
        "--threads {threads} > {log:q} 2>&1"


rule spd_fit:
    input:
        model="results/models/t2i-cifar10",
        images="results/immunize/spd/images",
        code=code("spd-fit"),
    output:
        report(
            directory("results/immunize/spd/fit/{spd_method}/eps-{spd_eps}"),
            patterns=["{name}.png"],
            category="SPD",
            caption="../report/spd_fit.rst",
        ),
    log:
        "logs/spd_fit/{spd_method}/eps-{spd_eps}.log",
    benchmark:
        "benchmarks/spd_fit/{spd_method}/eps-{spd_eps}.tsv"
    conda:
        CONDA_ENV
    threads: config["threads"]
    resources:
        gpu=gpu_per_job,
    params:
        run=RUN,
        flags=spd_fit_flags,
    shell:
        "diffsec spd-fit --model {input.model:q} --images {input.images:q} --eps {wildcards.spd_eps:q} "
        "{params.flags} --out {output:q} {params.run} --threads {threads} > {log:q} 2>&1"


rule spd_apply:
    input:
        images="results/immunize/spd/images",
        delta=spd_delta,
        model=spd_attacked_model,
        code=code("spd-apply"),
    output:
        directory("results/immunize/spd/apply/{spd_condition}/eps-{spd_eps}"),
    log:
        "logs/spd_apply/{spd_condition}/eps-{spd_eps}.log",
    benchmark:
        "benchmarks/spd_apply/{spd_condition}/eps-{spd_eps}.tsv"
    conda:
        CONDA_ENV
    threads: config["threads"]
    resources:
        gpu=gpu_per_job,
    params:
        run=RUN,
        flags=spd_apply_flags,
    shell:
        "diffsec spd-apply --images {input.images:q} --eps {wildcards.spd_eps:q} {params.flags} "
        "--out {output:q} {params.run} --threads {threads} > {log:q} 2>&1"


rule spd_edit:
    input:
        model="results/models/t2i-cifar10",
        images=spd_edit_images,
        code=code("spd-edit"),
    output:
        directory("results/immunize/spd/edit/{spd_set}"),
    log:
        "logs/spd_edit/{spd_set}.log",
    benchmark:
        "benchmarks/spd_edit/{spd_set}.tsv"
    conda:
        CONDA_ENV
    threads: config["threads"]
    resources:
        gpu=gpu_per_job,
    params:
        run=RUN,
        # a function: "{class}" in a prompt is no wildcard
        flags=lambda w: flags(prompts=SPD["prompts"], **SPD["edit"]),
    shell:
        "diffsec spd-edit --model {input.model:q} --images {input.images:q} {params.flags} --out {output:q} "
        "{params.run} --threads {threads} > {log:q} 2>&1"


rule spd_eval:
    input:
        edits="results/immunize/spd/edit/{spd_condition}/eps-{spd_eps}",
        clean="results/immunize/spd/edit/clean",
        code=code("spd-eval"),
    output:
        directory("results/immunize/spd/eval/{spd_condition}/eps-{spd_eps}"),
    log:
        "logs/spd_eval/{spd_condition}/eps-{spd_eps}.log",
    benchmark:
        "benchmarks/spd_eval/{spd_condition}/eps-{spd_eps}.tsv"
    conda:
        CONDA_ENV
    threads: 1
    params:
        run=RUN,
        flags=spd_eval_flags,
    shell:
        "diffsec spd-eval --edits {input.edits:q} --clean {input.clean:q} {params.flags} --out {output:q} "
        "{params.run} --threads {threads} > {log:q} 2>&1"


rule figure_spd:
    input:
        metrics=SPD_EVALS,
        clean="results/immunize/spd/edit/clean",
        baseline=spd_edits("random"),
        ours=spd_edits(SPD_OURS),
        fits=expand(
            "results/immunize/spd/fit/{method}/eps-{eps}",
            method=SPD_OURS,
            eps=SPD_PLAN.eps,
        ),
        code=code("figure-spd"),
    output:
        report(
            directory("results/figures/spd"),
            patterns=["{name}.png"],
            category="SPD",
            caption="../report/spd.rst",
        ),
    log:
        "logs/figure_spd.log",
    benchmark:
        "benchmarks/figure_spd.tsv"
    conda:
        CONDA_ENV
    params:
        run=RUN,
        eps=words(SPD_PLAN.eps),
    shell:
        "diffsec figure-spd --metrics {input.metrics:q} --clean-edits {input.clean:q} "
        "--baseline-edits {input.baseline:q} --ours-edits {input.ours:q} --fits {input.fits:q} "
        "--eps {params.eps} --out {output:q} {params.run} > {log:q} 2>&1"


rule table_spd:
    input:
        metrics=SPD_EVALS,
        figures="results/figures/spd",
        code=code("table-spd"),
    output:
        csv="results/tables/spd.csv",
        md="results/tables/spd.md",
    log:
        "logs/table_spd.log",
    benchmark:
        "benchmarks/table_spd.tsv"
    conda:
        CONDA_ENV
    params:
        profile=PROFILE,
        seed=SEED,
    shell:
        "diffsec table-spd --metrics {input.metrics:q} --profile {params.profile:q} --seed {params.seed:q} "
        "--out {output.csv:q} > {log:q} 2>&1"
