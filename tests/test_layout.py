"""nidsflow.layout: the score-file templates round-trip, and the run planning the workflow and tables share."""

from __future__ import annotations

import pytest

from nidsflow import layout


@pytest.mark.parametrize("template, keys", [
    (layout.PHASE1_SCORES, {"study": "real", "ds": "diverse_files", "variant": "B2", "seed": 43}),
    (layout.CROSS_SCORES, {"study": "demo", "src": "demo_a", "tgt": "demo_b__x", "variant": "cross", "seed": 7}),
    (layout.BASELINE_SCORES, {"study": "demo", "ds": "cic17_flows", "method": "shafir_nf", "seed": 42}),
])
def test_a_path_parses_back_to_its_keys(template, keys):
    p = layout.path(template, **keys)
    assert layout.parse(template, p) == keys
    assert layout.parse(template, "/somewhere/else/" + p) == keys  # only the tail counts


def test_parse_names_the_file_that_does_not_fit():
    with pytest.raises(ValueError, match="phase1_scores.npz: is not a path"):
        layout.parse(layout.BASELINE_SCORES, "results/demo/demo_a/janus/full/seed42/phase1_scores.npz")
    with pytest.raises(ValueError):  # a seed is a number
        layout.parse(layout.PHASE1_SCORES, "results/demo/demo_a/janus/full/seedX/phase1_scores.npz")


def test_a_path_needs_every_key():
    with pytest.raises(KeyError):
        layout.path(layout.BASELINE_SCORES, study="demo", ds="a", seed=1)


def test_main_variant_is_b2_on_a_flow_table():
    assert layout.main_variant(True) == "full"
    assert layout.main_variant(False) == "B2"


def test_janus_runs_and_cross_runs_of_a_small_plan():
    packets = {"a": True, "b": True, "flows": False}
    runs = layout.janus_runs(["a", "b", "flows"], packets.__getitem__, seeds=[1, 2],
                             variants=["full", "B1", "B2"], ablation_datasets=["a", "flows"], ablation_seeds=[1])
    assert runs == [("a", "B1", 1), ("a", "B2", 1), ("a", "full", 1), ("a", "full", 2),
                    ("b", "full", 1), ("b", "full", 2),
                    ("flows", "B2", 1), ("flows", "B2", 2)]  # B1 needs packets; B2 is the flow table's main
    pairs = layout.cross_pairs(["a", "b"])
    assert pairs == [("a", "b"), ("b", "a")]
    assert layout.cross_pairs(["a", "b"], enabled=False) == []
    cross = layout.cross_runs(pairs, seeds=[1, 2], trained=runs, variants=["full", "B1", "B2"],
                              ablation_datasets=["a", "flows"], ablation_seeds=[1])
    assert cross == [("a", "b", "cross", 1), ("a", "b", "cross", 2), ("b", "a", "cross", 1), ("b", "a", "cross", 2),
                     ("a", "b", "full", 1), ("a", "b", "B1", 1), ("a", "b", "B2", 1)]


def test_fix_ablations_run_only_beside_the_variant_they_are_compared_with():
    """nofix_* (issue 11) runs on packet stores next to full; B2_nofix_ot only where B2 runs (the flow table's
    main variant, or a packet store whose variants list B2); every packet-free variant is in PACKET_FREE_VARIANTS."""
    from nidsflow.janus.variants import DEFAULT_VARIANT_OVERRIDES, is_packet_free

    assert layout.PACKET_FREE_VARIANTS == {v for v in DEFAULT_VARIANT_OVERRIDES if is_packet_free({}, v)} \
        == {"B2", "B2_nofix_ot"}
    has_packets = {"pk": True, "tab": False}.__getitem__
    runs = layout.janus_runs(["pk", "tab"], has_packets, [1], ["nofix_iat", "B2_nofix_ot"], ["pk", "tab"], [1])
    assert runs == [("pk", "full", 1), ("pk", "nofix_iat", 1), ("tab", "B2", 1), ("tab", "B2_nofix_ot", 1)]
    runs = layout.janus_runs(["pk"], has_packets, [1], ["B2", "B2_nofix_ot"], ["pk"], [1])
    assert ("pk", "B2_nofix_ot", 1) in runs and ("pk", "B2", 1) in runs
