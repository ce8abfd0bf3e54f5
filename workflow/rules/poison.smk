# SZT training sets: the DreamBooth concepts, poisoned (Appendix F), and purified (Sec. 5.2.4).
# Set paths and flags are built in common.smk.


rule poison_concepts:
    output:
        report(
            directory("results/poison/{poison}"),
            patterns=["{name}.png"],
            category="szt",
            caption="../report/poison.rst",
        ),
    input:
        data="results/data/szt-concepts",
        model="results/models/t2i-cifar10",
        target=lambda w: "results/sources/mist_target" if w.poison in ("ea", "da") else [],
        code=code("cli/poison.py", "poison/budget.py", "poison/ldm.py", "poison/objectives.py",
                  "poison/pgd.py", "poison/report.py"),
    params:
        run=RUN,
        flags=flags(**SZT["poison"]),
        target=lambda w, input: f"--target {input.target}/MIST.png" if input.target else "",
    wildcard_constraints:
        poison="|".join(re.escape(p) for p in POISONS),
    threads: config["threads"]
    resources:
        gpu=1,
    log:
        "logs/poison/{poison}.log",
    benchmark:
        "benchmarks/poison/{poison}.tsv"
    conda:
        CONDA_ENV
    shell:
        "diffsec poison --method {wildcards.poison:q} --images {input.data}/concepts.npz "
        "--model {input.model} {params.target} {params.flags} --out {output:q} {params.run} "
        "--threads {threads} > {log:q} 2>&1"


rule purify_set:
    output:
        report(
            directory("results/purify/{purifier}/{set}"),
            patterns=["{name}.png"],
            category="szt",
            caption="../report/purify.rst",
        ),
    input:
        images=lambda w: set_dir(w.set),
        model=_purifier_model,
        code=code("cli/purify.py", "defense/jpeg.py", "defense/advclean.py", "defense/regen.py",
                  "defense/pdmpure.py", "defense/sdedit.py"),
    params:
        run=RUN,
        images=lambda w: set_npz(w.set),
        model=lambda w, input: f"--model {input.model}" if input.model else "",
        flags=lambda w: flags(**SZT["purify"][w.purifier]),
    wildcard_constraints:
        purifier="|".join(PURIFIERS),
        set="|".join(re.escape(s) for s in SETS),
    threads: config["threads"]
    resources:
        gpu=1,
    log:
        "logs/purify/{purifier}/{set}.log",
    benchmark:
        "benchmarks/purify/{purifier}/{set}.tsv"
    conda:
        CONDA_ENV
    shell:
        "diffsec purify --method {wildcards.purifier} --images {params.images:q} {params.model} "
        "{params.flags} --out {output:q} {params.run} --threads {threads} > {log:q} 2>&1"


rule figure_perturbations:
    output:
        report(
            directory("results/figures/szt/perturbations"),
            patterns=["{name}.png"],
            category="szt",
            caption="../report/perturbations.rst",
        ),
    input:
        clean="results/data/szt-concepts",
        poisoned=expand("results/poison/{poison}", poison=POISONS),
        code=code("cli/szt_figures.py", "defense/figures.py"),
    params:
        sets=" ".join(f"{p}={set_npz(p)}" for p in POISONS),
        quality=SZT["purify"]["jpeg"].get("quality", 25),
    log:
        "logs/figure_perturbations.log",
    benchmark:
        "benchmarks/figure_perturbations.tsv"
    conda:
        CONDA_ENV
    shell:
        "diffsec figure-perturbations --clean {input.clean}/concepts.npz --poisoned {params.sets} "
        "--quality {params.quality} --out {output} > {log} 2>&1"


rule figure_loss_per_t:
    output:
        report(
            directory("results/figures/szt/loss-per-t"),
            patterns=["{name}.png"],
            category="szt",
            caption="../report/loss_per_t.rst",
        ),
    input:
        model="results/models/t2i-cifar10",
        clean="results/data/szt-concepts",
        poisoned=f"results/poison/{SZT['figures']['poison']}",
        code=code("cli/szt_figures.py", "poison/loss_curve.py", "poison/ldm.py"),
    params:
        run=RUN,
        sets=f"clean={CONCEPTS_NPZ} {SZT['figures']['poison']}={set_npz(SZT['figures']['poison'])}",
    threads: config["threads"]
    resources:
        gpu=1,
    log:
        "logs/figure_loss_per_t.log",
    benchmark:
        "benchmarks/figure_loss_per_t.tsv"
    conda:
        CONDA_ENV
    shell:
        "diffsec figure-loss-per-t --model {input.model} --sets {params.sets} --out {output} "
        "{params.run} --threads {threads} > {log} 2>&1"
