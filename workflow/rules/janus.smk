# JANUS (nidsflow.janus): train each (dataset, variant, seed) on benign train, score benign val + test
# (phase 1), and score across datasets: every ordered (source, target) pair with the source's "cross" model
# (the cross matrix), and on the ablation sources with the full model and each group-B variant (the ablation
# table's cross columns); common.smk's cross_runs() lists them.
# Variants: full, cross (sigma = janus.cross_sigma) and the group-B ablations B1..B5
# (nidsflow.janus.variants; janus.variant_overrides may change them).
# A variant that differs from another only in scoring keys (nofix_disc from full) is scored with that
# variant's model (janus_model, variants.trained_as): the same training is never run twice.


rule train_janus:
    input:
        flows="results/{study}/{ds}/store/flows.parquet",
        features="results/{study}/{ds}/store/flow_features.parquet",
        split="results/{study}/{ds}/splits/seed{seed}.npz",
    output:
        model="results/{study}/{ds}/janus/{variant}/seed{seed}/model.pt",
        train_log="results/{study}/{ds}/janus/{variant}/seed{seed}/train_log.tsv",
        loss_plot="results/{study}/{ds}/janus/{variant}/seed{seed}/loss.png",
    log:
        "logs/{study}/janus/train_{ds}_{variant}_seed{seed}.log",
    benchmark:
        "benchmarks/{study}/janus/train_{ds}_{variant}_seed{seed}.tsv"
    params:
        janus=janus_train_params(),
    threads: config["janus"].get("threads", 1)
    resources:
        gpu=1,
    conda:
        "../envs/janus.yaml"
    script:
        "../scripts/janus_train.py"


rule score_phase1:
    input:
        model=janus_model("ds"),
        flows="results/{study}/{ds}/store/flows.parquet",
        features="results/{study}/{ds}/store/flow_features.parquet",
        split="results/{study}/{ds}/splits/seed{seed}.npz",
    output:
        scores=layout.PHASE1_SCORES,
        auroc="results/{study}/{ds}/janus/{variant}/seed{seed}/phase1_auroc.json",
    log:
        "logs/{study}/janus/score_{ds}_{variant}_seed{seed}.log",
    benchmark:
        "benchmarks/{study}/janus/score_{ds}_{variant}_seed{seed}.tsv"
    params:
        janus=janus_score_params(),
    threads: config["janus"].get("threads", 1)
    resources:
        gpu=1,
    conda:
        "../envs/janus.yaml"
    script:
        "../scripts/janus_score_phase1.py"


rule score_cross:
    input:
        model=janus_model("src"),
        flows="results/{study}/{tgt}/store/flows.parquet",
        features="results/{study}/{tgt}/store/flow_features.parquet",
        split="results/{study}/{tgt}/splits/seed{seed}.npz",
    output:
        scores=layout.CROSS_SCORES,
    log:
        "logs/{study}/janus/cross_{src}__{tgt}_{variant}_seed{seed}.log",
    benchmark:
        "benchmarks/{study}/janus/cross_{src}__{tgt}_{variant}_seed{seed}.tsv"
    params:
        janus=janus_score_params(),
    threads: config["janus"].get("threads", 1)
    resources:
        gpu=1,
    conda:
        "../envs/janus.yaml"
    script:
        "../scripts/janus_score_cross.py"
