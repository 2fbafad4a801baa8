# HIKARI meta-ensemble branch and its validation suite (nidsflow.hikari), one rule per step.
# Wildcard {hk}: a key of config["hikari"]["datasets"]; every file under results/{study}/hikari/{hk}/.
# Source of a table: {csv: file | folder | glob} (HIKARI-2021 or CICFlowMeter CSVs) or {store: results/{study}/{ds}/store}.
# Each rule's params hold only the hikari keys its stage reads (nidsflow.hikari.config.STAGE_KEYS).


rule hikari_preprocess:
    input:
        hikari_table_files,
    output:
        prep="results/{study}/hikari/{hk}/prep.npz",
        imputer="results/{study}/hikari/{hk}/imputer.joblib",
    priority: HIKARI_PRIORITY
    log:
        "logs/{study}/hikari/{hk}_preprocess.log",
    benchmark:
        "benchmarks/{study}/hikari/{hk}_preprocess.tsv"
    params:
        source=hikari_source,
        cfg=hikari_params("preprocess"),
    conda:
        "../envs/hikari.yaml"
    script:
        "../scripts/hikari_preprocess.py"


rule hikari_ae:
    input:
        prep="results/{study}/hikari/{hk}/prep.npz",
    output:
        model="results/{study}/hikari/{hk}/ae.keras",
        scalers="results/{study}/hikari/{hk}/scalers.joblib",
        history="results/{study}/hikari/{hk}/ae_history.json",
    priority: HIKARI_PRIORITY
    log:
        "logs/{study}/hikari/{hk}_ae.log",
    benchmark:
        "benchmarks/{study}/hikari/{hk}_ae.tsv"
    params:
        cfg=hikari_params("ae"),
    threads: config["hikari"]["threads"]
    conda:
        "../envs/hikari.yaml"
    script:
        "../scripts/hikari_ae.py"


rule hikari_residual:
    input:
        prep="results/{study}/hikari/{hk}/prep.npz",
        model="results/{study}/hikari/{hk}/ae.keras",
        scalers="results/{study}/hikari/{hk}/scalers.joblib",
        history="results/{study}/hikari/{hk}/ae_history.json",
    output:
        residual="results/{study}/hikari/{hk}/residual.joblib",
        scores="results/{study}/hikari/{hk}/residual_scores.npz",
    priority: HIKARI_PRIORITY
    log:
        "logs/{study}/hikari/{hk}_residual.log",
    benchmark:
        "benchmarks/{study}/hikari/{hk}_residual.tsv"
    params:
        cfg=hikari_params("residual"),
    threads: 1
    conda:
        "../envs/hikari.yaml"
    script:
        "../scripts/hikari_residual.py"


rule hikari_base:
    input:
        prep="results/{study}/hikari/{hk}/prep.npz",
        scalers="results/{study}/hikari/{hk}/scalers.joblib",
        residual_scores="results/{study}/hikari/{hk}/residual_scores.npz",
    output:
        xgb="results/{study}/hikari/{hk}/xgb.json",
        iforest="results/{study}/hikari/{hk}/iforest.joblib",
        latent_lr="results/{study}/hikari/{hk}/latent_lr.joblib",
        scores="results/{study}/hikari/{hk}/base_scores.npz",
    priority: HIKARI_PRIORITY
    log:
        "logs/{study}/hikari/{hk}_base.log",
    benchmark:
        "benchmarks/{study}/hikari/{hk}_base.tsv"
    params:
        cfg=hikari_params("base"),
    threads: config["hikari"]["threads"]
    conda:
        "../envs/hikari.yaml"
    script:
        "../scripts/hikari_base.py"


rule hikari_meta:
    input:
        prep="results/{study}/hikari/{hk}/prep.npz",
        residual_scores="results/{study}/hikari/{hk}/residual_scores.npz",
        base_scores="results/{study}/hikari/{hk}/base_scores.npz",
    output:
        meta="results/{study}/hikari/{hk}/meta.joblib",
        oof_X="results/{study}/hikari/{hk}/oof_X.npy",
        oof_y="results/{study}/hikari/{hk}/oof_y.npy",
        oof_raw="results/{study}/hikari/{hk}/oof_raw.npy",
        oof_iforest="results/{study}/hikari/{hk}/oof_iforest.npz",
        oof_prob="results/{study}/hikari/{hk}/oof_prob.npy",
        feature_names="results/{study}/hikari/{hk}/feature_names.json",
        meta_prob_test="results/{study}/hikari/{hk}/meta_prob_test.npy",
        y_test="results/{study}/hikari/{hk}/y_test.npy",
    priority: HIKARI_PRIORITY
    log:
        "logs/{study}/hikari/{hk}_meta.log",
    benchmark:
        "benchmarks/{study}/hikari/{hk}_meta.tsv"
    params:
        cfg=hikari_params("meta"),
    threads: config["hikari"]["threads"]
    conda:
        "../envs/hikari.yaml"
    script:
        "../scripts/hikari_meta.py"


rule hikari_thresholds:
    input:
        oof_y="results/{study}/hikari/{hk}/oof_y.npy",
        oof_prob="results/{study}/hikari/{hk}/oof_prob.npy",
        oof_raw="results/{study}/hikari/{hk}/oof_raw.npy",
        oof_iforest="results/{study}/hikari/{hk}/oof_iforest.npz",
    output:
        thresholds="results/{study}/hikari/{hk}/thresholds.json",
    priority: HIKARI_PRIORITY
    log:
        "logs/{study}/hikari/{hk}_thresholds.log",
    params:
        cfg=hikari_params("thresholds"),
    conda:
        "../envs/hikari.yaml"
    script:
        "../scripts/hikari_thresholds.py"


rule hikari_permutation:
    input:
        prep="results/{study}/hikari/{hk}/prep.npz",
    output:
        result="results/{study}/hikari/{hk}/permutation_e2e.json",
    priority: HIKARI_PRIORITY
    log:
        "logs/{study}/hikari/{hk}_permutation.log",
    benchmark:
        "benchmarks/{study}/hikari/{hk}_permutation.tsv"
    params:
        cfg=hikari_params("permutation"),
    threads: config["hikari"]["threads"]
    conda:
        "../envs/hikari.yaml"
    script:
        "../scripts/hikari_permutation.py"


rule hikari_evaluate:
    input:
        meta_prob_test="results/{study}/hikari/{hk}/meta_prob_test.npy",
        y_test="results/{study}/hikari/{hk}/y_test.npy",
        thresholds="results/{study}/hikari/{hk}/thresholds.json",
        residual_scores="results/{study}/hikari/{hk}/residual_scores.npz",
        base_scores="results/{study}/hikari/{hk}/base_scores.npz",
    output:
        md="results/{study}/hikari/{hk}/comparison.md",
        csv="results/{study}/hikari/{hk}/comparison.csv",
        png=report(
            "results/{study}/hikari/{hk}/confusion_matrix.png",
            caption="../report/hikari_confusion.rst",
            category="HIKARI",
            subcategory="{hk}",
        ),
    priority: HIKARI_PRIORITY
    log:
        "logs/{study}/hikari/{hk}_evaluate.log",
    conda:
        "../envs/hikari.yaml"
    script:
        "../scripts/hikari_evaluate.py"


rule hikari_validate:
    input:
        meta_prob_test="results/{study}/hikari/{hk}/meta_prob_test.npy",
        y_test="results/{study}/hikari/{hk}/y_test.npy",
        oof_X="results/{study}/hikari/{hk}/oof_X.npy",
        oof_y="results/{study}/hikari/{hk}/oof_y.npy",
        feature_names="results/{study}/hikari/{hk}/feature_names.json",
        thresholds="results/{study}/hikari/{hk}/thresholds.json",
        meta="results/{study}/hikari/{hk}/meta.joblib",
        permutation="results/{study}/hikari/{hk}/permutation_e2e.json",
    output:
        summary="results/{study}/hikari/{hk}/validation_summary.json",
        calibration=report(
            "results/{study}/hikari/{hk}/calibration_curve.png",
            caption="../report/hikari_calibration.rst",
            category="HIKARI",
            subcategory="{hk}",
        ),
        distributions=report(
            "results/{study}/hikari/{hk}/probability_distributions.png",
            caption="../report/hikari_distributions.rst",
            category="HIKARI",
            subcategory="{hk}",
        ),
    priority: HIKARI_PRIORITY
    log:
        "logs/{study}/hikari/{hk}_validate.log",
    benchmark:
        "benchmarks/{study}/hikari/{hk}_validate.tsv"
    params:
        cfg=hikari_params("validate"),
    conda:
        "../envs/hikari.yaml"
    script:
        "../scripts/hikari_validate.py"
