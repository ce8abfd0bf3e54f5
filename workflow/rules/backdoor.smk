# InvisibleDiffusion, TrojDiff, BadDiffusion: backdoor the pixel DDPM world, sample it from clean
# and triggered noise, measure. Attack specs and flags are built in common.smk.
import shlex


rule backdoor_train:
    output:
        report(
            directory("results/backdoor/models/{attack}"),
            patterns=["{name}.png"],
            category="invisible diffusion",
            subcategory="backdoored models",
            caption="../report/backdoor_train.rst",
        ),
    input:
        model=lambda w: world_model(w.attack),
        data=lambda w: f"results/data/{inv_dataset(w.attack)}",
        mnist=backdoor_mnist,
        mist=backdoor_mist,
        code=code("cli/backdoor.py", "backdoor/attacks.py", "backdoor/finetune.py", "backdoor/targets.py",
                  "backdoor/triggers.py", "diffusion/chain.py", "models/ddpm.py"),
    params:
        run=RUN,
        flags=backdoor_train_flags,
    wildcard_constraints:
        attack="|".join(re.escape(a) for a in INV_ATTACKS),
    threads: config["threads"]
    resources:
        gpu=1,
    log:
        "logs/backdoor_train/{attack}.log",
    benchmark:
        "benchmarks/backdoor_train/{attack}.tsv"
    conda:
        CONDA_ENV
    shell:
        "diffsec backdoor-train --model {input.model} --data {input.data} {params.flags} --out {output} "
        "{params.run} --threads {threads} > {log} 2>&1"


rule backdoor_sample:
    output:
        directory("results/backdoor/samples/{attack}/{sampler}/{variant}"),
    input:
        model=lambda w: backdoor_model(w.attack),
        code=code("cli/backdoor.py", "backdoor/attacks.py", "diffusion/chain.py", "models/ddpm.py"),
    params:
        run=RUN,
        flags=backdoor_sample_flags,
    wildcard_constraints:
        attack="|".join(re.escape(a) for a in [*INV_BENIGN, *INV_ATTACKS]),
        sampler="ddpm|ddim",
        variant=r"final|step-\d+",
    threads: config["threads"]
    resources:
        gpu=1,
    log:
        "logs/backdoor_sample/{attack}/{sampler}-{variant}.log",
    benchmark:
        "benchmarks/backdoor_sample/{attack}/{sampler}-{variant}.tsv"
    conda:
        CONDA_ENV
    shell:
        "diffsec backdoor-sample --model {input.model} {params.flags} --out {output} {params.run} "
        "--threads {threads} > {log} 2>&1"


rule backdoor_eval:
    output:
        directory("results/metrics/backdoor/{attack}/{sampler}/{variant}"),
    input:
        samples="results/backdoor/samples/{attack}/{sampler}/{variant}",
        model=lambda w: backdoor_model(w.attack),
        data=lambda w: f"results/data/{inv_dataset(w.attack)}",
        in_d_classifier=in_d_classifier,
        mnist_classifier="results/models/mnist-classifier",
        backbone=backbone_inputs,
        code=code("cli/backdoor_eval.py", "backdoor/evaluate.py", "metrics/fid.py", "metrics/prdc.py",
                  "metrics/backbones.py", "models/celeba_net.py"),
    params:
        run=RUN,
        backbone=backbone_flags,
        label=backdoor_label,
        in_d_flag=in_d_flag,
    wildcard_constraints:
        attack="|".join(re.escape(a) for a in [*INV_BENIGN, *INV_ATTACKS]),
        sampler="ddpm|ddim",
        variant=r"final|step-\d+",
    threads: config["threads"]
    log:
        "logs/backdoor_eval/{attack}/{sampler}-{variant}.log",
    benchmark:
        "benchmarks/backdoor_eval/{attack}/{sampler}-{variant}.tsv"
    conda:
        CONDA_ENV
    shell:
        "diffsec backdoor-eval --samples {input.samples} --model {input.model} --reference {input.data}/test.npz "
        "{params.in_d_flag} {input.in_d_classifier} --mnist-classifier {input.mnist_classifier} {params.backbone} "
        "--label {params.label} --out {output} {params.run} --threads {threads} > {log} 2>&1"


rule figure_backdoor_trajectories:
    # Fig. 2: benign sampling next to each attack's triggered sampling (DDPM, all T steps)
    output:
        report(
            directory("results/figures/invisible/trajectories"),
            patterns=["trajectories.png"],
            category="invisible diffusion",
            subcategory="figures",
            caption="../report/backdoor_trajectories.rst",
        ),
    input:
        samples=[f"results/backdoor/samples/{a}/ddpm/final" for a in INV_FIG_TRAJECTORIES.values()],
        code=code("cli/invisible_figures.py"),
    params:
        samples=" ".join(shlex.quote(f"{n}=results/backdoor/samples/{a}/ddpm/final")
                         for n, a in INV_FIG_TRAJECTORIES.items()),
    log:
        "logs/figure_backdoor_trajectories.log",
    benchmark:
        "benchmarks/figure_backdoor_trajectories.tsv"
    conda:
        CONDA_ENV
    shell:
        "diffsec figure-backdoor-trajectories --samples {params.samples} --out {output} > {log} 2>&1"


rule figure_backdoor_targets:
    # Fig. 3: what InvisibleDiffusion's triggered noise generates (DDIM)
    output:
        report(
            directory("results/figures/invisible/targets"),
            patterns=["targets.png"],
            category="invisible diffusion",
            subcategory="figures",
            caption="../report/backdoor_targets.rst",
        ),
    input:
        samples=[f"results/backdoor/samples/{a}/ddim/final" for a in INV_FIG_TARGETS.values()],
        code=code("cli/invisible_figures.py"),
    params:
        samples=" ".join(shlex.quote(f"{n}=results/backdoor/samples/{a}/ddim/final")
                         for n, a in INV_FIG_TARGETS.items()),
    log:
        "logs/figure_backdoor_targets.log",
    benchmark:
        "benchmarks/figure_backdoor_targets.tsv"
    conda:
        CONDA_ENV
    shell:
        "diffsec figure-backdoor-targets --samples {params.samples} --out {output} > {log} 2>&1"


rule figure_backdoor_ablation:
    # Figs. 4 and 5: the lambda sweep (both samplers) and the training-steps sweep (DDIM)
    output:
        report(
            directory("results/figures/invisible/ablation"),
            patterns=["{name}.png"],
            category="invisible diffusion",
            subcategory="figures",
            caption="../report/backdoor_ablation.rst",
        ),
    input:
        metrics=invisible_evals("invisible_ablation"),
        code=code("cli/invisible_figures.py"),
    params:
        lambdas=" ".join(f"{l:g}/{s}=results/metrics/backdoor/{_lambda_label(l)}/{s}/final"
                         for l in INV_LAMBDAS for s in ("ddpm", "ddim")),
        steps=" ".join([f"{n}=results/metrics/backdoor/{INV_SHAPE.LAMBDA_BASE}/ddim/step-{n}" for n in INV_SNAPSHOTS]
                       + [f"{INV['finetune']['steps']}=results/metrics/backdoor/{INV_SHAPE.LAMBDA_BASE}/ddim/final"]),
    log:
        "logs/figure_backdoor_ablation.log",
    benchmark:
        "benchmarks/figure_backdoor_ablation.tsv"
    conda:
        CONDA_ENV
    shell:
        "diffsec figure-backdoor-ablation --lambdas {params.lambdas} --steps {params.steps} --out {output} > {log} 2>&1"
