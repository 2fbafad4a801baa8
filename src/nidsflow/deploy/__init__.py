"""Deployment: score captures never seen before with a trained model, one file (``score-capture``) or a
directory as it is written (``watch``), with an explanation of every alert.

    model_dir   which files form a deployable model directory; validation naming missing files
    explain     d^2 decomposed over the score axes; per-packet, per-channel DFM NLL
    scoring     Detector (flows -> scores, d^2, alert, explanation); score_capture (one file -> CSV)
    parallel    ScoringPool: score batches in worker processes (watch --workers), bit-identical scores
    watch       the directory watcher (rotation-aware completeness, flows stitched across files, state file)
"""
