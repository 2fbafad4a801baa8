"""CICFlowMeter-style features against values computed by hand on tiny synthetic flows."""

from __future__ import annotations

import numpy as np
import pytest

from nidsflow.capture.features import FEATURE_NAMES, canonical_feature_name, features_from_state
from test_flows import ACK, PSH, SYN, bwd, fwd, run


def feats(pkts, **cfg):
    ch, _ = run(pkts, **cfg)
    df = features_from_state(ch.state)
    assert list(df.columns) == list(FEATURE_NAMES)
    return df.iloc[0]


def test_basic_flow_by_hand():
    pkts = [fwd(0.0, payload=100, flags=SYN, win=1000), bwd(0.5, payload=0, flags=SYN | ACK, win=2000),
            fwd(1.5, payload=300, flags=PSH | ACK, win=999), bwd(4.0, payload=50, flags=ACK, win=5)]
    f = feats(pkts)
    exp = {
        "Flow Duration": 4e6, "Total Fwd Packets": 2, "Total Backward Packets": 2,
        "Total Length of Fwd Packets": 400, "Total Length of Bwd Packets": 50,
        "Fwd Packet Length Max": 300, "Fwd Packet Length Min": 100, "Fwd Packet Length Mean": 200,
        "Fwd Packet Length Std": np.std([100, 300], ddof=1),
        "Bwd Packet Length Max": 50, "Bwd Packet Length Min": 0, "Bwd Packet Length Mean": 25,
        "Bwd Packet Length Std": np.std([0, 50], ddof=1),
        "Flow Bytes/s": 450 / 4, "Flow Packets/s": 1.0,
        "Flow IAT Mean": np.mean([5e5, 1e6, 2.5e6]), "Flow IAT Std": np.std([5e5, 1e6, 2.5e6], ddof=1),
        "Flow IAT Max": 2.5e6, "Flow IAT Min": 5e5,
        "Fwd IAT Total": 1.5e6, "Fwd IAT Mean": 1.5e6, "Fwd IAT Std": 0, "Fwd IAT Max": 1.5e6, "Fwd IAT Min": 1.5e6,
        "Bwd IAT Total": 3.5e6, "Bwd IAT Mean": 3.5e6, "Bwd IAT Min": 3.5e6,
        "Fwd PSH Flags": 1, "Bwd PSH Flags": 0, "Fwd URG Flags": 0,
        "Fwd Header Length": 40, "Bwd Header Length": 40, "Fwd Packets/s": 0.5, "Bwd Packets/s": 0.5,
        "Min Packet Length": 0, "Max Packet Length": 300, "Packet Length Mean": 112.5,
        "Packet Length Std": np.std([100, 0, 300, 50], ddof=1),
        "Packet Length Variance": np.var([100, 0, 300, 50], ddof=1),
        "FIN Flag Count": 0, "SYN Flag Count": 2, "ACK Flag Count": 3, "PSH Flag Count": 1, "RST Flag Count": 0,
        "Down/Up Ratio": 1.0, "Average Packet Size": 112.5, "Avg Fwd Segment Size": 200, "Avg Bwd Segment Size": 25,
        # gaps 0.5, 1.0, 2.5 s: one gap above 1 s -> 2 subflows
        "Subflow Fwd Packets": 1, "Subflow Fwd Bytes": 200, "Subflow Bwd Packets": 1, "Subflow Bwd Bytes": 25,
        "Init_Win_bytes_forward": 1000, "Init_Win_bytes_backward": 2000, "act_data_pkt_fwd": 2,
        "min_seg_size_forward": 20,
        # no gap above the 5 s activity timeout: one active period of 4 s, no idle period
        "Active Mean": 4e6, "Active Max": 4e6, "Active Min": 4e6, "Active Std": 0, "Idle Mean": 0, "Idle Max": 0,
        "Fwd Avg Bytes/Bulk": 0,
    }
    for k, v in exp.items():
        assert f[k] == pytest.approx(v, rel=1e-9, abs=1e-6), k


def test_active_idle_periods():
    f = feats([fwd(0.0), fwd(1.0), fwd(10.0), fwd(11.5), fwd(30.0)])
    # periods: active [0,1], idle 9 s, active [10,11.5], idle 18.5 s, active [30,30] (length 0: not counted)
    assert f["Active Mean"] == pytest.approx(1.25e6)
    assert f["Active Max"] == pytest.approx(1.5e6) and f["Active Min"] == pytest.approx(1e6)
    assert f["Active Std"] == pytest.approx(np.std([1e6, 1.5e6], ddof=1))
    assert f["Idle Mean"] == pytest.approx((9e6 + 18.5e6) / 2)
    assert f["Idle Max"] == pytest.approx(18.5e6) and f["Idle Min"] == pytest.approx(9e6)


def test_forward_bulk():
    f = feats([fwd(0.1 * i, payload=100) for i in range(5)])
    # a bulk starts at 4 consecutive data packets: 5 packets, 500 B, 0.4 s
    assert f["Fwd Avg Bytes/Bulk"] == pytest.approx(500)
    assert f["Fwd Avg Packets/Bulk"] == pytest.approx(5)
    assert f["Fwd Avg Bulk Rate"] == pytest.approx(500 / 0.4)
    assert f["Bwd Avg Bytes/Bulk"] == 0


def test_single_packet_flow_has_finite_zero_rates():
    f = feats([fwd(5.0, payload=7)])
    assert f["Flow Duration"] == 0 and f["Flow Bytes/s"] == 0 and f["Flow Packets/s"] == 0
    assert f["Init_Win_bytes_backward"] == -1  # no backward TCP packet
    assert np.isfinite(f.to_numpy()).all()


def test_streaming_equals_one_pass_over_batches():
    rng = np.random.default_rng(0)
    t = np.cumsum(rng.exponential(0.3, 300))
    pkts = [(fwd if rng.random() < 0.6 else bwd)(float(x), payload=int(rng.integers(0, 1400)),
                                                 flags=int(rng.choice([ACK, PSH | ACK]))) for x in t]
    a = feats(pkts)
    ch, _ = run(pkts, batch_size=7)
    b = features_from_state(ch.state).iloc[0]
    np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), rtol=1e-9)
    payload = np.array([p["payload"] for p in pkts], float)
    assert a["Packet Length Std"] == pytest.approx(np.std(payload, ddof=1), rel=1e-9)
    assert a["Flow IAT Std"] == pytest.approx(np.std(np.diff(t) * 1e6, ddof=1), rel=1e-6)


def test_aliases():
    assert canonical_feature_name(" Total Fwd Packet") == "Total Fwd Packets"
    assert canonical_feature_name("FWD Init Win Bytes") == "Init_Win_bytes_forward"
    assert canonical_feature_name("CWE Flag Count") == "CWR Flag Count"
