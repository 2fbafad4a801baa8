rule split:
    input:
        flows="results/{study}/{ds}/store/flows.parquet",
    output:
        "results/{study}/{ds}/splits/seed{seed}.npz",
    log:
        "logs/{study}/split/{ds}_seed{seed}.log",
    params:
        split=split_params,
    conda:
        "../envs/capture.yaml"
    script:
        "../scripts/split_make.py"
