# SAU (paper 001): BadT2I backdoors in the T2I world, two unlearning baselines, Spatial Attention
# Unlearning at generation time, and sau.csv (src/diffsec/plan/sau.py). Artifacts under
# results/unlearn/sau/: detector/<kind>, model/<backdoor>-<method>, gen/<model>/<prompt set>,
# defended/<backdoor>/<setting>, eval/<backdoor>/<name>.
rule sau_detector:
    input:
        data="results/data/cifar10",
        model="results/models/t2i-cifar10",
        patch=sau_patch,
        code=code("t2i-detector"),
    output:
        report(
            directory(f"{SAU_DIR}/detector/{{sau_detector}}"),
            patterns=["{name}.png"],
            category="SAU",
            caption="../report/sau_detector.rst",
        ),
    log:
        "logs/sau_detector/{sau_detector}.log",
    benchmark:
        "benchmarks/sau_detector/{sau_detector}.tsv"
    conda:
        CONDA_ENV
    threads: 1
    params:
        run=RUN,
        patch=lambda w, input: flags(patch=input.patch or ""),
        flags=sau_detector_flags,
    shell:
        "diffsec t2i-detector --kind {wildcards.sau_detector:q} --images {input.data:q}/train.npz "
        "--heldout {input.data:q}/test.npz --vae {input.model:q} {params.patch} {params.flags} "
        "--out {output:q} {params.run} --threads {threads} > {log:q} 2>&1"


rule backdoor_t2i:
    input:
        model="results/models/t2i-cifar10",
        data="results/data/cifar10",
        patch=sau_patch,
        code=code("backdoor-t2i"),
    output:
        report(
            directory(f"{SAU_DIR}/model/{{sau_backdoor}}-poisoned"),
            patterns=["{name}.png"],
            category="SAU",
            caption="../report/sau_model.rst",
        ),
    log:
        "logs/backdoor_t2i/{sau_backdoor}.log",
    benchmark:
        "benchmarks/backdoor_t2i/{sau_backdoor}.tsv"
    conda:
        CONDA_ENV
    threads: config["threads"]
    resources:
        gpu=gpu_per_job,
    params:
        run=RUN,
        patch=lambda w, input: flags(patch=input.patch or ""),
        flags=sau_attack_flags,
    shell:
        "diffsec backdoor-t2i --kind {wildcards.sau_backdoor:q} --model {input.model:q} "
        "--images {input.data:q}/train.npz {params.patch} {params.flags} --out {output:q} {params.run} "
        "--threads {threads} > {log:q} 2>&1"


rule unlearn_t2i:
    input:
        model="results/models/t2i-cifar10",
        unet=f"{SAU_DIR}/model/{{sau_backdoor}}-poisoned",
        data="results/data/cifar10",
        code=code("unlearn-t2i"),
    output:
        report(
            directory(f"{SAU_DIR}/model/{{sau_backdoor}}-{{sau_unlearn}}"),
            patterns=["{name}.png"],
            category="SAU",
            caption="../report/sau_model.rst",
        ),
    log:
        "logs/unlearn_t2i/{sau_backdoor}-{sau_unlearn}.log",
    benchmark:
        "benchmarks/unlearn_t2i/{sau_backdoor}-{sau_unlearn}.tsv"
    conda:
        CONDA_ENV
    threads: config["threads"]
    resources:
        gpu=gpu_per_job,
    params:
        run=RUN,
        flags=lambda w: flags(
            method=SAU_UNLEARN[w.sau_unlearn],
            n_images=SAU["train_images"],
            **sau_unlearn_settings(w),
        ),
    shell:
        "diffsec unlearn-t2i --model {input.model:q} --unet {input.unet:q} --images {input.data:q}/train.npz "
        "{params.flags} --out {output:q} {params.run} --threads {threads} > {log:q} 2>&1"


rule sau_generate:
    input:
        model="results/models/t2i-cifar10",
        unet=sau_unet,
        code=code("t2i-generate"),
    output:
        directory(f"{SAU_DIR}/gen/{{sau_model}}/{{sau_prompts}}"),
    log:
        "logs/sau_generate/{sau_model}/{sau_prompts}.log",
    benchmark:
        "benchmarks/sau_generate/{sau_model}/{sau_prompts}.tsv"
    conda:
        CONDA_ENV
    threads: 1
    resources:
        gpu=gpu_per_job,
    params:
        run=RUN,
        unet=lambda w, input: flags(unet=input.unet or ""),
        flags=sau_generate_flags,
    shell:
        "diffsec t2i-generate --model {input.model:q} {params.unet} {params.flags} --out {output:q} "
        "{params.run} --threads {threads} > {log:q} 2>&1"


rule sau_apply:
    input:
        unpack(sau_apply_inputs),
        model="results/models/t2i-cifar10",
        code=code("sau-apply"),
    output:
        directory(f"{SAU_DIR}/defended/{{sau_backdoor}}/{{sau_setting}}"),
    log:
        "logs/sau_apply/{sau_backdoor}/{sau_setting}.log",
    benchmark:
        "benchmarks/sau_apply/{sau_backdoor}/{sau_setting}.tsv"
    conda:
        CONDA_ENV
    threads: 1
    params:
        run=RUN,
        flags=sau_apply_flags,
    shell:
        "diffsec sau-apply --model {input.model:q} --triggered {input.triggered:q} --clean {input.clean:q} "
        "--calib-triggered {input.calib_triggered:q} --calib-clean {input.calib_clean:q} {params.flags} "
        "--out {output:q} {params.run} --threads {threads} > {log:q} 2>&1"


rule sau_eval:
    input:
        images=sau_eval_images,
        detector=lambda w: f"{SAU_DIR}/detector/{SAU_DETECTOR[w.sau_backdoor]}",
        reference=f"{SAU_DIR}/gen/unpoisoned/clean",
        clip=sau_clip,
        classifier="results/models/resnet56-cifar10",
        code=code("sau-eval"),
    output:
        directory(f"{SAU_DIR}/eval/{{sau_backdoor}}/{{sau_eval}}"),
    log:
        "logs/sau_eval/{sau_backdoor}/{sau_eval}.log",
    benchmark:
        "benchmarks/sau_eval/{sau_backdoor}/{sau_eval}.tsv"
    conda:
        CONDA_ENV
    threads: 1
    params:
        run=RUN,
        flags=sau_eval_flags,
    shell:
        "diffsec sau-eval --images {input.images:q} --detector {input.detector:q} "
        "--reference {input.reference:q} --classifier {input.classifier:q} {params.flags} --out {output:q} "
        "{params.run} --threads {threads} > {log:q} 2>&1"


rule figure_sau:
    input:
        unpack(sau_figure_inputs),
        code=code("figure-sau"),
    output:
        report(
            directory("results/figures/sau"),
            patterns=["{name}.png"],
            category="SAU",
            caption="../report/sau.rst",
        ),
    log:
        "logs/figure_sau.log",
    benchmark:
        "benchmarks/figure_sau.tsv"
    conda:
        CONDA_ENV
    params:
        run=RUN,
        flags=sau_figure_flags,
    shell:
        "diffsec figure-sau {params.flags} --out {output:q} {params.run} > {log:q} 2>&1"


rule table_sau:
    input:
        metrics=SAU_EVALS,
        figures="results/figures/sau",
        code=code("table-sau"),
    output:
        csv="results/tables/sau.csv",
        md="results/tables/sau.md",
    log:
        "logs/table_sau.log",
    benchmark:
        "benchmarks/table_sau.tsv"
    conda:
        CONDA_ENV
    params:
        profile=PROFILE,
        seed=SEED,
    shell:
        "diffsec table-sau --metrics {input.metrics:q} --profile {params.profile:q} --seed {params.seed:q} "
        "--out {output.csv:q} > {log:q} 2>&1"
