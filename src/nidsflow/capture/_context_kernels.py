"""Numba kernels of the host-level context: Kitsune's damped incremental statistics (AfterImage).

Mirsky et al., "Kitsune: An Ensemble of Autoencoders for Online Network Intrusion Detection", NDSS 2018,
section IV-B (feature extractor), with the feature set and order of the authors' reference code
(github.com/ymirsky/Kitsune-py, ``netStat.py`` / ``AfterImage.py``; read, not copied).

A *stream* S is a sequence of values (x_k, t_k). Its incremental statistic IS = (w, LS, SS) is decayed
before each update by d(dt) = 2^(-lambda dt) (dt: time since the stream's last update) and then updated
with the new value: w <- d w + 1, LS <- d LS + x, SS <- d SS + x^2; so at time t,
w = sum_k 2^(-lambda (t - t_k)), mean = LS / w, var = |SS / w - mean^2|, std = sqrt(var).
For two streams i, j (the two directions of a host pair or a socket) the 2-D statistics are the
magnitude sqrt(mean_i^2 + mean_j^2), the radius sqrt(var_i^2 + var_j^2), the approximate covariance
SR_ij / w_ij with SR_ij <- d SR_ij + r_i r_j (r_i = x - mean_i of the update, r_j the last residual of
the other stream) and w_ij <- d w_ij + 1 (so w_ij = w_i + w_j), and the correlation coefficient
cov / (std_i std_j) (0 when a std is 0).

State lives in dense tables indexed by ids (``assign_ids`` interns the key words of each stream, and
of each pair of streams, in open-addressing hash tables like the flow meter's):

* ``stat``  float64 [n_streams, L, 4]  w, LS, SS, last update time; ``seen`` uint8 [n_streams] (0: never
  updated, so the arrays can start as zeros, which the OS hands out lazily);
* ``cov``   float64 [n_pairs, L, 5]    SR, w_ij, last update time, last residual of side 0, of side 1;
  ``cseen`` uint8 [n_pairs].
"""

from __future__ import annotations

import numba as nb
import numpy as np

from nidsflow.capture._flow_kernels import EMPTY, _hash

#: Stream kinds (the key's last word; pairs have their own table). K_D, the destination host, is ours.
K_MI, K_H, K_HH, K_JIT, K_SK, K_HH_PAIR, K_SK_PAIR, K_D, K_DNEW = 0, 1, 2, 3, 4, 5, 6, 7, 8
# columns of the per-packet id array: MI, H, HH fwd, HH rev, jitter, socket fwd, socket rev (stream ids),
# HH pair, socket pair (pair ids), the packet's side of each pair, destination host, its new-sender stream
I_MI, I_H, I_HH, I_HHR, I_JIT, I_SK, I_SKR, I_HHP, I_SKP, I_HH_SIDE, I_SK_SIDE, I_D, I_DNEW = range(13)
N_ID_COLS = 13
#: Most new ids one packet can add: streams, pairs.
N_NEW_STREAMS, N_NEW_PAIRS = 9, 2

_LN2 = np.log(2.0)

#: Per lambda: 3 (MI) + 3 (H) + 7 (HH) + 3 (jitter) + 7 (socket) = 23 values of Kitsune, then 3 (D) + 1 (Dnew).
PER_LAMBDA_KITSUNE = 23
PER_LAMBDA = 27


@nb.njit(cache=True, inline="always")
def _lookup(table, kstore, counter, k0, k1, k2, k3, k4, k5):
    """Id of the key (k0..k5), a new one if unseen (capacity ensured by the caller)."""
    mask = np.uint64(table.shape[0] - 1)
    h = _hash(k0, k1, k2, k3, k4, k5) & mask
    while True:
        v = table[h]
        if v == EMPTY:
            s = counter[0]
            counter[0] += 1
            kstore[s, 0], kstore[s, 1], kstore[s, 2], kstore[s, 3], kstore[s, 4], kstore[s, 5] = \
                k0, k1, k2, k3, k4, k5
            table[h] = s
            return s
        if kstore[v, 0] == k0 and kstore[v, 1] == k1 and kstore[v, 2] == k2 and kstore[v, 3] == k3 \
                and kstore[v, 4] == k4 and kstore[v, 5] == k5:
            return v
        h = (h + np.uint64(1)) & mask


@nb.njit(cache=True)
def rehash(table, kstore, n_used):
    """Re-insert the ``n_used`` interned keys into a cleared (larger) table."""
    table[:] = EMPTY
    mask = np.uint64(table.shape[0] - 1)
    for s in range(n_used):
        h = _hash(kstore[s, 0], kstore[s, 1], kstore[s, 2], kstore[s, 3], kstore[s, 4], kstore[s, 5]) & mask
        while table[h] != EMPTY:
            h = (h + np.uint64(1)) & mask
        table[h] = s


@nb.njit(cache=True)
def assign_ids(s64, d64, sport, dport, proto, src_mac, table, kstore, counter, ptable, pstore, pcounter, ids,
               ckeys, cvals):
    """Stream ids of every packet into ``ids`` [n, N_ID_COLS] (see the I_* columns); the two ``*_SIDE``
    columns say which side (0/1) of the pair's 2-D statistic the packet's direction is.

    ``ckeys`` uint64 [C, 7] / ``cvals`` int64 [C, N_ID_COLS]: a direct-mapped cache of the ids of recent
    directed 5-tuples (column 6 of ckeys: 1 = filled); ids never change, so it stays valid across calls.
    """
    n = s64.shape[0]
    cmask = np.uint64(ckeys.shape[0] - 1)
    for i in range(n):
        sa0, sa1, da0, da1 = s64[i, 0], s64[i, 1], d64[i, 0], d64[i, 1]
        sp, dp = np.uint64(sport[i]), np.uint64(dport[i])
        pr = np.uint64(proto[i]) << np.uint64(8)
        z = np.uint64(0)
        tup = (sp << np.uint64(16)) | dp | (pr << np.uint64(24))
        c = _hash(sa0, sa1, da0, da1, tup, src_mac[i]) & cmask
        if ckeys[c, 6] == 1 and ckeys[c, 0] == sa0 and ckeys[c, 1] == sa1 and ckeys[c, 2] == da0 \
                and ckeys[c, 3] == da1 and ckeys[c, 4] == tup and ckeys[c, 5] == src_mac[i]:
            for k in range(N_ID_COLS):
                ids[i, k] = cvals[c, k]
            continue
        ids[i, I_MI] = _lookup(table, kstore, counter, src_mac[i], z, sa0, sa1, z, np.uint64(K_MI))
        ids[i, I_H] = _lookup(table, kstore, counter, sa0, sa1, z, z, z, np.uint64(K_H))
        ids[i, I_HH] = _lookup(table, kstore, counter, sa0, sa1, da0, da1, z, np.uint64(K_HH))
        ids[i, I_HHR] = _lookup(table, kstore, counter, da0, da1, sa0, sa1, z, np.uint64(K_HH))
        ids[i, I_JIT] = _lookup(table, kstore, counter, sa0, sa1, da0, da1, z, np.uint64(K_JIT))
        fwd_ports = (sp << np.uint64(16)) | dp
        rev_ports = (dp << np.uint64(16)) | sp
        ids[i, I_SK] = _lookup(table, kstore, counter, sa0, sa1, da0, da1, fwd_ports, pr | np.uint64(K_SK))
        ids[i, I_SKR] = _lookup(table, kstore, counter, da0, da1, sa0, sa1, rev_ports, pr | np.uint64(K_SK))
        ip_a = (sa0 < da0) or (sa0 == da0 and sa1 <= da1)
        if ip_a:
            ids[i, I_HHP] = _lookup(ptable, pstore, pcounter, sa0, sa1, da0, da1, z, np.uint64(K_HH_PAIR))
        else:
            ids[i, I_HHP] = _lookup(ptable, pstore, pcounter, da0, da1, sa0, sa1, z, np.uint64(K_HH_PAIR))
        ids[i, I_HH_SIDE] = 0 if ip_a else 1
        sk_a = (sa0 < da0) or (sa0 == da0 and (sa1 < da1 or (sa1 == da1 and sp <= dp)))
        if sk_a:
            ids[i, I_SKP] = _lookup(ptable, pstore, pcounter, sa0, sa1, da0, da1, fwd_ports, pr | np.uint64(K_SK_PAIR))
        else:
            ids[i, I_SKP] = _lookup(ptable, pstore, pcounter, da0, da1, sa0, sa1, rev_ports, pr | np.uint64(K_SK_PAIR))
        ids[i, I_SK_SIDE] = 0 if sk_a else 1
        ids[i, I_D] = _lookup(table, kstore, counter, da0, da1, z, z, z, np.uint64(K_D))
        ids[i, I_DNEW] = _lookup(table, kstore, counter, da0, da1, z, z, z, np.uint64(K_DNEW))
        ckeys[c, 0], ckeys[c, 1], ckeys[c, 2], ckeys[c, 3], ckeys[c, 4], ckeys[c, 5], ckeys[c, 6] = \
            sa0, sa1, da0, da1, tup, src_mac[i], 1
        for k in range(N_ID_COLS):
            cvals[c, k] = ids[i, k]


@nb.njit(cache=True, inline="always")
def _decay(stat, s, l, lam, t, new):
    tl = stat[s, l, 3]
    if new:  # a stream never updated starts at its first update, undecayed
        stat[s, l, 3] = t
    elif t > tl:
        f = np.exp(-lam * _LN2 * (t - tl))  # 2^(-lambda dt)
        stat[s, l, 0] *= f
        stat[s, l, 1] *= f
        stat[s, l, 2] *= f
        stat[s, l, 3] = t


@nb.njit(cache=True, inline="always")
def _insert(stat, s, l, lam, t, x, new):
    _decay(stat, s, l, lam, t, new)
    stat[s, l, 0] += 1.0
    stat[s, l, 1] += x
    stat[s, l, 2] += x * x


@nb.njit(cache=True, inline="always")
def _mean_var(stat, s, l):
    w = stat[s, l, 0]
    if w <= 0.0:
        return 0.0, 0.0
    m = stat[s, l, 1] / w
    return m, abs(stat[s, l, 2] / w - m * m)


@nb.njit(cache=True, inline="always")
def _write_1d(stat, s, l, out, i, c):
    m, v = _mean_var(stat, s, l)
    out[i, c] = stat[s, l, 0]
    out[i, c + 1] = m
    out[i, c + 2] = np.sqrt(v)


@nb.njit(cache=True, inline="always")
def _update_2d(stat, cov, si, sj, p, side, l, lam, t, x, out, i, c, new_p):
    """Stream si (already updated with x at t) against sj, pair statistic p; writes w, mean, std of si
    then radius, magnitude, cov, pcc at out[i, c:c+7]."""
    # the other stream is read undecayed: its mean and variance do not change under a common factor, and its
    # next update decays it from its own last time. Decaying it here instead underflows the weight of a
    # direction idle for more than ~1074 / lambda s to 0, which zeroed its mean and variance (measured:
    # kNN with context on diverse_files, seed 43, 77.6 -> 84.1 AUROC once the exact values were kept)
    tl = cov[p, l, 2]
    if new_p:
        cov[p, l, 2] = t
    elif t > tl:
        f = np.exp(-lam * _LN2 * (t - tl))  # 2^(-lambda dt)
        cov[p, l, 0] *= f
        cov[p, l, 1] *= f
        cov[p, l, 2] = t
    mi, vi = _mean_var(stat, si, l)
    mj, vj = _mean_var(stat, sj, l)
    r = x - mi
    cov[p, l, 0] += r * cov[p, l, 4 - side]  # the other side's last residual
    cov[p, l, 1] += 1.0
    cov[p, l, 3 + side] = r
    out[i, c] = stat[si, l, 0]
    out[i, c + 1] = mi
    out[i, c + 2] = np.sqrt(vi)
    out[i, c + 3] = np.sqrt(vi * vi + vj * vj)
    out[i, c + 4] = np.sqrt(mi * mi + mj * mj)
    cv = cov[p, l, 0] / cov[p, l, 1]
    out[i, c + 5] = cv
    ss = np.sqrt(vi) * np.sqrt(vj)
    out[i, c + 6] = cv / ss if ss != 0.0 else 0.0


@nb.njit(cache=True)
def update_stats(ts, size, ids, lambdas, stat, seen, cov, cseen, out):
    """Feed packets in order; out[i] = the 23 * L context values after packet i (layout: ``FEATURE_NAMES``
    of :mod:`nidsflow.capture.context`, group-major: MI, H, HH, HH_jit, HpHp, D, each lambda by lambda)."""
    n = ts.shape[0]
    L = lambdas.shape[0]
    c_mi, c_h, c_hh, c_jit, c_sk, c_d, c_dn = 0, 3 * L, 6 * L, 13 * L, 16 * L, 23 * L, 26 * L
    for i in range(n):
        t = ts[i]
        x = size[i]
        s_mi, s_h, s_hh, s_hhr, s_jit = ids[i, I_MI], ids[i, I_H], ids[i, I_HH], ids[i, I_HHR], ids[i, I_JIT]
        s_sk, s_skr, p_hh, p_sk = ids[i, I_SK], ids[i, I_SKR], ids[i, I_HHP], ids[i, I_SKP]
        side_hh, side_sk, s_d, s_dn = ids[i, I_HH_SIDE], ids[i, I_SK_SIDE], ids[i, I_D], ids[i, I_DNEW]
        n_d, n_dn = seen[s_d] == 0, seen[s_dn] == 0
        n_mi, n_h, n_hh, n_jit, n_sk = (seen[s_mi] == 0, seen[s_h] == 0, seen[s_hh] == 0, seen[s_jit] == 0,
                                        seen[s_sk] == 0)
        n_php, n_psk = cseen[p_hh] == 0, cseen[p_sk] == 0
        for l in range(L):
            lam = lambdas[l]
            _insert(stat, s_mi, l, lam, t, x, n_mi)
            _write_1d(stat, s_mi, l, out, i, c_mi + 3 * l)
            _insert(stat, s_h, l, lam, t, x, n_h)
            _write_1d(stat, s_h, l, out, i, c_h + 3 * l)
            _insert(stat, s_hh, l, lam, t, x, n_hh)
            _update_2d(stat, cov, s_hh, s_hhr, p_hh, side_hh, l, lam, t, x, out, i, c_hh + 7 * l, n_php)
            # jitter: the value is the time since the channel's previous packet (0 for its first)
            tl = stat[s_jit, l, 3]
            jit = t - tl if (not n_jit and t > tl) else 0.0
            _insert(stat, s_jit, l, lam, t, jit, n_jit)
            _write_1d(stat, s_jit, l, out, i, c_jit + 3 * l)
            _insert(stat, s_sk, l, lam, t, x, n_sk)
            _update_2d(stat, cov, s_sk, s_skr, p_sk, side_sk, l, lam, t, x, out, i, c_sk + 7 * l, n_psk)
            # the destination host's received packets (not Kitsune's): many sources converging on one host
            _insert(stat, s_d, l, lam, t, x, n_d)
            _write_1d(stat, s_d, l, out, i, c_d + 3 * l)
            # the share of its recent packets that came from a sender it never heard from before
            _insert(stat, s_dn, l, lam, t, 1.0 if n_hh else 0.0, n_dn)
            out[i, c_dn + l] = stat[s_dn, l, 1] / stat[s_dn, l, 0]
        seen[s_mi] = 1
        seen[s_h] = 1
        seen[s_hh] = 1
        seen[s_jit] = 1
        seen[s_sk] = 1
        seen[s_d] = 1
        seen[s_dn] = 1
        cseen[p_hh] = 1
        cseen[p_sk] = 1
