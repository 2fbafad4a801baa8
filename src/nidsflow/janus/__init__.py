"""JANUS (SPEC "JANUS"): packet-causal Transformer trained by joint continuous + discrete flow matching.

Modules: ``data`` (normalisation, batches), ``paths`` (OT-CFM path, OT coupling, mixture path),
``model`` (network and variants' flags), ``variants`` (config -> settings), ``train`` (training, resume),
``score`` (10-d scores of a split). Scoring runs with their AUROC reports are
:mod:`nidsflow.evaluate.phase1`.
"""
