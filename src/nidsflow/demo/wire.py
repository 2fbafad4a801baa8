"""Demo generator, wire format: packet records -> Ethernet/IPv4/TCP|UDP frames -> pcap or pcapng.

A packet record is a plain tuple (fast to build and sort; see ``R_*`` for the field order). Frames
are packed with :mod:`struct`; the checksums are the Internet checksum of RFC 1071 (16-bit one's
complement of the one's-complement sum), over the IPv4 header and, for TCP/UDP, over the RFC 793 /
RFC 768 pseudo-header + segment. Payload bytes are slices of one seeded random buffer whose
16-bit-word prefix sums make each payload's checksum contribution O(1).

Files written:

- classic pcap (libpcap 2.4, little-endian, microsecond timestamps, LINKTYPE_ETHERNET, snaplen 65535);
- pcapng (one Section Header Block, one Interface Description Block with LINKTYPE_ETHERNET and the
  default microsecond resolution, then one Enhanced Packet Block per packet).
"""

from __future__ import annotations

import random
import struct
from pathlib import Path

import numpy as np

# ---------------------------------------------------------------- packet records

#: Field order of a packet record tuple.
(R_TS, R_ORDER, R_SRC, R_DST, R_SPORT, R_DPORT, R_PROTO, R_FLAGS, R_SEQ, R_ACK, R_WIN, R_PLEN,
 R_OPT, R_VLAN, R_TTL, R_SID) = range(16)

TCP, UDP = 6, 17
FIN, SYN, RST, PSH, ACK, URG, ECE, CWR = 1, 2, 4, 8, 16, 32, 64, 128

#: R_OPT value meaning "RFC 7323 timestamps option on a non-SYN segment" (NOP NOP TS = 12 bytes).
OPT_TS = 1

ETH_LEN = 14
VLAN_LEN = 4
IP_LEN = 20
UDP_LEN = 8

_PAYLOAD_BUF_LEN = 1 << 16
_MAX_PAYLOAD = 9000


def tcp_header_len(opt) -> int:
    """TCP header length of a record's options field (20 + options)."""
    if opt is None:
        return 20
    if opt == OPT_TS:
        return 32
    return 20 + len(opt)


def l4_header_len(proto: int, opt) -> int:
    return tcp_header_len(opt) if proto == TCP else UDP_LEN


def ip_total_len(proto: int, opt, plen: int) -> int:
    return IP_LEN + l4_header_len(proto, opt) + plen


def ip_to_str(ip: int) -> str:
    return f"{ip >> 24}.{(ip >> 16) & 255}.{(ip >> 8) & 255}.{ip & 255}"


def _fold(s: int) -> int:
    """RFC 1071: fold the carries of a one's-complement sum into 16 bits and complement it."""
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


class FrameBuilder:
    """Turns sorted packet records into Ethernet frames (bytes), with correct lengths and checksums."""

    def __init__(self, seed: int, host_is_internal):
        rnd = random.Random(seed)
        self.payload = bytes(rnd.getrandbits(8) for _ in range(_PAYLOAD_BUF_LEN + _MAX_PAYLOAD + 2))
        words = np.frombuffer(self.payload[: len(self.payload) // 2 * 2], dtype=">u2").astype(np.int64)
        self._prefix = [0] + np.cumsum(words).tolist()
        self._is_internal = host_is_internal
        self._mac_cache: dict[int, bytes] = {}
        self._ip_id: dict[int, int] = {}
        self._router_mac = bytes.fromhex("00000c9ff001")

    def _mac(self, ip: int) -> bytes:
        mac = self._mac_cache.get(ip)
        if mac is None:
            # Hosts on the captured LAN have their own MAC; everything else is behind the router.
            mac = (b"\x02" + struct.pack("!I", ip) + b"\x01") if self._is_internal(ip) else self._router_mac
            self._mac_cache[ip] = mac
        return mac

    def _payload(self, key: int, plen: int) -> tuple[bytes, int]:
        """A payload slice at an even offset and its one's-complement word sum (odd tail padded with 0)."""
        off = (key * 2654435761) % _PAYLOAD_BUF_LEN & ~1
        w0 = off >> 1
        s = self._prefix[w0 + (plen >> 1)] - self._prefix[w0]
        if plen & 1:
            s += self.payload[off + plen - 1] << 8
        return self.payload[off: off + plen], s

    def frame(self, r) -> bytes:
        src, dst, proto, plen = r[R_SRC], r[R_DST], r[R_PROTO], r[R_PLEN]
        sport, dport = r[R_SPORT], r[R_DPORT]
        if plen > _MAX_PAYLOAD:
            raise ValueError(f"demo packet payload {plen} exceeds {_MAX_PAYLOAD} bytes")
        if proto == TCP:
            seq, ack, opt = r[R_SEQ], r[R_ACK], r[R_OPT]
            if opt is None:
                opt_b = b""
                opt_sum = 0
            elif opt == OPT_TS:
                ms = r[R_TS] // 1000
                tsval = (ms + (src * 7919)) & 0xFFFFFFFF
                tsecr = (ms - 1 + (dst * 7919)) & 0xFFFFFFFF
                opt_b = struct.pack("!BBBBII", 1, 1, 8, 10, tsval, tsecr)
                opt_sum = 0x0101 + 0x080A + (tsval >> 16) + (tsval & 0xFFFF) + (tsecr >> 16) + (tsecr & 0xFFFF)
            else:
                opt_b = opt
                opt_sum = sum(struct.unpack("!%dH" % (len(opt) // 2), opt))
            hlen = 20 + len(opt_b)
            off_flags = ((hlen >> 2) << 12) | r[R_FLAGS]
            win = r[R_WIN]
            l4_len = hlen + plen
            payload, psum = self._payload(seq ^ (sport << 3), plen)
            s = (sport + dport + (seq >> 16) + (seq & 0xFFFF) + (ack >> 16) + (ack & 0xFFFF) + off_flags + win
                 + opt_sum + psum + (src >> 16) + (src & 0xFFFF) + (dst >> 16) + (dst & 0xFFFF) + TCP + l4_len)
            l4 = struct.pack("!HHIIHHHH", sport, dport, seq, ack, off_flags, win, _fold(s), 0) + opt_b + payload
        else:
            l4_len = UDP_LEN + plen
            payload, psum = self._payload(r[R_ORDER] ^ sport, plen)
            s = (sport + dport + l4_len + psum + (src >> 16) + (src & 0xFFFF) + (dst >> 16) + (dst & 0xFFFF)
                 + UDP + l4_len)
            csum = _fold(s) or 0xFFFF  # RFC 768: a computed zero is sent as all ones
            l4 = struct.pack("!HHHH", sport, dport, l4_len, csum) + payload
        total = IP_LEN + l4_len
        ip_id = (self._ip_id.get(src, src * 40503) + 1) & 0xFFFF
        self._ip_id[src] = ip_id
        ttl_proto = (r[R_TTL] << 8) | proto
        s = 0x4500 + total + ip_id + 0x4000 + ttl_proto + (src >> 16) + (src & 0xFFFF) + (dst >> 16) + (dst & 0xFFFF)
        ip = struct.pack("!HHHHHHII", 0x4500, total, ip_id, 0x4000, ttl_proto, _fold(s), src, dst)
        vlan = r[R_VLAN]
        eth = self._mac(dst) + self._mac(src)
        eth += struct.pack("!HHH", 0x8100, vlan, 0x0800) if vlan else b"\x08\x00"
        return eth + ip + l4


# ---------------------------------------------------------------- capture files


def write_pcap(path: Path, records, frames: FrameBuilder, epoch_us: int) -> int:
    """Classic little-endian pcap, microsecond timestamps, Ethernet. Returns the packet count."""
    head = struct.Struct("<IIII")
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for r in records:
        f = frames.frame(r)
        ts = epoch_us + r[R_TS]
        out.append(head.pack(ts // 1_000_000, ts % 1_000_000, len(f), len(f)))
        out.append(f)
    Path(path).write_bytes(b"".join(out))
    return len(records)


def _pcapng_option(code: int, value: bytes) -> bytes:
    pad = (-len(value)) % 4
    return struct.pack("<HH", code, len(value)) + value + b"\x00" * pad


def write_pcapng(path: Path, records, frames: FrameBuilder, epoch_us: int, comment: str = "") -> int:
    """pcapng: SHB, one Ethernet IDB (microsecond resolution), one EPB per packet. Returns the packet count."""
    shb_opts = _pcapng_option(4, b"nidsflow demo generator")  # shb_userappl
    if comment:
        shb_opts = _pcapng_option(1, comment.encode()) + shb_opts
    shb_opts += struct.pack("<HH", 0, 0)
    shb_len = 28 + len(shb_opts)
    shb = struct.pack("<IIIHHq", 0x0A0D0D0A, shb_len, 0x1A2B3C4D, 1, 0, -1) + shb_opts + struct.pack("<I", shb_len)
    idb_opts = _pcapng_option(9, b"\x06") + struct.pack("<HH", 0, 0)  # if_tsresol = 10^-6
    idb_len = 20 + len(idb_opts)
    idb = struct.pack("<IIHHI", 1, idb_len, 1, 0, 65535) + idb_opts + struct.pack("<I", idb_len)
    out = [shb, idb]
    for r in records:
        f = frames.frame(r)
        pad = (-len(f)) % 4
        blen = 32 + len(f) + pad
        ts = epoch_us + r[R_TS]
        out.append(struct.pack("<IIIIIII", 6, blen, 0, ts >> 32, ts & 0xFFFFFFFF, len(f), len(f)))
        out.append(f + b"\x00" * pad + struct.pack("<I", blen))
    Path(path).write_bytes(b"".join(out))
    return len(records)
