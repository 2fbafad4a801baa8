"""Flow assembly: keys, direction, timeouts, TCP termination, fragments, bounded memory, channels."""

from __future__ import annotations

import numpy as np
import pytest

from nidsflow.capture.flows import FlowConfig, FlowMeter, addresses_to_str
from nidsflow.capture.pcap import PacketBatch

FIN, SYN, RST, PSH, ACK = 1, 2, 4, 8, 16


def _addr(ip: str) -> np.ndarray:
    a = np.zeros(16, np.uint8)
    a[10:12] = 255
    a[12:] = [int(x) for x in ip.split(".")]
    return a


def make_batch(pkts: list[dict]) -> PacketBatch:
    """pkts: dicts with t, src, dst, sport, dport, proto (6), payload, flags, win, hdr (20), frag."""
    n = len(pkts)
    g = lambda k, d: np.array([p.get(k, d) for p in pkts])  # noqa: E731
    hdr = g("hdr", 20).astype(np.uint16)
    payload = g("payload", 0).astype(np.uint32)
    return PacketBatch(
        ts=g("t", 0.0).astype(np.float64),
        src=np.stack([_addr(p.get("src", "10.0.0.1")) for p in pkts]) if n else np.zeros((0, 16), np.uint8),
        dst=np.stack([_addr(p.get("dst", "10.0.0.2")) for p in pkts]) if n else np.zeros((0, 16), np.uint8),
        ip_version=np.full(n, 4, np.uint8), proto=g("proto", 6).astype(np.uint8),
        sport=g("sport", 1234).astype(np.uint16), dport=g("dport", 80).astype(np.uint16),
        ip_len=(20 + hdr + payload).astype(np.uint32), ip_header_len=np.full(n, 20, np.uint16),
        l4_header_len=hdr, payload_len=payload, tcp_flags=g("flags", 0).astype(np.uint8),
        tcp_win=g("win", 0).astype(np.uint16), is_fragment=g("frag", False).astype(bool),
        frame_index=np.arange(n, dtype=np.int64))


def fwd(t, **kw):
    return {"t": t, **kw}


def bwd(t, **kw):
    return {"t": t, "src": "10.0.0.2", "dst": "10.0.0.1", "sport": 80, "dport": 1234, **kw}


def run(pkts, batch_size=None, **cfg):
    meter = FlowMeter(FlowConfig(**cfg))
    chunks = []
    step = batch_size or max(1, len(pkts))
    for i in range(0, len(pkts), step):
        chunks += meter.add_batch(make_batch(pkts[i:i + step]))
    chunks += meter.flush()
    from nidsflow.capture.flows import FlowChunk
    return FlowChunk.concat(chunks, meter.T), meter.stats


def test_both_directions_one_flow_first_sender_forward():
    # the server speaks first here: it is the forward direction
    ch, st = run([bwd(0.0, flags=SYN, win=100), fwd(0.1, flags=SYN | ACK, win=200), bwd(0.2, flags=ACK)])
    assert len(ch) == 1
    fr = ch.frame()
    assert (fr.src_ip[0], fr.src_port[0], fr.dst_ip[0], fr.dst_port[0]) == ("10.0.0.2", 80, "10.0.0.1", 1234)
    assert ch.channels[0, :3, 3].tolist() == [0, 1, 0]  # dir
    assert ch.channels[0, :3, 2].tolist() == [100, 200, 0]  # win
    np.testing.assert_allclose(ch.channels[0, :3, 1], [0, 0.1, 0.1], atol=1e-6)  # iat
    assert ch.channels[0, :3, 4].tolist() == [1, 1, 0]  # syn
    assert ch.channels[0, :3, 8].tolist() == [0, 1, 1]  # ack
    assert ch.lengths.tolist() == [3]


def test_channels_truncated_at_T_but_length_true():
    ch, _ = run([fwd(0.01 * i, payload=i) for i in range(40)], T=8)
    assert ch.channels.shape == (1, 8, 9)
    assert ch.lengths.tolist() == [40]
    np.testing.assert_allclose(ch.channels[0, :, 0], 40 + np.arange(8))  # size = ip_len


def test_idle_and_active_timeouts_split():
    ch, st = run([fwd(0), fwd(10), fwd(200)], idle_timeout_s=120)
    assert sorted(ch.lengths.tolist()) == [1, 2]
    assert st.ended_by["idle_timeout"] == 1
    pkts = [fwd(float(t)) for t in range(0, 100, 5)]  # never idle 120 s, but active > 60 s
    ch, st = run(pkts, idle_timeout_s=120, active_timeout_s=60)
    assert len(ch) == 2 and ch.lengths.sum() == 20
    assert st.ended_by.get("active_timeout", 0) == 1


def test_tcp_rst_ends_flow_and_next_packet_opens_new_one():
    pkts = [fwd(0, flags=SYN), bwd(0.1, flags=RST | ACK), fwd(0.2, flags=SYN)]
    ch, st = run(pkts)
    assert sorted(ch.lengths.tolist()) == [1, 2]
    assert st.ended_by["rst"] == 1
    ch, _ = run(pkts, tcp_close=False)
    assert ch.lengths.tolist() == [3]


def test_fin_both_sides_absorbs_last_ack_then_new_syn_is_new_flow():
    pkts = [fwd(0, flags=SYN), bwd(0.1, flags=SYN | ACK), fwd(0.2, flags=ACK, payload=10),
            fwd(0.3, flags=FIN | ACK), bwd(0.4, flags=FIN | ACK), fwd(0.5, flags=ACK),
            fwd(0.6, flags=SYN), bwd(0.7, flags=SYN | ACK)]
    ch, st = run(pkts)
    assert ch.lengths.tolist() == [6, 2]
    assert st.ended_by["fin"] == 1 and st.ended_by["end_of_capture"] == 1
    # one FIN only: the flow stays open
    ch, _ = run(pkts[:4] + [fwd(0.5, flags=ACK)])
    assert ch.lengths.tolist() == [5]


def test_nonfirst_fragments_counted_and_skipped_icmp_fragments_folded():
    pkts = [fwd(0, payload=1000, frag=True), fwd(0.001, sport=0, dport=0, payload=500, frag=True),
            fwd(0.002, proto=1, sport=0, dport=0, frag=True), fwd(0.003, proto=1, sport=0, dport=0, frag=True)]
    ch, st = run(pkts)
    assert st.skipped_nonfirst_fragments == 1
    assert st.packets == 3
    assert sorted(ch.lengths.tolist()) == [1, 2]


def test_distinct_keys_distinct_flows_and_udp_vs_tcp():
    pkts = [fwd(0), fwd(0.1, proto=17), fwd(0.2, sport=1235), fwd(0.3, dst="10.0.0.3")]
    ch, _ = run(pkts)
    assert len(ch) == 4
    assert sorted(ch.frame().protocol.tolist()) == [6, 6, 6, 17]


def test_memory_bounded_by_alive_flows_not_capture_size():
    # 20 000 short flows, one every 10 ms, idle timeout 1 s: only ~100 are alive at any time
    pkts = [fwd(0.01 * i, sport=1000 + (i % 60000), dst=f"10.1.{i // 250 % 250}.{i % 250}") for i in range(20000)]
    ch, st = run(pkts, batch_size=1000, idle_timeout_s=1.0, initial_slots=64)
    assert len(ch) == 20000 and ch.lengths.sum() == 20000
    assert st.max_alive_flows <= 1200  # one batch of new flows + those alive from before
    assert st.ended_by["idle_timeout"] >= 19000


def test_table_growth_many_concurrent_flows():
    n = 5000
    pkts = [fwd(0.001 * i, sport=1 + i, flags=SYN) for i in range(n)] + \
           [bwd(10 + 0.001 * i, dport=1 + i, flags=SYN | ACK) for i in range(n)]
    ch, st = run(pkts, batch_size=777, initial_slots=16)
    assert len(ch) == n
    assert (ch.lengths == 2).all()
    assert (ch.channels[:, 1, 3] == 1).all()


def test_addresses_to_str_v4_and_v6():
    a = np.zeros((2, 16), np.uint8)
    a[0, 10:12] = 255
    a[0, 12:] = [192, 168, 1, 2]
    a[1, 0:2] = [0x20, 0x01]
    a[1, 15] = 1
    words = a.view(np.uint64).reshape(2, 2)
    assert addresses_to_str(words).tolist() == ["192.168.1.2", "2001::1"]


def test_config_validation():
    with pytest.raises(ValueError, match="idle_timeout_s"):
        FlowConfig(idle_timeout_s=0)


from hypothesis import given, settings, strategies as st  # noqa: E402

_packet = st.tuples(st.floats(0, 50), st.integers(0, 3), st.integers(0, 3), st.sampled_from([6, 17]),
                    st.integers(0, 255), st.integers(0, 1500), st.booleans())


@settings(max_examples=40, deadline=None)
@given(st.lists(_packet, min_size=1, max_size=120), st.integers(1, 50), st.booleans())
def test_property_batching_invariance_and_conservation(raw, batch_size, tcp_close):
    """Any packet sequence: every packet lands in exactly one flow, the result does not depend on how
    the stream is cut into batches, and each flow's channels agree with its statistics."""
    raw = sorted(raw, key=lambda p: p[0])
    pkts = [{"t": t, "src": f"10.0.0.{a}", "dst": f"10.0.1.{b}", "sport": 1000 + a, "dport": 80 + b,
             "proto": pr, "flags": fl if pr == 6 else 0, "payload": pl, "win": 1000, "frag": False}
            if not rev else
            {"t": t, "src": f"10.0.1.{b}", "dst": f"10.0.0.{a}", "sport": 80 + b, "dport": 1000 + a,
             "proto": pr, "flags": fl if pr == 6 else 0, "payload": pl, "win": 1000}
            for t, a, b, pr, fl, pl, rev in raw]
    one, st1 = run(pkts, idle_timeout_s=10.0, active_timeout_s=30.0, tcp_close=tcp_close, T=4)
    many, st2 = run(pkts, batch_size=batch_size, idle_timeout_s=10.0, active_timeout_s=30.0, tcp_close=tcp_close,
                    T=4, initial_slots=2)
    assert one.lengths.sum() == len(pkts) == many.lengths.sum()
    key = lambda ch: sorted(map(tuple, np.column_stack([ch.state[:, 0], ch.lengths, ch.keys[:, 4]]).tolist()))  # noqa: E731
    assert key(one) == key(many)
    np.testing.assert_allclose(np.sort(one.channels.sum(axis=(1, 2))), np.sort(many.channels.sum(axis=(1, 2))),
                               rtol=1e-5)
    fr = one.frame()
    assert (fr.last_ts >= fr.first_ts).all()
    assert (fr.last_ts - fr.first_ts <= 30.0 + 1e-9).all()
    k = np.minimum(one.lengths, 4)
    for i in range(len(one)):
        assert (one.channels[i, k[i]:] == 0).all()
        assert one.channels[i, 0, 3] == 0  # the first packet is forward by definition


def test_meter_streams_chunks_across_batches():
    meter = FlowMeter(FlowConfig())
    chunks = meter.add_batch(make_batch([fwd(0.0), bwd(0.1)])) + meter.add_batch(make_batch([fwd(500.0)]))
    chunks += meter.flush()
    assert [len(c) for c in chunks if len(c)] == [1, 1] and meter.stats.packets == 3
