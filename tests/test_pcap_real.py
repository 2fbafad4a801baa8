"""Capture reader on real public captures (../shared/data): record counts against Wireshark's
capinfos, and header fields against dpkt, an independent reader. Skips where the data is absent."""

from __future__ import annotations

import csv
import socket
from pathlib import Path

import dpkt
import numpy as np
import pytest

from nidsflow.capture.pcap import CaptureError, PacketBatch, read_capture

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
NDPI = DATA / "pcaps-ndpi"
CAPINFOS = DATA / "pcaps-ndpi.capinfos.tsv"
#: Packet counts stated in the folders' provenance.md (capinfos of the same files).
OTHER_COUNTS = {
    "netml-cicids2017-monday/demo.pcap": 6000,
    "cicddos2019-attack-pcaps/CIC-DDoS-2019-SynFlood.pcap": 26316,
    "cicddos2019-attack-pcaps/CIC-DDoS-2019-WebDDoS.pcap": 3104,
}

pytestmark = pytest.mark.data


def _reference_counts() -> dict[str, int]:
    """{path relative to DATA: capinfos packet count}; the TSV's columns are file, packets, linktype."""
    if not CAPINFOS.is_file():
        return {}
    with open(CAPINFOS, newline="") as f:
        counts = {f"pcaps-ndpi/{row['file']}": int(row["packets"]) for row in csv.DictReader(f, delimiter="\t")}
    return counts | OTHER_COUNTS


REFERENCE = _reference_counts()


@pytest.fixture(scope="module")
def data_dir() -> Path:
    if not REFERENCE or not NDPI.is_dir():
        pytest.skip(f"real captures not found at {DATA}")
    return DATA


def test_reference_covers_every_ndpi_capture(data_dir):
    on_disk = {f"pcaps-ndpi/{p.name}" for p in NDPI.iterdir() if p.suffix in (".pcap", ".pcapng")}
    assert on_disk and on_disk <= set(REFERENCE)


@pytest.mark.parametrize("rel", sorted(REFERENCE) or ["(no data)"])
def test_record_count_matches_capinfos(data_dir, rel):
    """Each capture on its own: a file that cannot be parsed fails alone, with its name."""
    path = data_dir / rel
    if not path.is_file():
        pytest.skip(f"{path} absent")
    batches, stats = read_capture(path)
    assert stats.records == REFERENCE[rel]
    assert stats.records == stats.ip_packets + stats.non_ip + stats.truncated + stats.malformed
    assert not stats.truncated_last_record
    assert sum(len(b) for b in batches) == stats.ip_packets > 0
    assert sum(stats.link_types.values()) == stats.records


def test_one_bad_file_does_not_stop_the_others(data_dir, tmp_path):
    """A driver loop over files: the corrupt one raises a CaptureError naming it, the rest parse."""
    corrupt = tmp_path / "corrupt.pcap"
    corrupt.write_bytes((data_dir / "pcaps-ndpi/ajp.pcap").read_bytes()[:24] + b"\xff" * 64)
    files = [data_dir / "pcaps-ndpi/ajp.pcap", corrupt, data_dir / "pcaps-ndpi/rdp.pcap",
             data_dir / "netml-cicids2017-monday/demo.pcap"]
    counts, errors = {}, {}
    for path in files:
        try:
            counts[path.name] = read_capture(path)[1].records
        except CaptureError as err:
            errors[path.name] = str(err)
    assert list(errors) == ["corrupt.pcap"] and str(corrupt) in errors["corrupt.pcap"]
    assert counts == {"ajp.pcap": 38, "rdp.pcap": 2010, "demo.pcap": 6000}


# ---- fields against dpkt ------------------------------------------------------------------------

DPKT_FILES = [
    "cicddos2019-attack-pcaps/CIC-DDoS-2019-SynFlood.pcap",   # pcap, Ethernet, TCP SYN flood
    "cicddos2019-attack-pcaps/CIC-DDoS-2019-WebDDoS.pcap",
    "netml-cicids2017-monday/demo.pcap",                      # pcapng, Ethernet
    "pcaps-ndpi/KakaoTalk_talk.pcap",                         # Linux cooked v1
    "pcaps-ndpi/rdp.pcap",                                    # BSD null/loopback
    "pcaps-ndpi/quic_interop_V.pcapng",                       # pcapng with IPv6
    "pcaps-ndpi/1kxun.pcap",
    "pcaps-ndpi/anydesk-2.pcap",                              # TSO capture: IPv4 total length 0
    "pcaps-ndpi/dhcp_big_endian.pcapng",                      # big-endian section
    "pcaps-ndpi/z3950.pcapng",                                # two interfaces, ns resolution on #1
]
#: dpkt applies the first interface's timestamp resolution to every interface; here interface 1
#: has if_tsresol = 9 (ns) and interface 0 the default (us), so dpkt's times on #1 are 1000x too large.
DPKT_WRONG_TS = {"pcaps-ndpi/z3950.pcapng"}
FIRST_N = 3000


def _dpkt_rows(path: Path, n: int) -> tuple[dict[int, dict], int]:
    """{record index: fields} for IP records among the first n, decoded by dpkt; dpkt's count."""
    with open(path, "rb") as f:
        is_ng = f.read(4) == b"\x0a\x0d\x0d\x0a"
        f.seek(0)
        reader = dpkt.pcapng.Reader(f) if is_ng else dpkt.pcap.Reader(f)
        link = reader.datalink()
        decode = {dpkt.pcap.DLT_EN10MB: dpkt.ethernet.Ethernet, 113: dpkt.sll.SLL,
                  dpkt.pcap.DLT_NULL: dpkt.loopback.Loopback}[link]
        rows = {}
        for i, (ts, buf) in enumerate(reader):
            if i >= n:
                break
            try:
                ip = decode(buf).data
            except (dpkt.UnpackError, dpkt.NeedData):
                continue
            if not isinstance(ip, (dpkt.ip.IP, dpkt.ip6.IP6)):
                continue
            v4 = isinstance(ip, dpkt.ip.IP)
            row = dict(ts=ts, frame_len=len(buf), version=4 if v4 else 6, proto=ip.p,
                       src=socket.inet_ntop(socket.AF_INET if v4 else socket.AF_INET6, ip.src),
                       dst=socket.inet_ntop(socket.AF_INET if v4 else socket.AF_INET6, ip.dst),
                       ip_len=ip.len if v4 else ip.plen + 40)
            l4 = ip.data
            if isinstance(l4, (dpkt.tcp.TCP, dpkt.udp.UDP)):
                row.update(sport=l4.sport, dport=l4.dport)
            if isinstance(l4, dpkt.tcp.TCP):
                row.update(flags=l4.flags, win=l4.win, l4_header_len=l4.off * 4)
            rows[i] = row
    return rows, link


def _addr(a: np.ndarray) -> str:
    raw = bytes(a)
    if raw[:12] == b"\x00" * 10 + b"\xff\xff":
        return socket.inet_ntop(socket.AF_INET, raw[12:])
    return socket.inet_ntop(socket.AF_INET6, raw)


@pytest.mark.parametrize("rel", DPKT_FILES)
def test_fields_match_dpkt(data_dir, rel):
    path = data_dir / rel
    expected, _ = _dpkt_rows(path, FIRST_N)
    b = PacketBatch.concat(read_capture(path)[0])
    b = PacketBatch(**{k: v[b.frame_index < FIRST_N] for k, v in b.__dict__.items()})
    assert set(b.frame_index.tolist()) == set(expected)
    n_tcp = 0
    for row in range(len(b)):
        exp = expected[int(b.frame_index[row])]
        if rel in DPKT_WRONG_TS:
            assert b.ts[row] in (pytest.approx(exp["ts"], rel=1e-15), pytest.approx(exp["ts"] / 1000, rel=1e-12))
            assert 1.6e9 < b.ts[row] < 1.7e9  # June 2021, as the file's name in nDPI's corpus says
        else:  # both compute sec + frac / resolution; 1 ulp apart at most
            assert b.ts[row] == pytest.approx(exp["ts"], rel=1e-15, abs=1e-6)
        assert (b.ip_version[row], b.proto[row]) == (exp["version"], exp["proto"])
        if exp["ip_len"] == 0:  # offloaded (TSO) segment: we take the on-wire length
            assert b.ip_len[row] == exp["frame_len"] - 14
        else:
            assert b.ip_len[row] == exp["ip_len"]
        assert (_addr(b.src[row]), _addr(b.dst[row])) == (exp["src"], exp["dst"])
        if "sport" in exp:
            assert (b.sport[row], b.dport[row]) == (exp["sport"], exp["dport"])
        if "flags" in exp:
            n_tcp += 1
            assert (b.tcp_flags[row], b.tcp_win[row], b.l4_header_len[row]) == (
                exp["flags"], exp["win"], exp["l4_header_len"])
    assert len(b) > 0
    if "SynFlood" in rel:
        assert n_tcp > 1000


@pytest.mark.parametrize("name,outer_proto", [("4in6tunnel.pcap", 4), ("6in6tunnel.pcap", 41)])
def test_tunnels_are_reported_at_the_outer_ip_layer(data_dir, name, outer_proto):
    b = PacketBatch.concat(read_capture(data_dir / "pcaps-ndpi" / name)[0])
    assert set(b.ip_version.tolist()) == {6} and set(b.proto.tolist()) == {outer_proto}
    assert not b.sport.any() and not b.dport.any()
