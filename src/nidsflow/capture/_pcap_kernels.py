"""Numba kernels behind :mod:`nidsflow.capture.pcap`.

Two passes over a chunk of the capture file held in a ``uint8`` buffer:

1. a *walker* (``walk_pcap`` / ``walk_pcapng``) finds record boundaries and reads the record
   headers (data offset, captured length, original length, timestamp, link type);
2. ``decode_records`` parses link, IP and transport headers of each record into compacted
   columnar arrays, and writes a status code per record (``ST_*``) so that every record is
   accounted for (emitted, non-IP, truncated or malformed).

Everything here is pure array code: no Python objects, no exceptions. Errors are returned as
status codes and turned into :class:`~nidsflow.capture.pcap.CaptureError` by the caller.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# ---- walker status ---------------------------------------------------------------------------
WALK_NEED_DATA = 0        # the next record is not complete in the buffer (or the buffer is empty)
WALK_FULL = 1             # max_records records were read
WALK_PYTHON_BLOCK = 2     # pcapng: a block at `pos` (SHB, IDB) must be handled in Python
WALK_ABSURD_CAPLEN = 3    # captured length above the sanity bound
WALK_BAD_BLOCK_LEN = 4    # pcapng block length < 12, not a multiple of 4, or absurd
WALK_TRAILER_MISMATCH = 5  # pcapng trailing block length differs from the leading one
WALK_BAD_INTERFACE = 6    # pcapng packet refers to an interface that was not described
WALK_CAPLEN_BEYOND_BLOCK = 7  # pcapng packet data runs past the end of its block

# ---- record status (one per record) ----------------------------------------------------------
ST_OK = 0
ST_NON_IP = 1              # link layer carries something that is not IPv4/IPv6 (ARP, LLDP, ...)
ST_UNSUPPORTED_LINK = 2    # link type not decoded
ST_TRUNC_L2 = 3            # cut inside the link-layer header
ST_TRUNC_IP = 4            # cut inside the IP header (or IPv6 extension headers)
ST_TRUNC_L4 = 5            # cut inside the TCP/UDP/SCTP header
ST_BAD_IP_VERSION = 6      # version nibble does not match the link layer's protocol
ST_BAD_IPV4_IHL = 7        # IHL < 5
ST_BAD_IP_LENGTH = 8       # IP length smaller than the headers it must contain
ST_BAD_TCP_OFFSET = 9      # TCP data offset < 5
ST_BAD_IPV6_EXT = 10       # IPv6 extension header chain runs past the payload length

STATUS_NAMES = (
    "ok", "non_ip", "unsupported_link_type", "truncated_link_header", "truncated_ip_header",
    "truncated_l4_header", "bad_ip_version", "bad_ipv4_ihl", "bad_ip_length", "bad_tcp_offset",
    "bad_ipv6_extension_chain",
)
N_STATUS = len(STATUS_NAMES)

IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_SCTP = 132


@njit(cache=True, inline="always")
def _u16(buf, i, big):
    if big:
        return (np.uint32(buf[i]) << 8) | np.uint32(buf[i + 1])
    return (np.uint32(buf[i + 1]) << 8) | np.uint32(buf[i])


@njit(cache=True, inline="always")
def _u32(buf, i, big):
    if big:
        return ((np.uint32(buf[i]) << 24) | (np.uint32(buf[i + 1]) << 16)
                | (np.uint32(buf[i + 2]) << 8) | np.uint32(buf[i + 3]))
    return ((np.uint32(buf[i + 3]) << 24) | (np.uint32(buf[i + 2]) << 16)
            | (np.uint32(buf[i + 1]) << 8) | np.uint32(buf[i]))


@njit(cache=True, inline="always")
def _be16(buf, i):
    return (np.int64(buf[i]) << 8) | np.int64(buf[i + 1])


@njit(cache=True)
def walk_pcap(buf, pos, end, big, frac_per_second, max_caplen, max_records,
              rec_off, rec_cap, rec_orig, rec_ts):
    """Read classic-pcap record headers from ``buf[pos:end]``.

    ts = ts_sec + ts_frac / frac_per_second (frac_per_second = 1e6 or 1e9), each term exact in
    float64 before the one rounding of the sum.
    Returns (n_records, new_pos, WALK_* status); on an error status `new_pos` is the bad record.
    """
    n = 0
    fps = np.float64(frac_per_second)
    while n < max_records:
        if pos + 16 > end:
            return n, pos, WALK_NEED_DATA
        cap = np.int64(_u32(buf, pos + 8, big))
        if cap > max_caplen:
            return n, pos, WALK_ABSURD_CAPLEN
        if pos + 16 + cap > end:
            return n, pos, WALK_NEED_DATA
        sec = _u32(buf, pos, big)
        frac = _u32(buf, pos + 4, big)
        rec_off[n] = pos + 16
        rec_cap[n] = cap
        rec_orig[n] = _u32(buf, pos + 12, big)
        rec_ts[n] = np.float64(sec) + np.float64(frac) / fps
        n += 1
        pos += 16 + cap
    return n, pos, WALK_FULL


@njit(cache=True)
def walk_pcapng(buf, pos, end, big, if_link, if_snap, if_units, if_offset, max_block,
                max_records, state, rec_off, rec_cap, rec_orig, rec_ts, rec_link):
    """Read pcapng packet blocks (EPB, SPB, obsolete PB) from ``buf[pos:end]``; skip others.

    Stops at a SHB or IDB (``WALK_PYTHON_BLOCK``) so that Python updates byte order and the
    interface table. ts = (t // units) + (t % units) / units + if_tsoffset, with t the 64-bit
    timestamp and units = 1 / if_tsresol. A simple packet block has no timestamp: it takes
    the previous packet's (``state[0]``).
    """
    n = 0
    n_if = if_link.shape[0]
    while n < max_records:
        if pos + 8 > end:
            return n, pos, WALK_NEED_DATA
        btype = _u32(buf, pos, big)
        if btype == 0x0A0D0D0A:
            return n, pos, WALK_PYTHON_BLOCK
        blen = np.int64(_u32(buf, pos + 4, big))
        if blen < 12 or blen % 4 != 0 or blen > max_block:
            return n, pos, WALK_BAD_BLOCK_LEN
        if pos + blen > end:
            return n, pos, WALK_NEED_DATA
        if np.int64(_u32(buf, pos + blen - 4, big)) != blen:
            return n, pos, WALK_TRAILER_MISMATCH
        if btype == 1:
            return n, pos, WALK_PYTHON_BLOCK
        if btype == 6 or btype == 2:  # enhanced / obsolete packet block
            if blen < 32:
                return n, pos, WALK_CAPLEN_BEYOND_BLOCK
            if btype == 6:
                iface = np.int64(_u32(buf, pos + 8, big))
            else:
                iface = np.int64(_u16(buf, pos + 8, big))
            if iface >= n_if:
                return n, pos, WALK_BAD_INTERFACE
            cap = np.int64(_u32(buf, pos + 20, big))
            if 28 + cap > blen - 4:
                return n, pos, WALK_CAPLEN_BEYOND_BLOCK
            t = (np.uint64(_u32(buf, pos + 12, big)) << np.uint64(32)) | np.uint64(_u32(buf, pos + 16, big))
            units = if_units[iface]
            ts = (np.float64(t // units) + np.float64(t % units) / np.float64(units)
                  + if_offset[iface])
            state[0] = ts
            rec_off[n] = pos + 28
            rec_cap[n] = cap
            rec_orig[n] = _u32(buf, pos + 24, big)
            rec_ts[n] = ts
            rec_link[n] = if_link[iface]
            n += 1
        elif btype == 3:  # simple packet block: interface 0, caplen = min(origlen, snaplen, room)
            if n_if == 0:
                return n, pos, WALK_BAD_INTERFACE
            orig = np.int64(_u32(buf, pos + 8, big))
            cap = min(orig, blen - 16)
            if if_snap[0] > 0:
                cap = min(cap, np.int64(if_snap[0]))
            rec_off[n] = pos + 12
            rec_cap[n] = cap
            rec_orig[n] = orig
            rec_ts[n] = state[0]
            rec_link[n] = if_link[0]
            n += 1
        pos += blen
    return n, pos, WALK_FULL


# ---- link layer --------------------------------------------------------------------------------

@njit(cache=True)
def _l3_from_ethertype(buf, off, etype, end):
    """Follow VLAN (802.1Q/802.1ad/QinQ), PPPoE session and MPLS shims after an EtherType.

    `off` is where the payload of `etype` starts. Returns (l3_offset, ip_version or 0, status).
    """
    for _ in range(16):  # bounded: at most 16 stacked shims
        if etype == 0x0800:
            return off, 4, ST_OK
        if etype == 0x86DD:
            return off, 6, ST_OK
        if etype == 0x8100 or etype == 0x88A8 or etype == 0x9100 or etype == 0x9200:
            if off + 4 > end:
                return off, 0, ST_TRUNC_L2
            etype = _be16(buf, off + 2)
            off += 4
        elif etype == 0x8864:  # PPPoE session: 6-byte header then PPP protocol
            if off + 8 > end:
                return off, 0, ST_TRUNC_L2
            version = _ppp_ip_version(_be16(buf, off + 6))
            return off + 8, version, ST_OK if version else ST_NON_IP
        elif etype == 0x8847 or etype == 0x8848:  # MPLS: pop to bottom of stack, guess by nibble
            while True:
                if off + 4 > end:
                    return off, 0, ST_TRUNC_L2
                bottom = buf[off + 2] & 1
                off += 4
                if bottom:
                    break
            if off + 1 > end:
                return off, 0, ST_TRUNC_L2
            v = buf[off] >> 4
            if v == 4 or v == 6:
                return off, v, ST_OK
            return off, 0, ST_NON_IP
        else:
            return off, 0, ST_NON_IP
    return off, 0, ST_NON_IP


@njit(cache=True)
def _ppp_ip_version(proto):
    """PPP protocol number -> IP version (0x0021 IPv4, 0x0057 IPv6; 0 for anything else)."""
    if proto == 0x21:
        return 4
    if proto == 0x57:
        return 6
    return 0


@njit(cache=True)
def _l3_from_af(family):
    """BSD address family -> IP version (AF_INET 2; AF_INET6 is 10, 24, 28 or 30 by OS)."""
    if family == 2:
        return 4
    if family == 10 or family == 24 or family == 28 or family == 30:
        return 6
    return 0


@njit(cache=True)
def _l3_from_ppp(buf, off, end):
    """PPP protocol field (1 byte when protocol-field-compressed, else 2) -> (off, version, status)."""
    if off + 1 > end:
        return off, 0, ST_TRUNC_L2
    if buf[off] & 1:
        proto = np.int64(buf[off])
        off += 1
    else:
        if off + 2 > end:
            return off, 0, ST_TRUNC_L2
        proto = _be16(buf, off)
        off += 2
    version = _ppp_ip_version(proto)
    return off, version, ST_OK if version else ST_NON_IP


@njit(cache=True)
def _link_to_l3(buf, off, end, link):
    """Strip the link-layer header. Returns (l3_offset, ip_version or 0, status)."""
    if link == 1:  # Ethernet
        if off + 14 > end:
            return off, 0, ST_TRUNC_L2
        etype = _be16(buf, off + 12)
        if etype <= 1500:  # IEEE 802.3 length: only LLC/SNAP with an EtherType can carry IP
            if off + 22 > end:
                return off, 0, ST_TRUNC_L2
            if buf[off + 14] == 0xAA and buf[off + 15] == 0xAA and buf[off + 16] == 0x03:
                return _l3_from_ethertype(buf, off + 22, _be16(buf, off + 20), end)
            return off, 0, ST_NON_IP
        return _l3_from_ethertype(buf, off + 14, etype, end)
    if link == 113:  # Linux cooked v1: 16-byte header, protocol at 14
        if off + 16 > end:
            return off, 0, ST_TRUNC_L2
        return _l3_from_ethertype(buf, off + 16, _be16(buf, off + 14), end)
    if link == 276:  # Linux cooked v2: 20-byte header, protocol at 0
        if off + 20 > end:
            return off, 0, ST_TRUNC_L2
        return _l3_from_ethertype(buf, off + 20, _be16(buf, off), end)
    if link == 101 or link == 12 or link == 14 or link == 228 or link == 229:  # raw IP
        if off + 1 > end:
            return off, 0, ST_TRUNC_IP
        if link == 228:
            return off, 4, ST_OK
        if link == 229:
            return off, 6, ST_OK
        v = buf[off] >> 4
        if v == 4 or v == 6:
            return off, v, ST_OK
        return off, 0, ST_BAD_IP_VERSION
    if link == 0:  # BSD null: address family in the writer's host byte order
        if off + 4 > end:
            return off, 0, ST_TRUNC_L2
        fam = np.int64(_u32(buf, off, False))
        if fam > 0xFFFF:
            fam = np.int64(_u32(buf, off, True))
        v = _l3_from_af(fam)
        return off + 4, v, ST_OK if v else ST_NON_IP
    if link == 108:  # OpenBSD loop: address family big-endian
        if off + 4 > end:
            return off, 0, ST_TRUNC_L2
        v = _l3_from_af(np.int64(_u32(buf, off, True)))
        return off + 4, v, ST_OK if v else ST_NON_IP
    if link == 9 or link == 50:  # PPP, PPP in HDLC-like framing (RFC 1662) or Cisco framing
        if off + 2 > end:
            return off, 0, ST_TRUNC_L2
        if buf[off] == 0xFF and buf[off + 1] == 0x03:
            return _l3_from_ppp(buf, off + 2, end)
        if link == 50 and (buf[off] == 0x0F or buf[off] == 0x8F):
            if off + 4 > end:
                return off, 0, ST_TRUNC_L2
            return _l3_from_ethertype(buf, off + 4, _be16(buf, off + 2), end)
        return _l3_from_ppp(buf, off, end)
    if link == 104:  # Cisco HDLC: address, control, EtherType
        if off + 4 > end:
            return off, 0, ST_TRUNC_L2
        return _l3_from_ethertype(buf, off + 4, _be16(buf, off + 2), end)
    return off, 0, ST_UNSUPPORTED_LINK


@njit(cache=True)
def _is_ipv6_ext(nh):
    # hop-by-hop, routing, destination options, mobility, HIP, shim6: (len + 1) * 8 bytes
    return nh == 0 or nh == 43 or nh == 60 or nh == 135 or nh == 139 or nh == 140


@njit(cache=True)
def decode_records(buf, n, rec_off, rec_cap, rec_orig, rec_ts, rec_link, frame_base, j0,
                   ts, src, dst, ip_version, proto, sport, dport, ip_len, ip_header_len,
                   l4_header_len, payload_len, tcp_flags, tcp_win, is_fragment, frame_index,
                   status):
    """Decode records 0..n-1 into compacted columns from row j0 on; returns the next free row.

    Lengths: ip_len = IPv4 total length or IPv6 payload length + 40 (header-derived; a zero
    field, as written by TSO/GSO captures, is replaced by the on-wire length);
    payload_len = max(0, ip_len - ip_header_len - l4_header_len).
    """
    j = j0
    for i in range(n):
        start = rec_off[i]
        end = start + rec_cap[i]
        off, ver, st = _link_to_l3(buf, start, end, rec_link[i])
        if st != ST_OK:
            status[i] = st
            continue
        wire_ip = np.int64(rec_orig[i]) - (off - start)  # bytes of IP on the wire
        frag = False
        nonfirst = False
        if ver == 4:
            if off + 20 > end:
                status[i] = ST_TRUNC_IP
                continue
            if buf[off] >> 4 != 4:
                status[i] = ST_BAD_IP_VERSION
                continue
            hl = np.int64(buf[off] & 15) * 4
            if hl < 20:
                status[i] = ST_BAD_IPV4_IHL
                continue
            if off + hl > end:
                status[i] = ST_TRUNC_IP
                continue
            tot = _be16(buf, off + 2)
            if tot == 0:
                tot = max(wire_ip, hl)
            elif tot < hl:
                status[i] = ST_BAD_IP_LENGTH
                continue
            fo = _be16(buf, off + 6)
            frag_off = fo & 0x1FFF
            frag = (fo & 0x2000) != 0 or frag_off != 0
            nonfirst = frag_off != 0
            p = np.int64(buf[off + 9])
            for k in range(10):
                src[j, k] = 0
                dst[j, k] = 0
            src[j, 10] = 0xFF
            src[j, 11] = 0xFF
            dst[j, 10] = 0xFF
            dst[j, 11] = 0xFF
            for k in range(4):
                src[j, 12 + k] = buf[off + 12 + k]
                dst[j, 12 + k] = buf[off + 16 + k]
            l4 = off + hl
        else:
            if off + 40 > end:
                status[i] = ST_TRUNC_IP
                continue
            if buf[off] >> 4 != 6:
                status[i] = ST_BAD_IP_VERSION
                continue
            plen = _be16(buf, off + 4)
            nh = np.int64(buf[off + 6])
            tot = plen + 40
            if plen == 0 and nh != 59:  # jumbogram or TSO capture: use the on-wire length
                tot = max(wire_ip, 40)
            ip_end = off + tot
            pos = off + 40
            bad = 0
            while True:
                if _is_ipv6_ext(nh) or nh == 51:
                    if pos + 2 > end:
                        bad = ST_TRUNC_IP
                        break
                    if nh == 51:  # AH: (len + 2) * 4 bytes
                        elen = (np.int64(buf[pos + 1]) + 2) * 4
                    else:
                        elen = (np.int64(buf[pos + 1]) + 1) * 8
                    nh = np.int64(buf[pos])
                    pos += elen
                elif nh == 44:  # fragment header: 8 bytes
                    if pos + 8 > end:
                        bad = ST_TRUNC_IP
                        break
                    fo = _be16(buf, pos + 2)
                    frag = True
                    nh = np.int64(buf[pos])
                    pos += 8
                    if (fo >> 3) != 0:
                        nonfirst = True
                        break  # what follows is the middle of a fragmented payload
                else:
                    break
                if pos > ip_end:
                    bad = ST_BAD_IPV6_EXT
                    break
            if bad:
                status[i] = bad
                continue
            if pos > ip_end:
                status[i] = ST_BAD_IPV6_EXT
                continue
            hl = pos - off
            p = nh
            for k in range(16):
                src[j, k] = buf[off + 8 + k]
                dst[j, k] = buf[off + 24 + k]
            l4 = pos
        ip_end = off + tot
        sp = 0
        dp = 0
        l4h = 0
        flags = 0
        win = 0
        if not nonfirst and (p == IPPROTO_TCP or p == IPPROTO_UDP or p == IPPROTO_SCTP):
            need = 20 if p == IPPROTO_TCP else (8 if p == IPPROTO_UDP else 4)
            if l4 + need > ip_end:
                if not frag:  # the IP length cannot hold the transport header
                    status[i] = ST_BAD_IP_LENGTH
                    continue
                # a tiny first fragment: the header continues in the next fragment; no ports
            elif l4 + need > end:
                status[i] = ST_TRUNC_L4
                continue
            else:
                sp = _be16(buf, l4)
                dp = _be16(buf, l4 + 2)
                if p == IPPROTO_TCP:
                    l4h = np.int64(buf[l4 + 12] >> 4) * 4
                    if l4h < 20:
                        status[i] = ST_BAD_TCP_OFFSET
                        continue
                    flags = buf[l4 + 13]
                    win = _be16(buf, l4 + 14)
                elif p == IPPROTO_UDP:
                    l4h = 8
        ts[j] = rec_ts[i]
        ip_version[j] = ver
        proto[j] = p
        sport[j] = sp
        dport[j] = dp
        ip_len[j] = tot
        ip_header_len[j] = min(hl, 65535)
        l4_header_len[j] = l4h
        payload_len[j] = max(tot - hl - l4h, 0)
        tcp_flags[j] = flags
        tcp_win[j] = win
        is_fragment[j] = frag
        frame_index[j] = frame_base + i
        status[i] = ST_OK
        j += 1
    return j
