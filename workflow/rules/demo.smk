# Stage "demo": the embedded demo traffic (SPEC "Demo data"). One rule writes every demo file:
# per domain a capture (demo_c: pcapng), a CIC-format label CSV and the generator's session table,
# plus the HIKARI-format CSV and a manifest with the counts (nidsflow.demo.generate).


rule demo_traffic:
    output:
        captures=[f"{DEMO_DIR}/{capture_file(domain)}" for domain in config["demo"]["domains"]],
        labels=expand("{dir}/{domain}/labels.csv", dir=DEMO_DIR, domain=config["demo"]["domains"]),
        sessions=expand("{dir}/{domain}/sessions.csv", dir=DEMO_DIR, domain=config["demo"]["domains"]),
        hikari=f"{DEMO_DIR}/{HIKARI_FILE}",
        manifest=f"{DEMO_DIR}/{MANIFEST_FILE}",
    log:
        f"{LOGS}/demo/demo_traffic.log",
    benchmark:
        f"{BENCHMARKS}/demo/demo_traffic.tsv"
    params:
        demo=config["demo"],
        idle_timeout_s=config["extract"]["idle_timeout_s"],
        active_timeout_s=config["extract"]["active_timeout_s"],
    threads: 1
    conda:
        "../envs/capture.yaml"
    script:
        "../scripts/demo_generate.py"
