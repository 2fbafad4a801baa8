rule split:
    input:
        flows="results/{ds}/store/flows.parquet",
    output:
        "results/{ds}/splits/seed{seed}.npz",
    log:
        "logs/split/{ds}_seed{seed}.log",
    params:
        split=split_params,
    conda:
        "../envs/capture.yaml"
    script:
        "../scripts/split_make.py"
