# Extraction: captures (+ label CSVs) -> flow store results/{study}/{ds}/store/ (see docs/design.md).
# One extract_part job per capture or group of small captures (extract_plan in common.smk), then one
# gather (rule extract) that concatenates the parts into the store.


rule extract_part:
    input:
        files=extract_part_inputs,
    output:
        part=directory("results/{study}/{ds}/extract_parts/{part}"),
    log:
        "logs/{study}/extract/{ds}/{part}.log",
    benchmark:
        "benchmarks/{study}/extract/{ds}/{part}.tsv"
    wildcard_constraints:
        part=r"p\d+",
    params:
        dataset=extract_dataset_params,
        extract=extract_job_params(),
        part=extract_part_params,
    threads: 1
    conda:
        "../envs/capture.yaml"
    script:
        "../scripts/extract_part.py"


rule extract:
    input:
        parts=extract_part_dirs,
    output:
        flows="results/{study}/{ds}/store/flows.parquet",
        features="results/{study}/{ds}/store/flow_features.parquet",
        packets=directory("results/{study}/{ds}/store/packets"),
        report="results/{study}/{ds}/store/extract_report.json",
    log:
        "logs/{study}/extract/{ds}.log",
    benchmark:
        "benchmarks/{study}/extract/{ds}.tsv"
    params:
        dataset=extract_dataset_params,
        extract=extract_job_params(),
    threads: 1
    conda:
        "../envs/capture.yaml"
    script:
        "../scripts/extract_store.py"


# Re-reads the captures of an existing store and recomputes its flow statistics (after a change to
# features.py); the result sits beside the store's own flow_features.parquet, row-aligned with it.
rule regenerate_features:
    input:
        files=dataset_inputs,
        flows="results/{study}/{ds}/store/flows.parquet",
    output:
        features="results/{study}/{ds}/store/flow_features.regenerated.parquet",
    log:
        "logs/{study}/extract/{ds}_regenerate_features.log",
    benchmark:
        "benchmarks/{study}/extract/{ds}_regenerate_features.tsv"
    params:
        dataset=extract_dataset_params,
        extract=config["extract"],
    conda:
        "../envs/capture.yaml"
    script:
        "../scripts/extract_regenerate_features.py"
