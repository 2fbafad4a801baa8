"""Numba kernels of the flow meter: the per-packet hot path of :mod:`nidsflow.capture.flows`.

All per-flow state lives in struct-of-arrays tables indexed by a *slot*:

* ``state``  float64 [cap, N_STATE]  the streaming accumulators (columns named in ``STATE_COLUMNS``);
* ``keys``   uint64  [cap, 6]        canonical key: addr A (2 words), addr B (2 words), ports A<<16|B, proto;
* ``chan``   float32 [cap, T, 9]     the first T packets' channels (``store.CHANNELS`` order);
* ``table``  int64   [size]          open-addressing hash table (linear probing) key -> slot,
  ``EMPTY`` / ``TOMB`` markers; it is rebuilt by Python when it gets too full.

Statistics are accumulated with Welford's update (mean_k = mean_{k-1} + (x - mean_{k-1}) / k,
M2_k = M2_{k-1} + (x - mean_{k-1}) (x - mean_k)), so no packet list is ever kept.
"""

from __future__ import annotations

import numba as nb
import numpy as np

EMPTY = -1
TOMB = -2

# status codes returned by process_packets
ST_DONE = 0
ST_NEED_SLOTS = 1
ST_NEED_OUT = 2

# end reasons
R_IDLE, R_ACTIVE, R_FIN, R_RST, R_EOF = 0, 1, 2, 3, 4
END_REASONS = ("idle_timeout", "active_timeout", "fin", "rst", "end_of_capture")

_STAT = ("n", "mean", "m2", "min", "max")


def _block(prefix: str) -> list[str]:
    return [f"{prefix}_{s}" for s in _STAT]


STATE_COLUMNS: tuple[str, ...] = tuple(
    ["first_ts", "last_ts", "last_fwd_ts", "last_bwd_ts", "fwd_is_a", "alive", "closing",
     "fin_fwd", "fin_bwd", "end_reason",
     "fwd_ip_bytes", "bwd_ip_bytes", "fwd_bytes", "bwd_bytes"]
    + _block("fwd_len") + _block("bwd_len")
    + _block("flow_iat") + _block("fwd_iat") + _block("bwd_iat")
    + ["fin_cnt", "syn_cnt", "rst_cnt", "psh_cnt", "ack_cnt", "urg_cnt", "cwr_cnt", "ece_cnt",
       "fwd_psh", "bwd_psh", "fwd_urg", "bwd_urg", "fwd_rst", "bwd_rst",
       "fwd_hdr", "bwd_hdr", "init_win_fwd", "init_win_bwd", "act_data_fwd", "min_seg_fwd",
       "start_active", "end_active"]
    + _block("active") + _block("idle")
    + ["sf_last_ts", "sf_count"]
    + ["fwd_bulk_start", "fwd_bulk_pkts_h", "fwd_bulk_size_h", "fwd_bulk_last",
       "fwd_bulk_count", "fwd_bulk_pkts", "fwd_bulk_size", "fwd_bulk_dur",
       "bwd_bulk_start", "bwd_bulk_pkts_h", "bwd_bulk_size_h", "bwd_bulk_last",
       "bwd_bulk_count", "bwd_bulk_pkts", "bwd_bulk_size", "bwd_bulk_dur"]
)
N_STATE = len(STATE_COLUMNS)
COL = {c: i for i, c in enumerate(STATE_COLUMNS)}

FIRST_TS, LAST_TS, LAST_FWD_TS, LAST_BWD_TS = COL["first_ts"], COL["last_ts"], COL["last_fwd_ts"], COL["last_bwd_ts"]
FWD_IS_A, ALIVE, CLOSING, FIN_FWD, FIN_BWD, END_REASON = (
    COL["fwd_is_a"], COL["alive"], COL["closing"], COL["fin_fwd"], COL["fin_bwd"], COL["end_reason"])
FWD_IP_BYTES, BWD_IP_BYTES, FWD_BYTES, BWD_BYTES = (
    COL["fwd_ip_bytes"], COL["bwd_ip_bytes"], COL["fwd_bytes"], COL["bwd_bytes"])
FWD_LEN, BWD_LEN = COL["fwd_len_n"], COL["bwd_len_n"]
FLOW_IAT, FWD_IAT, BWD_IAT = COL["flow_iat_n"], COL["fwd_iat_n"], COL["bwd_iat_n"]
FIN_CNT = COL["fin_cnt"]  # FIN SYN RST PSH ACK URG CWR ECE counts follow in this order
FWD_PSH, BWD_PSH, FWD_URG, BWD_URG, FWD_RST, BWD_RST = (
    COL["fwd_psh"], COL["bwd_psh"], COL["fwd_urg"], COL["bwd_urg"], COL["fwd_rst"], COL["bwd_rst"])
FWD_HDR, BWD_HDR, INIT_WIN_FWD, INIT_WIN_BWD, ACT_DATA_FWD, MIN_SEG_FWD = (
    COL["fwd_hdr"], COL["bwd_hdr"], COL["init_win_fwd"], COL["init_win_bwd"], COL["act_data_fwd"],
    COL["min_seg_fwd"])
START_ACTIVE, END_ACTIVE, ACTIVE, IDLE = COL["start_active"], COL["end_active"], COL["active_n"], COL["idle_n"]
SF_LAST_TS, SF_COUNT = COL["sf_last_ts"], COL["sf_count"]
FWD_BULK, BWD_BULK = COL["fwd_bulk_start"], COL["bwd_bulk_start"]

# flag bits of the TCP header
F_FIN, F_SYN, F_RST, F_PSH, F_ACK, F_URG, F_ECE, F_CWR = 1, 2, 4, 8, 16, 32, 64, 128


@nb.njit(cache=True, inline="always")
def _welford(state, s, base, x):
    n = state[s, base] + 1.0
    d = x - state[s, base + 1]
    state[s, base] = n
    state[s, base + 1] += d / n
    state[s, base + 2] += d * (x - state[s, base + 1])
    if n == 1.0 or x < state[s, base + 3]:
        state[s, base + 3] = x
    if n == 1.0 or x > state[s, base + 4]:
        state[s, base + 4] = x


@nb.njit(cache=True, inline="always")
def _hash(k0, k1, k2, k3, k4, k5):
    # splitmix64-style mixing of the six key words
    h = np.uint64(0x9E3779B97F4A7C15)
    for w in (k0, k1, k2, k3, k4, k5):
        h ^= w + np.uint64(0x9E3779B97F4A7C15) + (h << np.uint64(6)) + (h >> np.uint64(2))
        h ^= h >> np.uint64(31)
        h *= np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(29)
    return h


@nb.njit(cache=True)
def table_insert(table, keys, slot):
    mask = np.uint64(table.shape[0] - 1)
    h = _hash(keys[slot, 0], keys[slot, 1], keys[slot, 2], keys[slot, 3], keys[slot, 4], keys[slot, 5]) & mask
    while True:
        v = table[h]
        if v == EMPTY or v == TOMB:
            table[h] = slot
            return
        h = (h + np.uint64(1)) & mask


@nb.njit(cache=True)
def table_rebuild(table, keys, state, n_used):
    """Re-insert every live slot into a cleared table (drops tombstones); returns the live count."""
    table[:] = EMPTY
    live = 0
    for s in range(n_used):
        if state[s, ALIVE] == 1.0:
            table_insert(table, keys, s)
            live += 1
    return live


@nb.njit(cache=True, inline="always")
def _table_remove(table, keys, slot):
    mask = np.uint64(table.shape[0] - 1)
    h = _hash(keys[slot, 0], keys[slot, 1], keys[slot, 2], keys[slot, 3], keys[slot, 4], keys[slot, 5]) & mask
    while True:
        v = table[h]
        if v == slot:
            table[h] = TOMB
            return
        if v == EMPTY:
            return
        h = (h + np.uint64(1)) & mask


@nb.njit(cache=True, inline="always")
def _update_active_idle(state, s, t, activity_timeout):
    # CICFlowMeter updateActiveIdleTime: a gap above the activity timeout closes an active period
    if t - state[s, END_ACTIVE] > activity_timeout:
        if state[s, END_ACTIVE] - state[s, START_ACTIVE] > 0:
            _welford(state, s, ACTIVE, (state[s, END_ACTIVE] - state[s, START_ACTIVE]) * 1e6)
        _welford(state, s, IDLE, (t - state[s, END_ACTIVE]) * 1e6)
        state[s, START_ACTIVE] = t
        state[s, END_ACTIVE] = t
    else:
        state[s, END_ACTIVE] = t


@nb.njit(cache=True, inline="always")
def _update_bulk(state, s, base, other_base, t, size, bulk_gap):
    # CICFlowMeter updateForwardBulk / updateBackwardBulk, on payload-carrying packets only.
    # base + 0 start, 1 pkt helper, 2 size helper, 3 last ts, 4 count, 5 pkts, 6 size, 7 duration
    if state[s, other_base + 3] > state[s, base + 0]:
        state[s, base + 0] = -1.0  # the other direction had a bulk packet since: restart ours
    if size <= 0:
        return
    if state[s, base + 0] < 0.0:
        state[s, base + 0] = t
        state[s, base + 1] = 1.0
        state[s, base + 2] = size
        state[s, base + 3] = t
    elif t - state[s, base + 3] > bulk_gap:
        state[s, base + 0] = t
        state[s, base + 3] = t
        state[s, base + 1] = 1.0
        state[s, base + 2] = size
    else:
        state[s, base + 1] += 1.0
        state[s, base + 2] += size
        if state[s, base + 1] == 4.0:  # a bulk is 4 consecutive data packets of one direction
            state[s, base + 4] += 1.0
            state[s, base + 5] += state[s, base + 1]
            state[s, base + 6] += state[s, base + 2]
            state[s, base + 7] += t - state[s, base + 0]
        elif state[s, base + 1] > 4.0:
            state[s, base + 5] += 1.0
            state[s, base + 6] += size
            state[s, base + 7] += t - state[s, base + 3]
        state[s, base + 3] = t


@nb.njit(cache=True, inline="always")
def _init_flow(state, s, t, fwd_is_a):
    state[s, :] = 0.0
    state[s, FIRST_TS] = t
    state[s, LAST_TS] = t
    state[s, FWD_IS_A] = fwd_is_a
    state[s, ALIVE] = 1.0
    state[s, INIT_WIN_FWD] = -1.0
    state[s, INIT_WIN_BWD] = -1.0
    state[s, START_ACTIVE] = t
    state[s, END_ACTIVE] = t
    state[s, SF_LAST_TS] = -1.0
    state[s, END_REASON] = -1.0
    for b in (FWD_BULK, BWD_BULK):
        state[s, b] = -1.0      # no bulk started
        state[s, b + 3] = -1.0  # no bulk packet yet


@nb.njit(cache=True, inline="always")
def _add_packet(state, chan, s, t, is_bwd, ip_len, hdr, payload, flags, win, is_tcp, T,
                activity_timeout, subflow_gap, bulk_gap):
    n_before = state[s, FWD_LEN] + state[s, BWD_LEN]
    iat = t - state[s, LAST_TS] if n_before > 0 else 0.0
    k = int(n_before)
    if k < T:
        chan[s, k, 0] = ip_len
        chan[s, k, 1] = iat
        chan[s, k, 2] = win if is_tcp else 0.0
        chan[s, k, 3] = 1.0 if is_bwd else 0.0
        chan[s, k, 4] = 1.0 if flags & F_SYN else 0.0
        chan[s, k, 5] = 1.0 if flags & F_FIN else 0.0
        chan[s, k, 6] = 1.0 if flags & F_RST else 0.0
        chan[s, k, 7] = 1.0 if flags & F_PSH else 0.0
        chan[s, k, 8] = 1.0 if flags & F_ACK else 0.0
    if n_before > 0:
        _welford(state, s, FLOW_IAT, iat * 1e6)
    # subflows: a gap above subflow_gap starts a new one (and closes an active period)
    if state[s, SF_LAST_TS] < 0:
        state[s, SF_LAST_TS] = t
    if t - state[s, SF_LAST_TS] > subflow_gap:
        state[s, SF_COUNT] += 1.0
        _update_active_idle(state, s, t, activity_timeout)
    state[s, SF_LAST_TS] = t
    # the direction's columns; MIN_SEG_FWD and ACT_DATA_FWD exist for the forward direction only
    if is_bwd:
        n_col, iat_col, last_col, bytes_col, ipb_col, hdr_col, win_col = (
            BWD_LEN, BWD_IAT, LAST_BWD_TS, BWD_BYTES, BWD_IP_BYTES, BWD_HDR, INIT_WIN_BWD)
        psh_col, urg_col, rst_col, bulk_col, other_bulk_col = BWD_PSH, BWD_URG, BWD_RST, BWD_BULK, FWD_BULK
    else:
        n_col, iat_col, last_col, bytes_col, ipb_col, hdr_col, win_col = (
            FWD_LEN, FWD_IAT, LAST_FWD_TS, FWD_BYTES, FWD_IP_BYTES, FWD_HDR, INIT_WIN_FWD)
        psh_col, urg_col, rst_col, bulk_col, other_bulk_col = FWD_PSH, FWD_URG, FWD_RST, FWD_BULK, BWD_BULK
    if state[s, n_col] > 0:
        _welford(state, s, iat_col, (t - state[s, last_col]) * 1e6)
    if not is_bwd and (state[s, FWD_LEN] == 0 or hdr < state[s, MIN_SEG_FWD]):
        state[s, MIN_SEG_FWD] = hdr
    _welford(state, s, n_col, payload)
    state[s, bytes_col] += payload
    state[s, ipb_col] += ip_len
    state[s, hdr_col] += hdr
    state[s, last_col] = t
    if not is_bwd and payload >= 1:
        state[s, ACT_DATA_FWD] += 1.0
    if is_tcp and state[s, win_col] < 0:
        state[s, win_col] = win
    if flags & F_PSH:
        state[s, psh_col] += 1.0
    if flags & F_URG:
        state[s, urg_col] += 1.0
    if flags & F_RST:
        state[s, rst_col] += 1.0
    _update_bulk(state, s, bulk_col, other_bulk_col, t, payload, bulk_gap)
    for b in range(8):
        if flags & (1 << b):
            # bit order FIN SYN RST PSH ACK URG ECE CWR -> columns FIN SYN RST PSH ACK URG CWR ECE
            col = FIN_CNT + (b if b < 6 else (13 - b))
            state[s, col] += 1.0
    state[s, LAST_TS] = t
    _update_active_idle(state, s, t, activity_timeout)


@nb.njit(cache=True, inline="always")
def _end_flow(state, keys, table, counters, out, s, reason):
    """End flow ``s``: record the reason, free its table entry, queue its slot in ``out`` for collection."""
    state[s, END_REASON] = reason
    state[s, ALIVE] = 0.0
    _table_remove(table, keys, s)
    counters[3] += 1
    counters[4] -= 1
    out[counters[2]] = s
    counters[2] += 1


@nb.njit(cache=True)
def process_packets(start, ts, s64, d64, sport, dport, proto, ip_len, hdr, payload, flags, win, skip,
                    state, keys, chan, table, free_slots, counters, out, idle_timeout, active_timeout,
                    tcp_close, activity_timeout, subflow_gap, bulk_gap, ctx, ctx_fl):
    """Feed packets ``start..n-1`` into the flow table; returns (next packet index, status).

    ``ctx`` [n, F] is each packet's host-level context (:mod:`nidsflow.capture.context`, F = 0 when off);
    a flow keeps the context of its first packet in ``ctx_fl[slot, 0]`` and of its latest in ``ctx_fl[slot, 1]``.

    ``counters`` = [n_free, next_fresh_slot, n_out, tombstones, table_used]. A finished flow's slot
    is appended to ``out`` (end reason in its state) and stays reserved until Python collects it.
    Status ST_NEED_SLOTS / ST_NEED_OUT asks the caller to grow the tables / drain ``out`` and call
    again from the returned index.
    """
    n = ts.shape[0]
    cap = state.shape[0]
    T = chan.shape[1]
    mask = np.uint64(table.shape[0] - 1)
    for i in range(start, n):
        if skip[i]:
            continue
        if counters[2] + 2 > out.shape[0]:
            return i, ST_NEED_OUT
        if (counters[3] + counters[4] + 1) * 2 > table.shape[0]:
            return i, ST_NEED_SLOTS
        t = ts[i]
        # canonical key: the smaller (addr, port) endpoint is A
        sa0, sa1, da0, da1 = s64[i, 0], s64[i, 1], d64[i, 0], d64[i, 1]
        sp, dp = np.uint64(sport[i]), np.uint64(dport[i])
        src_is_a = (sa0 < da0) or (sa0 == da0 and (sa1 < da1 or (sa1 == da1 and sp <= dp)))
        if src_is_a:
            k0, k1, k2, k3, k4 = sa0, sa1, da0, da1, (sp << np.uint64(16)) | dp
        else:
            k0, k1, k2, k3, k4 = da0, da1, sa0, sa1, (dp << np.uint64(16)) | sp
        k5 = np.uint64(proto[i])
        h = _hash(k0, k1, k2, k3, k4, k5) & mask
        slot = -1
        while True:
            v = table[h]
            if v == EMPTY:
                break
            if v >= 0 and keys[v, 0] == k0 and keys[v, 1] == k1 and keys[v, 2] == k2 \
                    and keys[v, 3] == k3 and keys[v, 4] == k4 and keys[v, 5] == k5:
                slot = v
                break
            h = (h + np.uint64(1)) & mask
        fl = flags[i]
        is_tcp = proto[i] == 6
        absorb_and_close = False
        if slot >= 0:
            reason = -1
            if t - state[slot, LAST_TS] > idle_timeout:
                reason = R_IDLE
            elif t - state[slot, FIRST_TS] > active_timeout:
                reason = R_ACTIVE
            elif state[slot, CLOSING] == 1.0:
                # both FINs seen: the closing ACK (or an RST) still belongs to the flow; a SYN or
                # a data packet opens a new one
                if (fl & F_SYN) == 0 and (payload[i] == 0 or (fl & F_RST) != 0):
                    absorb_and_close = True
                else:
                    reason = R_FIN
            if reason >= 0:
                _end_flow(state, keys, table, counters, out, slot, reason)
                slot = -1
        if slot < 0:
            if counters[0] > 0:
                counters[0] -= 1
                slot = free_slots[counters[0]]
            elif counters[1] < cap:
                slot = counters[1]
                counters[1] += 1
            else:
                return i, ST_NEED_SLOTS
            keys[slot, 0], keys[slot, 1], keys[slot, 2], keys[slot, 3], keys[slot, 4], keys[slot, 5] = \
                k0, k1, k2, k3, k4, k5
            _init_flow(state, slot, t, 1.0 if src_is_a else 0.0)
            chan[slot, :, :] = 0.0
            table_insert(table, keys, slot)
            counters[4] += 1
        is_bwd = (state[slot, FWD_IS_A] == 1.0) != src_is_a
        _add_packet(state, chan, slot, t, is_bwd, float(ip_len[i]), float(hdr[i]), float(payload[i]),
                    fl, float(win[i]), is_tcp, T, activity_timeout, subflow_gap, bulk_gap)
        if ctx.shape[1] > 0:
            if state[slot, FWD_LEN] + state[slot, BWD_LEN] == 1.0:
                ctx_fl[slot, 0, :] = ctx[i, :]
            ctx_fl[slot, 1, :] = ctx[i, :]
        if tcp_close and is_tcp:
            end = -1
            if absorb_and_close:
                end = R_FIN if (fl & F_RST) == 0 else R_RST
            elif fl & F_RST:
                end = R_RST
            elif fl & F_FIN:
                if is_bwd:
                    state[slot, FIN_BWD] = 1.0
                else:
                    state[slot, FIN_FWD] = 1.0
                if state[slot, FIN_FWD] == 1.0 and state[slot, FIN_BWD] == 1.0:
                    state[slot, CLOSING] = 1.0
            if end >= 0:
                _end_flow(state, keys, table, counters, out, slot, end)
    return n, ST_DONE


@nb.njit(cache=True)
def expire(now, state, keys, table, counters, out, idle_timeout, active_timeout, flush_all):
    """End every live flow idle for more than idle_timeout (or older than active_timeout) at ``now``;
    with flush_all, end them all (end of capture). Returns False if ``out`` filled up first."""
    for s in range(counters[1]):
        if state[s, ALIVE] != 1.0:
            continue
        if flush_all:
            reason = R_FIN if state[s, CLOSING] == 1.0 else R_EOF
        elif now - state[s, LAST_TS] > idle_timeout:
            reason = R_FIN if state[s, CLOSING] == 1.0 else R_IDLE
        elif now - state[s, FIRST_TS] > active_timeout:
            reason = R_ACTIVE
        else:
            continue
        if counters[2] >= out.shape[0]:
            return False
        _end_flow(state, keys, table, counters, out, s, reason)
    return True
