# InvisibleDiffusion, TrojDiff, BadDiffusion: backdoor the pixel DDPM world, sample it from clean
# and triggered noise, measure. Which attacks run is INV_PLAN (src/diffsec/plan/invisible.py);
# their flags are built in common.smk.


rule backdoor_train:
    input:
        model=lambda w: world_model(w.attack),
        data=lambda w: f"results/data/{inv_dataset(w.attack)}",
        mnist=backdoor_mnist,
        mist=backdoor_mist,
        code=code("backdoor-train"),
    output:
        report(
            directory("results/backdoor/models/{attack}"),
            patterns=["{name}.png"],
            category="invisible diffusion",
            subcategory="backdoored models",
            caption="../report/backdoor_train.rst",
        ),
    log:
        "logs/backdoor_train/{attack}.log",
    benchmark:
        "benchmarks/backdoor_train/{attack}.tsv"
    conda:
        CONDA_ENV
    threads: config["threads"]
    resources:
        gpu=gpu_per_job,
    params:
        run=RUN,
        flags=backdoor_train_flags,
    shell:
        "diffsec backdoor-train --model {input.model:q} --data {input.data:q} {params.flags} --out {output:q} "
        "{params.run} --threads {threads} > {log:q} 2>&1"


rule backdoor_sample:
    input:
        model=lambda w: backdoor_model(w.attack),
        trigger=lambda w: backdoor_trigger(w.attack),
        code=code("backdoor-sample"),
    output:
        directory("results/backdoor/samples/{attack}/{sampler}/{variant}"),
    log:
        "logs/backdoor_sample/{attack}/{sampler}-{variant}.log",
    benchmark:
        "benchmarks/backdoor_sample/{attack}/{sampler}-{variant}.tsv"
    conda:
        CONDA_ENV
    threads: config["threads"]
    resources:
        gpu=gpu_per_job,
    params:
        run=RUN,
        flags=backdoor_sample_flags,
    shell:
        "diffsec backdoor-sample --model {input.model:q} {params.flags} --out {output:q} {params.run} "
        "--threads {threads} > {log:q} 2>&1"


rule backdoor_eval:
    input:
        samples=backdoor_samples,
        model=lambda w: backdoor_model(w.attack),
        trigger=lambda w: backdoor_trigger(w.attack),
        data=lambda w: f"results/data/{inv_dataset(w.attack)}",
        in_d_classifier=in_d_classifier,
        mnist_classifier="results/models/mnist-classifier",
        backbone=backbone_inputs,
        code=code("backdoor-eval"),
    output:
        directory("results/metrics/backdoor/{attack}/{sampler}/{variant}"),
    log:
        "logs/backdoor_eval/{attack}/{sampler}-{variant}.log",
    benchmark:
        "benchmarks/backdoor_eval/{attack}/{sampler}-{variant}.tsv"
    conda:
        CONDA_ENV
    threads: config["threads"]
    params:
        run=RUN,
        backbone=backbone_flags,
        label=backdoor_label,
        in_d_flag=in_d_flag,
        trigger=backdoor_eval_flags,
    shell:
        "diffsec backdoor-eval --samples {input.samples:q} --model {input.model:q} {params.trigger} "
        "--reference {input.data:q}/test.npz {params.in_d_flag} {input.in_d_classifier:q} "
        "--mnist-classifier {input.mnist_classifier:q} {params.backbone} --label {params.label:q} "
        "--out {output:q} {params.run} --threads {threads} > {log:q} 2>&1"


rule figure_backdoor_trajectories:
    input:
        samples=[
            f"results/backdoor/samples/{a}/ddpm/final"
            for a in INV_PLAN.trajectories.values()
        ],
        code=code("figure-backdoor-trajectories"),
    # Fig. 2: benign sampling next to each attack's triggered sampling (DDPM, all T steps)
    output:
        report(
            directory("results/figures/invisible/trajectories"),
            patterns=["trajectories.png"],
            category="invisible diffusion",
            subcategory="figures",
            caption="../report/backdoor_trajectories.rst",
        ),
    log:
        "logs/figure_backdoor_trajectories.log",
    benchmark:
        "benchmarks/figure_backdoor_trajectories.tsv"
    conda:
        CONDA_ENV
    params:
        samples=named(
            {
                n: f"results/backdoor/samples/{a}/ddpm/final"
                for n, a in INV_PLAN.trajectories.items()
            }
        ),
    shell:
        "diffsec figure-backdoor-trajectories --samples {params.samples} --out {output:q} > {log:q} 2>&1"


rule figure_backdoor_targets:
    input:
        samples=[
            f"results/backdoor/samples/{a}/ddim/final"
            for a in INV_PLAN.targets.values()
        ],
        code=code("figure-backdoor-targets"),
    # Fig. 3: what InvisibleDiffusion's triggered noise generates (DDIM)
    output:
        report(
            directory("results/figures/invisible/targets"),
            patterns=["targets.png"],
            category="invisible diffusion",
            subcategory="figures",
            caption="../report/backdoor_targets.rst",
        ),
    log:
        "logs/figure_backdoor_targets.log",
    benchmark:
        "benchmarks/figure_backdoor_targets.tsv"
    conda:
        CONDA_ENV
    params:
        samples=named(
            {
                n: f"results/backdoor/samples/{a}/ddim/final"
                for n, a in INV_PLAN.targets.items()
            }
        ),
    shell:
        "diffsec figure-backdoor-targets --samples {params.samples} --out {output:q} > {log:q} 2>&1"


rule figure_backdoor_ablation:
    input:
        table="results/tables/invisible_ablation.csv",
        code=code("figure-backdoor-ablation"),
    # Figs. 4 and 5 drawn from the ablation table: the lambda sweep (both samplers, attacker chain and
    # ordinary sampler) and the training-steps sweep (DDIM)
    output:
        report(
            directory("results/figures/invisible/ablation"),
            patterns=["{name}.png"],
            category="invisible diffusion",
            subcategory="figures",
            caption="../report/backdoor_ablation.rst",
        ),
    log:
        "logs/figure_backdoor_ablation.log",
    benchmark:
        "benchmarks/figure_backdoor_ablation.tsv"
    conda:
        CONDA_ENV
    shell:
        "diffsec figure-backdoor-ablation --table {input.table:q} --out {output:q} > {log:q} 2>&1"
