"""Property tests of the capture reader: random valid captures parse back to exactly the fields
written; random corruption and truncation raise nothing but CaptureError.

The capture builder below is independent of the reader (struct packing from the RFC layouts);
test_pcap.py reuses it for hand-written cases.
"""

from __future__ import annotations

import random
import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nidsflow.capture.pcap import CaptureError, CaptureReader, PacketBatch

# ---- packet builder ------------------------------------------------------------------------

ETH_VLAN_TPIDS = (0x8100, 0x88A8, 0x9100)
AF_INET6_VALUES = (10, 24, 28, 30)
IPV6_EXT_HEADERS = (0, 43, 60, 51)  # hop-by-hop, routing, destination options, AH
L4_PROTOS = (6, 17, 132, 1, 47, 58, 89)
LINK_TYPES = (1, 113, 276, 101, 12, 14, 228, 229, 0, 108, 9, 50, 104)


@dataclass
class PacketSpec:
    """What one IP packet carries; ``expected()`` is the reader's row for it."""

    version: int = 4
    src: bytes = bytes(4)
    dst: bytes = bytes(4)
    proto: int = 6
    sport: int = 0
    dport: int = 0
    tcp_flags: int = 0
    tcp_win: int = 0
    tcp_options_words: int = 0
    ipv4_option_words: int = 0
    ipv6_ext: list = field(default_factory=list)   # [(type, length_field)]
    fragment: str = "none"                          # none | first | nonfirst
    payload: int = 0                                # bytes after the transport header

    def l4_header(self) -> bytes:
        if self.proto == 6:
            doff = 5 + self.tcp_options_words
            return (struct.pack(">HHIIBBHHH", self.sport, self.dport, 1, 2, doff << 4,
                                self.tcp_flags, self.tcp_win, 0, 0) + b"\x01" * (4 * self.tcp_options_words))
        if self.proto == 17:
            return struct.pack(">HHHH", self.sport, self.dport, 8 + self.payload, 0)
        if self.proto == 132:
            return struct.pack(">HHII", self.sport, self.dport, 7, 0)
        return struct.pack(">HHI", 0x0800, 0, 0)  # ICMP echo-like / opaque 8 bytes

    def has_ports(self) -> bool:
        return self.proto in (6, 17, 132) and self.fragment != "nonfirst"

    def l4_header_len(self) -> int:
        if self.fragment == "nonfirst":
            return 0
        return {6: 20 + 4 * self.tcp_options_words, 17: 8}.get(self.proto, 0)

    def l4_needed(self) -> int:
        """Bytes of transport header the reader needs (TCP 20, UDP 8, SCTP 4)."""
        if not self.has_ports():
            return 0
        return {6: 20, 17: 8, 132: 4}[self.proto]

    def ip_bytes(self) -> tuple[bytes, int]:
        """(IP packet bytes, IP header length incl. options / extension headers)."""
        body = self.l4_header() + bytes((i * 7) & 0xFF for i in range(self.payload))
        if self.version == 4:
            ihl = 5 + self.ipv4_option_words
            total = 4 * ihl + len(body)
            fo = {"none": 0, "first": 0x2000, "nonfirst": 0x2000 | 37}[self.fragment]
            hdr = struct.pack(">BBHHHBBH4s4s", 0x40 | ihl, 0, total, 1, fo, 64, self.proto, 0,
                              self.src, self.dst) + b"\x01" * (4 * self.ipv4_option_words)
            return hdr + body, 4 * ihl
        exts = list(self.ipv6_ext)
        if self.fragment != "none":
            exts.append((44, 0))
        chain = b""
        for k, (etype, lf) in enumerate(exts):
            nh = exts[k + 1][0] if k + 1 < len(exts) else self.proto
            if etype == 44:
                off = 37 if self.fragment == "nonfirst" else 0
                chain += struct.pack(">BBHI", nh, 0, (off << 3) | 1, 99)
            elif etype == 51:
                chain += bytes([nh, lf]) + b"\x00" * ((lf + 2) * 4 - 2)
            else:
                chain += bytes([nh, lf]) + b"\x00" * ((lf + 1) * 8 - 2)
        first = exts[0][0] if exts else self.proto
        hdr = struct.pack(">IHBB16s16s", 0x60000000, len(chain) + len(body), first, 64,
                          self.src, self.dst)
        return hdr + chain + body, 40 + len(chain)

    def expected(self) -> dict:
        raw, hl = self.ip_bytes()
        addr = (lambda a: b"\x00" * 10 + b"\xff\xff" + a) if self.version == 4 else (lambda a: a)
        l4h = self.l4_header_len()
        return dict(
            src=addr(self.src), dst=addr(self.dst), ip_version=self.version, proto=self.proto,
            sport=self.sport if self.has_ports() else 0, dport=self.dport if self.has_ports() else 0,
            ip_len=len(raw), ip_header_len=hl, l4_header_len=l4h,
            payload_len=max(len(raw) - hl - l4h, 0),
            tcp_flags=self.tcp_flags if self.proto == 6 and self.has_ports() else 0,
            tcp_win=self.tcp_win if self.proto == 6 and self.has_ports() else 0,
            is_fragment=self.fragment != "none",
        )


def link_header(link: int, version: int, rng: random.Random, vlan_tags: int = 0) -> bytes:
    """Link-layer header for an IP packet of `version` on link type `link`."""
    etype = 0x0800 if version == 4 else 0x86DD
    ppp = 0x0021 if version == 4 else 0x0057
    if link == 1:
        tags = b"".join(struct.pack(">HH", rng.choice(ETH_VLAN_TPIDS), rng.randrange(4096))
                        for _ in range(vlan_tags))
        return b"\x02" * 6 + b"\x04" * 6 + tags + struct.pack(">H", etype)
    if link == 113:
        return struct.pack(">HHH8sH", 0, 1, 6, b"\x04" * 8, etype)
    if link == 276:
        return struct.pack(">HHIHBB8s", etype, 0, 3, 1, 0, 6, b"\x04" * 8)
    if link in (101, 12, 14, 228, 229):
        return b""
    if link == 0:
        fam = 2 if version == 4 else rng.choice(AF_INET6_VALUES)
        return struct.pack("<I" if rng.random() < 0.5 else ">I", fam)
    if link == 108:
        return struct.pack(">I", 2 if version == 4 else rng.choice(AF_INET6_VALUES))
    if link == 9:
        choice = rng.randrange(3)
        if choice == 0:
            return b"\xff\x03" + struct.pack(">H", ppp)
        if choice == 1:
            return struct.pack(">H", ppp)
        return bytes([ppp])  # protocol-field compression
    if link == 50:
        return b"\xff\x03" + struct.pack(">H", ppp)
    if link == 104:
        return bytes([rng.choice((0x0F, 0x8F)), 0]) + struct.pack(">H", etype)
    raise ValueError(link)


def non_ip_frame(link: int) -> bytes | None:
    """A frame the reader must count as non-IP on `link` (None where the link carries only IP)."""
    if link == 1:
        return b"\xff" * 6 + b"\x04" * 6 + b"\x08\x06" + bytes(28)  # ARP
    if link == 113:
        return struct.pack(">HHH8sH", 0, 1, 6, b"\x04" * 8, 0x0806) + bytes(28)
    if link == 276:
        return struct.pack(">HHIHBB8s", 0x0806, 0, 3, 1, 0, 6, b"\x04" * 8) + bytes(28)
    if link in (0, 108):
        return struct.pack(">I", 7) + bytes(20)
    if link in (9, 50):
        return b"\xff\x03\xc0\x21" + bytes(10)  # LCP
    if link == 104:
        return b"\x8f\x00\x80\x35" + bytes(20)  # Cisco SLARP
    return None


@dataclass
class Record:
    """One capture record: frame bytes, on-wire length, timestamp parts and the expected row."""

    frame: bytes
    orig_len: int
    link: int
    expected: dict | None   # None: counted as non-IP


# ---- file writers ----------------------------------------------------------------------------

def write_pcap(path: Path, records: list[Record], ts: list[tuple[int, int]], big: bool = False,
               nsec: bool = False, snaplen: int = 65535) -> list[float]:
    """Classic pcap with the records' (sec, frac); returns the expected float timestamps."""
    e = ">" if big else "<"
    magic = 0xA1B23C4D if nsec else 0xA1B2C3D4
    link = records[0].link if records else 1
    out = [struct.pack(e + "IHHiIII", magic, 2, 4, 0, 0, snaplen, link)]
    fps = 1e9 if nsec else 1e6
    expected_ts = []
    for rec, (sec, frac) in zip(records, ts):
        out.append(struct.pack(e + "IIII", sec, frac, len(rec.frame), rec.orig_len) + rec.frame)
        expected_ts.append(float(sec) + float(frac) / fps)
    path.write_bytes(b"".join(out))
    return expected_ts


def _opt(e: str, code: int, value: bytes) -> bytes:
    return struct.pack(e + "HH", code, len(value)) + value + b"\x00" * (-len(value) % 4)


def _block(e: str, btype: int, body: bytes) -> bytes:
    body += b"\x00" * (-len(body) % 4)
    n = len(body) + 12
    return struct.pack(e + "II", btype, n) + body + struct.pack(e + "I", n)


def shb(big: bool) -> bytes:
    e = ">" if big else "<"
    return _block(e, 0x0A0D0D0A, struct.pack(e + "IHHq", 0x1A2B3C4D, 1, 0, -1)
                  + _opt(e, 4, b"nidsflow tests") + _opt(e, 0, b""))


def idb(big: bool, link: int, snaplen: int = 0, tsresol: int | None = None,
        tsoffset: int | None = None) -> bytes:
    e = ">" if big else "<"
    opts = _opt(e, 2, b"eth0")
    if tsresol is not None:
        opts += _opt(e, 9, bytes([tsresol]))
    if tsoffset is not None:
        opts += _opt(e, 14, struct.pack(e + "q", tsoffset))
    return _block(e, 1, struct.pack(e + "HHI", link, 0, snaplen) + opts + _opt(e, 0, b""))


def units_of(tsresol: int | None) -> int:
    if tsresol is None:
        return 1_000_000
    return 2 ** (tsresol & 0x7F) if tsresol & 0x80 else 10 ** tsresol


def epb(big: bool, iface: int, t: int, frame: bytes, orig_len: int) -> bytes:
    e = ">" if big else "<"
    return _block(e, 6, struct.pack(e + "IIIII", iface, t >> 32, t & 0xFFFFFFFF, len(frame),
                                    orig_len) + frame + _opt(e, 1, b"c") + _opt(e, 0, b""))


def obsolete_pb(big: bool, iface: int, t: int, frame: bytes, orig_len: int) -> bytes:
    e = ">" if big else "<"
    return _block(e, 2, struct.pack(e + "HHIIII", iface, 0, t >> 32, t & 0xFFFFFFFF, len(frame),
                                    orig_len) + frame)


def spb(big: bool, frame: bytes, orig_len: int) -> bytes:
    e = ">" if big else "<"
    return _block(e, 3, struct.pack(e + "I", orig_len) + frame)


def other_block(big: bool, rng: random.Random) -> bytes:
    e = ">" if big else "<"
    btype = rng.choice((4, 5, 0x00000BAD, 0x40000BAD, 9, 10))
    return _block(e, btype, bytes(rng.randrange(256) for _ in range(rng.randrange(0, 40))))


def packet_ts(t: int, units: int, offset: int) -> float:
    return float(t // units) + float(t % units) / float(units) + float(offset)


# ---- strategies ------------------------------------------------------------------------------

@st.composite
def packet_specs(draw) -> PacketSpec:
    version = draw(st.sampled_from((4, 6)))
    alen = 4 if version == 4 else 16
    proto = draw(st.sampled_from(L4_PROTOS))
    return PacketSpec(
        version=version, src=draw(st.binary(min_size=alen, max_size=alen)),
        dst=draw(st.binary(min_size=alen, max_size=alen)), proto=proto,
        sport=draw(st.integers(0, 65535)), dport=draw(st.integers(0, 65535)),
        tcp_flags=draw(st.integers(0, 255)), tcp_win=draw(st.integers(0, 65535)),
        tcp_options_words=draw(st.integers(0, 10)), ipv4_option_words=draw(st.integers(0, 10)),
        ipv6_ext=draw(st.lists(st.tuples(st.sampled_from(IPV6_EXT_HEADERS), st.integers(1, 3)),
                               max_size=3)),
        fragment=draw(st.sampled_from(("none", "none", "first", "nonfirst"))),
        payload=draw(st.integers(0, 60)),
    )


def make_record(spec: PacketSpec, link: int, rng: random.Random, cut: int | None,
                vlan_tags: int = 0) -> Record:
    """Frame for `spec` on `link`; `cut` drops that many trailing payload bytes (snaplen cut)."""
    raw, hl = spec.ip_bytes()
    l2 = link_header(link, spec.version, rng, vlan_tags if link == 1 else 0)
    frame = l2 + raw
    orig = len(frame)
    if cut:
        keep = len(l2) + hl + spec.l4_needed()
        frame = frame[: max(keep, len(frame) - cut)]
    return Record(frame=frame, orig_len=orig, link=link, expected=spec.expected())


def link_for(version: int, rng: random.Random, choices=LINK_TYPES) -> int:
    options = [lt for lt in choices if not (lt == 228 and version == 6 or lt == 229 and version == 4)]
    return rng.choice(options)


def check_batches(batches: list[PacketBatch], records: list[Record], ts: list[float]) -> None:
    """Every IP record comes back with exactly the fields written, in file order."""
    got = PacketBatch.concat(batches)
    ip_idx = [i for i, r in enumerate(records) if r.expected is not None]
    assert got.frame_index.tolist() == ip_idx
    for row, i in enumerate(ip_idx):
        exp = records[i].expected
        assert got.ts[row] == ts[i], (i, got.ts[row], ts[i])
        assert bytes(got.src[row]) == exp["src"] and bytes(got.dst[row]) == exp["dst"]
        for name in ("ip_version", "proto", "sport", "dport", "ip_len", "ip_header_len",
                     "l4_header_len", "payload_len", "tcp_flags", "tcp_win", "is_fragment"):
            assert getattr(got, name)[row] == exp[name], (i, name, getattr(got, name)[row], exp)
    dtypes = dict(ts=np.float64, src=np.uint8, dst=np.uint8, ip_version=np.uint8, proto=np.uint8,
                  sport=np.uint16, dport=np.uint16, ip_len=np.uint32, ip_header_len=np.uint16,
                  l4_header_len=np.uint16, payload_len=np.uint32, tcp_flags=np.uint8,
                  tcp_win=np.uint16, is_fragment=np.bool_, frame_index=np.int64)
    for name, dt in dtypes.items():
        assert getattr(got, name).dtype == dt, name


def read_all(path: Path, **kw):
    reader = CaptureReader(path, **kw)
    batches = list(reader)
    st_ = reader.stats
    assert st_.records == st_.ip_packets + st_.non_ip + st_.truncated + st_.malformed
    return batches, st_, reader


# ---- properties ------------------------------------------------------------------------------

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@SETTINGS
@given(specs=st.lists(packet_specs(), min_size=1, max_size=12), seed=st.integers(0, 2**32 - 1),
       big=st.booleans(), nsec=st.booleans(), batch_packets=st.integers(1, 5),
       chunk_bytes=st.sampled_from((64, 200, 1000, 1 << 20)))
def test_random_pcap_roundtrip(specs, seed, big, nsec, batch_packets, chunk_bytes):
    rng = random.Random(seed)
    link = link_for(specs[0].version, rng)
    records = []
    for spec in specs:
        if (link == 228 and spec.version == 6) or (link == 229 and spec.version == 4):
            spec.version = 4 if link == 228 else 6
            spec.src, spec.dst = (spec.src * 4)[: 4 if link == 228 else 16], (spec.dst * 4)[: 4 if link == 228 else 16]
        cut = rng.choice((None, None, rng.randrange(1, 80)))
        records.append(make_record(spec, link, rng, cut, vlan_tags=rng.randrange(4)))
        if rng.random() < 0.2 and non_ip_frame(link) is not None:
            frame = non_ip_frame(link)
            records.append(Record(frame, len(frame), link, None))
    fps = 10**9 if nsec else 10**6
    ts = [(rng.randrange(2**32), rng.randrange(fps)) for _ in records]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "r.pcap"
        expected_ts = write_pcap(path, records, ts, big=big, nsec=nsec)
        batches, stats, reader = read_all(path, batch_packets=batch_packets, chunk_bytes=chunk_bytes)
    assert reader.format == "pcap"
    assert stats.records == len(records)
    assert stats.non_ip == sum(r.expected is None for r in records)
    assert stats.truncated == stats.malformed == 0 and not stats.truncated_last_record
    assert all(len(b) <= batch_packets for b in batches)
    check_batches(batches, records, expected_ts)


@SETTINGS
@given(specs=st.lists(packet_specs(), min_size=1, max_size=14), seed=st.integers(0, 2**32 - 1),
       batch_packets=st.integers(1, 6), chunk_bytes=st.sampled_from((64, 300, 1 << 20)))
def test_random_pcapng_roundtrip(specs, seed, batch_packets, chunk_bytes):
    """Several sections (either byte order), interfaces with their own link types, timestamp
    resolutions and offsets; EPB, obsolete PB, SPB and unknown blocks interleaved."""
    rng = random.Random(seed)
    blocks: list[bytes] = []
    records: list[Record] = []
    expected_ts: list[float] = []
    last_ts = 0.0
    remaining = list(specs)
    while remaining:
        big = rng.random() < 0.5
        blocks.append(shb(big))
        ifaces = []
        for _ in range(rng.randrange(1, 4)):
            link = rng.choice(LINK_TYPES)
            tsresol = rng.choice((None, 6, 9, 3, 0, 0x80 | 20, 0x80 | 30))
            tsoffset = rng.choice((None, 0, 3600, -7))
            ifaces.append((link, tsresol, tsoffset))
            blocks.append(idb(big, link, 0, tsresol, tsoffset))
        take = remaining[: rng.randrange(1, 8)]
        remaining = remaining[len(take):]
        for spec in take:
            iface = rng.randrange(len(ifaces))
            link, tsresol, tsoffset = ifaces[iface]
            if link in (228, 229):
                want = 4 if link == 228 else 6
                if spec.version != want:
                    spec.version = want
                    spec.src, spec.dst = (spec.src * 4)[: 4 if want == 4 else 16], (spec.dst * 4)[: 4 if want == 4 else 16]
            cut = rng.choice((None, None, rng.randrange(1, 80)))
            rec = make_record(spec, link, rng, cut, vlan_tags=rng.randrange(4))
            if rng.random() < 0.2 and non_ip_frame(link) is not None:
                frame = non_ip_frame(link)
                rec = Record(frame, len(frame), link, None)
            kind = rng.choice(("epb", "epb", "pb", "spb"))
            if kind == "spb" and iface == 0 and len(rec.frame) == rec.orig_len:
                blocks.append(spb(big, rec.frame, rec.orig_len))
                expected_ts.append(last_ts)
            else:
                units = units_of(tsresol)
                t = rng.randrange(2**63) if units > 10**6 else rng.randrange(2**52)
                maker = obsolete_pb if kind == "pb" else epb
                blocks.append(maker(big, iface, t, rec.frame, rec.orig_len))
                last_ts = packet_ts(t, units, tsoffset or 0)
                expected_ts.append(last_ts)
            records.append(rec)
            if rng.random() < 0.3:
                blocks.append(other_block(big, rng))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "r.pcapng"
        path.write_bytes(b"".join(blocks))
        batches, stats, reader = read_all(path, batch_packets=batch_packets, chunk_bytes=chunk_bytes)
    assert reader.format == "pcapng"
    assert stats.records == len(records)
    assert stats.non_ip == sum(r.expected is None for r in records)
    assert stats.truncated == stats.malformed == 0 and not stats.truncated_last_record
    assert sum(stats.link_types.values()) == len(records)
    check_batches(batches, records, expected_ts)


def _valid_capture(seed: int, ng: bool) -> bytes:
    rng = random.Random(seed)
    specs = [PacketSpec(version=rng.choice((4, 6)), proto=rng.choice((6, 17)), sport=rng.randrange(65536),
                        dport=80, payload=rng.randrange(40)) for _ in range(8)]
    for s in specs:
        s.src = s.dst = bytes(4 if s.version == 4 else 16)
    if ng:
        blocks = [shb(False), idb(False, 1, 0, 9), idb(False, 113)]
        for i, s in enumerate(specs):
            link = 1 if i % 2 else 113
            rec = make_record(s, link, rng, None)
            blocks.append(epb(False, 0 if i % 2 else 1, 10**18 + i, rec.frame, rec.orig_len))
        return b"".join(blocks)
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "v.pcap"
        recs = [make_record(s, 1, rng, None, vlan_tags=1) for s in specs]
        write_pcap(p, recs, [(1_500_000_000 + i, i) for i in range(len(recs))])
        return p.read_bytes()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 1000), ng=st.booleans(),
       edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=8),
       cut=st.one_of(st.none(), st.integers(0, 10**6)), chunk_bytes=st.sampled_from((64, 1 << 20)))
def test_corruption_raises_only_capture_error(seed, ng, edits, cut, chunk_bytes):
    """Random byte overwrites and truncations: either a result whose counts add up, or a
    CaptureError naming the file. Any other exception (or a hang) fails the test."""
    data = bytearray(_valid_capture(seed, ng))
    for pos, value in edits:
        data[pos % len(data)] = value
    if cut is not None:
        data = data[: cut % (len(data) + 1)]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "corrupt.cap"
        path.write_bytes(bytes(data))
        try:
            batches, stats, _ = read_all(path, batch_packets=3, chunk_bytes=chunk_bytes)
        except CaptureError as err:
            assert str(path) in str(err)
            return
    assert sum(len(b) for b in batches) == stats.ip_packets
    for b in batches:
        assert np.all(np.diff(b.frame_index) > 0)
        assert np.all(b.frame_index < stats.records)
