# Baselines on exactly JANUS's splits (nidsflow.evaluate.baselines). A method that cannot run on a
# dataset (a packet-sequence baseline on a flow-table store, or a baseline we do not build) writes an
# empty scores.npz and an auroc.json with status "not run" and the reason, so the tables can say so.


rule baseline:
    input:
        flows="results/{study}/{ds}/store/flows.parquet",
        features="results/{study}/{ds}/store/flow_features.parquet",
        split="results/{study}/{ds}/splits/seed{seed}.npz",
    output:
        scores=layout.BASELINE_SCORES,
        auroc="results/{study}/{ds}/baselines/{method}/seed{seed}/auroc.json",
    log:
        "logs/{study}/baselines/{ds}_{method}_seed{seed}.log",
    benchmark:
        "benchmarks/{study}/baselines/{ds}_{method}_seed{seed}.tsv"
    params:
        method_params=baseline_params,
        fpr_target=config["evaluate"]["fpr_target"],
    threads: 1
    conda:
        "../envs/evaluate.yaml"
    script:
        "../scripts/baselines_run.py"
