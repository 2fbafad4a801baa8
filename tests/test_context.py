"""Kitsune's damped incremental statistics (capture/context.py) against their closed forms."""

import numpy as np
import pytest

from nidsflow.capture.context import FEATURE_NAMES, KITSUNE_FEATURE_NAMES, LAMBDAS, ContextTracker


def _addr(last: int) -> np.ndarray:
    a = np.zeros(16, np.uint8)
    a[10] = a[11] = 255
    a[12:] = (10, 0, 0, last)
    return a


def _packets(spec):
    """spec: list of (t, src_last_octet, dst_last_octet, sport, dport, size) -> tracker arrays."""
    t = np.array([s[0] for s in spec], np.float64)
    src = np.stack([_addr(s[1]) for s in spec])
    dst = np.stack([_addr(s[2]) for s in spec])
    sport = np.array([s[3] for s in spec], np.uint16)
    dport = np.array([s[4] for s in spec], np.uint16)
    size = np.array([s[5] for s in spec], np.uint32)
    return t, src, dst, sport, dport, np.full(len(spec), 17, np.uint8), size


def _col(name):
    return FEATURE_NAMES.index(name)


def _damped(t_now, ts, xs, lam):
    """Closed form: w = sum 2^(-lam (t - t_k)), mean and (population) variance weighted by those terms."""
    g = 2.0 ** (-lam * (t_now - np.asarray(ts)))
    w = g.sum()
    m = (g * xs).sum() / w
    return w, m, (g * np.asarray(xs) ** 2).sum() / w - m * m


def test_layout_matches_the_paper():
    assert len(KITSUNE_FEATURE_NAMES) == 115 == 23 * len(LAMBDAS) and len(FEATURE_NAMES) == 135
    assert FEATURE_NAMES[:115] == KITSUNE_FEATURE_NAMES and FEATURE_NAMES[115:118] == ("D_5_weight", "D_5_mean", "D_5_std")
    assert FEATURE_NAMES[:3] == ("MI_5_weight", "MI_5_mean", "MI_5_std")
    assert FEATURE_NAMES[30:37] == ("HH_5_weight", "HH_5_mean", "HH_5_std", "HH_5_radius", "HH_5_magnitude",
                                    "HH_5_cov", "HH_5_pcc")
    assert KITSUNE_FEATURE_NAMES[-1] == "HpHp_0.01_pcc" and FEATURE_NAMES[-1] == "Dnew_0.01_share" and FEATURE_NAMES[65] == "HH_jit_5_weight"


def test_1d_statistics_equal_their_closed_form():
    rng = np.random.default_rng(0)
    n = 40
    times = np.cumsum(rng.exponential(0.3, n))
    sizes = rng.integers(40, 1500, n)
    # host 1 talks to hosts 2 and 3 (so H != HH), host 2 answers sometimes
    dsts = rng.choice([2, 3], n)
    spec = [(times[k], 1, int(dsts[k]), 1000, 53, int(sizes[k])) for k in range(n)]
    out = ContextTracker().update_arrays(*_packets(spec))
    for k in (0, 5, n - 1):
        for lam in LAMBDAS:
            w, m, v = _damped(times[k], times[:k + 1], sizes[:k + 1], lam)
            got = out[k, [_col(f"H_{lam:g}_weight"), _col(f"H_{lam:g}_mean"), _col(f"H_{lam:g}_std")]]
            np.testing.assert_allclose(got, [w, m, np.sqrt(max(v, 0))], rtol=1e-9, atol=1e-6)
            sel = dsts[:k + 1] == dsts[k]
            w, m, v = _damped(times[k], times[:k + 1][sel], sizes[:k + 1][sel], lam)
            got = out[k, [_col(f"HH_{lam:g}_weight"), _col(f"HH_{lam:g}_mean"), _col(f"HH_{lam:g}_std")]]
            np.testing.assert_allclose(got, [w, m, np.sqrt(max(v, 0))], rtol=1e-9, atol=1e-6)
            # the destination host's received packets: here those of the channel (host 1 is the only sender)
            got = out[k, [_col(f"D_{lam:g}_weight"), _col(f"D_{lam:g}_mean"), _col(f"D_{lam:g}_std")]]
            w, m, v = _damped(times[k], times[:k + 1][sel], sizes[:k + 1][sel], lam)
            np.testing.assert_allclose(got, [w, m, np.sqrt(max(v, 0))], rtol=1e-9, atol=1e-6)
            # share of the destination's packets from a new sender: 1 for the channel's first packet only
            newness = np.zeros(sel.sum())
            newness[0] = 1.0
            _, m, _ = _damped(times[k], times[:k + 1][sel], newness, lam)
            assert abs(out[k, _col(f"Dnew_{lam:g}_share")] - m) < 1e-9
            # jitter of the channel: the gaps between its packets (0 for the first)
            tc = times[:k + 1][sel]
            gaps = np.diff(tc, prepend=tc[0])
            w, m, v = _damped(times[k], tc, gaps, lam)
            got = out[k, [_col(f"HH_jit_{lam:g}_weight"), _col(f"HH_jit_{lam:g}_mean"), _col(f"HH_jit_{lam:g}_std")]]
            np.testing.assert_allclose(got, [w, m, np.sqrt(max(v, 0))], rtol=1e-9, atol=1e-9)


def test_small_lambda_gives_the_plain_running_mean_and_variance():
    rng = np.random.default_rng(1)
    sizes = rng.integers(40, 1500, 30)
    times = np.cumsum(rng.uniform(0.1, 50, 30))
    spec = [(times[k], 7, 8, 5, 6, int(sizes[k])) for k in range(30)]
    out = ContextTracker(lambdas=(1e-12,)).update_arrays(*_packets(spec))
    for k in range(30):
        x = sizes[:k + 1].astype(float)
        np.testing.assert_allclose(out[k, :3], [k + 1, x.mean(), x.std()], rtol=1e-6, atol=1e-6)


def test_2d_statistics_against_a_direct_computation():
    rng = np.random.default_rng(2)
    n = 30
    times = np.cumsum(rng.exponential(0.2, n))
    sizes = rng.integers(40, 1500, n).astype(float)
    fwd = rng.random(n) < 0.6
    fwd[0] = True
    spec = [(times[k], 1, 2, 4000, 80, int(sizes[k])) if fwd[k] else (times[k], 2, 1, 80, 4000, int(sizes[k]))
            for k in range(n)]
    lam = 1.0
    tr = ContextTracker(lambdas=(lam,))
    out = tr.update_arrays(*_packets(spec))
    last_res = {True: 0.0, False: 0.0}
    sr_terms = []  # (time, r_i * r_j) of each update
    for k in range(n):
        d = fwd[k]
        mine = fwd[:k + 1] == d
        _, mi, vi = _damped(times[k], times[:k + 1][mine], sizes[:k + 1][mine], lam)
        other = fwd[:k + 1] != d
        mj, vj = (0.0, 0.0) if not other.any() else _damped(times[k], times[:k + 1][other], sizes[:k + 1][other], lam)[1:]
        r = sizes[k] - mi
        sr_terms.append((times[k], r * last_res[not d]))
        last_res[d] = r
        g = 2.0 ** (-lam * (times[k] - np.array([s[0] for s in sr_terms])))
        cov = (g * np.array([s[1] for s in sr_terms])).sum() / g.sum()
        ss = np.sqrt(max(vi, 0)) * np.sqrt(max(vj, 0))
        want = [np.sqrt(vi ** 2 + vj ** 2), np.sqrt(mi ** 2 + mj ** 2), cov, cov / ss if ss else 0.0]
        for grp in ("HH", "HpHp"):
            got = out[k, [tr.names.index(f"{grp}_1_{s}") for s in ("radius", "magnitude", "cov", "pcc")]]
            np.testing.assert_allclose(got, want, rtol=1e-7, atol=1e-6)
        # w_ij = w_i + w_j: the pair's weight is the damped count of both directions
        w_all = (2.0 ** (-lam * (times[k] - times[:k + 1]))).sum()
        assert abs(g.sum() - w_all) < 1e-9


def test_state_carries_across_batches_and_streams_are_separate():
    rng = np.random.default_rng(3)
    n = 200
    spec = [(float(k) * 0.05, int(rng.integers(1, 6)), int(rng.integers(1, 6)), int(rng.integers(1, 4)),
             int(rng.integers(1, 4)), int(rng.integers(40, 1500))) for k in range(n)]
    arrays = _packets(spec)
    whole = ContextTracker(initial_ids=16).update_arrays(*arrays)
    tr = ContextTracker(initial_ids=16)  # grows its tables on the way
    pieces = [tr.update_arrays(*[a[lo:hi] for a in arrays]) for lo, hi in ((0, 7), (7, 120), (120, 200))]
    np.testing.assert_array_equal(np.concatenate(pieces), whole)
    assert np.isfinite(whole).all()
    # a host's first packet: weight 1, mean its size, std 0, in every group
    k = next(i for i, s in enumerate(spec) if s[1] == 4)
    for lam in LAMBDAS:
        assert out_first(whole, k, lam, spec[k][5])


def out_first(out, k, lam, size):
    return (out[k, _col(f"H_{lam:g}_weight")] == 1.0 and out[k, _col(f"H_{lam:g}_mean")] == size
            and out[k, _col(f"H_{lam:g}_std")] == 0.0)


def test_bad_lambdas_are_refused():
    with pytest.raises(ValueError, match="lambdas"):
        ContextTracker(lambdas=(1.0, 0.0))


# ---------------------------------------------------------------------------------------- extraction


def _context_captures(tmp_path):
    from test_drivers import write_pcap

    # interleaved conversations of several hosts, so every flow's context depends on other flows' packets
    a = write_pcap(tmp_path / "a.pcap", [(f"10.0.0.{1 + i % 3}", 1000 + i, "10.0.0.9", 80 if i % 2 else 53,
                                          6 if i % 2 else 17, 0.3 * i, 2 + i % 4) for i in range(12)])
    b = write_pcap(tmp_path / "b.pcap", [("10.0.0.5", 2000 + i, f"10.0.1.{i % 2}", 123, 17, 0.05 * i, 1)
                                         for i in range(20)])
    return a, b


def test_extraction_records_the_context_of_each_flows_first_and_last_packet(tmp_path):
    from nidsflow.capture.context import context_columns
    from nidsflow.capture.extract import extract_dataset
    from nidsflow.capture.pcap import CaptureReader
    from nidsflow.store import Store
    from test_drivers import EXTRACT

    a, b = _context_captures(tmp_path)
    cfg = {"driver": "per_file", "captures": [str(a), str(b)], "labels": {str(a): "BENIGN", str(b): "NTP"}}
    extract_dataset("c", cfg, {**EXTRACT, "context": True, "batch_packets": 5}, tmp_path / "s")
    s = Store(tmp_path / "s")
    assert s.has_context and s.manifest["context"]["columns"] == 270
    ctx = s.read_context()
    assert list(ctx.columns) == context_columns() and len(ctx) == len(s.flows)
    flows = s.flows
    for path in (a, b):  # the whole capture through one tracker: each file is one stream
        batches = list(CaptureReader(path))
        tr = ContextTracker()
        per_packet = np.concatenate([tr.update(x) for x in batches])
        ts = np.concatenate([x.ts for x in batches])
        sport = np.concatenate([x.sport for x in batches])
        dport = np.concatenate([x.dport for x in batches])
        for fid, f in flows[flows.source_file == str(path)].iterrows():
            mine = ((sport == f.src_port) & (dport == f.dst_port)) | ((sport == f.dst_port) & (dport == f.src_port))
            first = np.nonzero(mine & (ts == f.first_ts))[0][0]
            last = np.nonzero(mine & (ts == f.last_ts))[0][-1]
            row = ctx.loc[fid].to_numpy()
            np.testing.assert_allclose(row[:135], per_packet[first].astype(np.float32), rtol=1e-6)
            np.testing.assert_allclose(row[135:], per_packet[last].astype(np.float32), rtol=1e-6)
    # without the option there is no table and no manifest entry
    extract_dataset("c", cfg, EXTRACT, tmp_path / "s")
    assert not Store(tmp_path / "s").has_context and not (tmp_path / "s" / "context_features.parquet").exists()


@pytest.mark.parametrize("labels", ["per_file", "csv"])
def test_context_of_one_part_equals_that_of_several(tmp_path, labels):
    import pandas as pd

    from nidsflow.capture.extract import extract_dataset
    from test_drivers import EXTRACT

    a, b = _context_captures(tmp_path)
    if labels == "per_file":
        cfg = {"driver": "per_file", "captures": [str(a), str(b)], "labels": {str(a): "BENIGN", str(b): "NTP"}}
    else:
        csv = tmp_path / "labels.csv"
        csv.write_text("Flow ID, Source IP, Source Port, Destination IP, Destination Port, Protocol, Timestamp, Label\n"
                       f"f,10.0.0.5,2000,10.0.1.0,123,17,{pd.Timestamp(1.5e9, unit='s'):%d/%m/%Y %H:%M:%S},DDoS\n"
                       f"f,10.0.0.1,1000,10.0.0.9,53,17,{pd.Timestamp(1.5e9, unit='s'):%d/%m/%Y %H:%M:%S},BENIGN\n")
        cfg = {"driver": "demo", "captures": [str(a), str(b)], "labels": [str(csv)], "time_offset_s": 0}
    ext = {**EXTRACT, "context": True}
    extract_dataset("c", cfg, {**ext, "part_target_bytes": 1 << 40}, tmp_path / "one")
    extract_dataset("c", cfg, {**ext, "part_target_bytes": 1, "batch_packets": 3}, tmp_path / "many")
    one = pd.read_parquet(tmp_path / "one" / "context_features.parquet")
    many = pd.read_parquet(tmp_path / "many" / "context_features.parquet")
    assert len(one) == len(pd.read_parquet(tmp_path / "one" / "flows.parquet")) > 20
    pd.testing.assert_frame_equal(one, many, check_exact=True)
    assert one["flow_id"].tolist() == list(range(len(one)))
