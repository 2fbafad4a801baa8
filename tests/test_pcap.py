"""Capture reader on hand-built captures: bad input, edge cases of each layer, chunking."""

from __future__ import annotations

import logging
import random
import struct

import numpy as np
import pytest

from nidsflow.capture.pcap import (
    MAX_RECORD_BYTES, CaptureError, CaptureReader, PacketBatch, read_capture,
)
from test_pcap_properties import (
    PacketSpec, Record, epb, idb, make_record, shb, spb, write_pcap,
)

RNG = random.Random(0)
V4A, V4B = bytes([10, 0, 0, 1]), bytes([192, 168, 1, 2])


def pcap_header(link: int = 1, snaplen: int = 65535, big: bool = False, nsec: bool = False) -> bytes:
    e = ">" if big else "<"
    return struct.pack(e + "IHHiIII", 0xA1B23C4D if nsec else 0xA1B2C3D4, 2, 4, 0, 0, snaplen, link)


def pcap_record(frame: bytes, sec: int = 1, frac: int = 0, orig: int | None = None,
                big: bool = False) -> bytes:
    e = ">" if big else "<"
    return struct.pack(e + "IIII", sec, frac, len(frame), len(frame) if orig is None else orig) + frame


def tcp_frame(**kw) -> bytes:
    spec = PacketSpec(version=4, src=V4A, dst=V4B, proto=6, sport=1234, dport=80,
                      tcp_flags=0x12, tcp_win=29200, **kw)
    return make_record(spec, 1, RNG, None).frame


def one(batches: list[PacketBatch]) -> PacketBatch:
    return PacketBatch.concat(batches)


# ---- bad input ---------------------------------------------------------------------------------

def test_missing_file(tmp_path):
    with pytest.raises(CaptureError, match="no such file"):
        CaptureReader(tmp_path / "nope.pcap")


def test_zero_length_file(tmp_path):
    p = tmp_path / "empty.pcap"
    p.write_bytes(b"")
    with pytest.raises(CaptureError, match=r"empty\.pcap.*empty file"):
        CaptureReader(p)


@pytest.mark.parametrize("data,match", [
    (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "not a pcap or pcapng file"),
    (b"\x1f\x8b\x08\x00" + bytes(40), "gzip"),
    (bytes(100), "magic bytes 00000000"),
])
def test_wrong_magic(tmp_path, data, match):
    p = tmp_path / "wrong.pcap"
    p.write_bytes(data)
    with pytest.raises(CaptureError, match=match) as err:
        CaptureReader(p)
    assert "wrong.pcap" in str(err.value)


def test_truncated_file_header(tmp_path):
    p = tmp_path / "short.pcap"
    p.write_bytes(pcap_header()[:10])
    with pytest.raises(CaptureError, match="truncated pcap file header"):
        CaptureReader(p)


def test_garbage_after_valid_pcap_header(tmp_path):
    p = tmp_path / "garbage.pcap"
    p.write_bytes(pcap_header() + pcap_record(tcp_frame()) + b"this is not a pcap record at all " * 4)
    reader = CaptureReader(p)  # the header itself is valid
    with pytest.raises(CaptureError, match=r"garbage\.pcap: absurd captured length .* at byte offset 94"):
        list(reader)


def test_garbage_after_valid_pcapng_header(tmp_path):
    p = tmp_path / "garbage.pcapng"
    p.write_bytes(shb(False) + idb(False, 1) + bytes(random.Random(1).randrange(256) for _ in range(300)))
    with pytest.raises(CaptureError, match=r"garbage\.pcapng: .*block.* at byte offset"):
        read_capture(p)


def test_pcapng_bad_byte_order_magic(tmp_path):
    p = tmp_path / "bom.pcapng"
    p.write_bytes(b"\x0a\x0d\x0d\x0a" + struct.pack("<I", 28) + b"\x00\x11\x22\x33" + bytes(16))
    with pytest.raises(CaptureError, match="byte-order magic"):
        CaptureReader(p)


def test_pcapng_packet_before_interface(tmp_path):
    p = tmp_path / "noif.pcapng"
    p.write_bytes(shb(False) + epb(False, 0, 5, tcp_frame(), 60))
    with pytest.raises(CaptureError, match="undescribed interface"):
        read_capture(p)


def test_pcapng_trailer_mismatch(tmp_path):
    block = bytearray(epb(False, 0, 5, tcp_frame(), 60))
    block[-4:] = struct.pack("<I", len(block) + 4)
    p = tmp_path / "trailer.pcapng"
    p.write_bytes(shb(False) + idb(False, 1) + bytes(block))
    with pytest.raises(CaptureError, match="trailer"):
        read_capture(p)


@pytest.mark.parametrize("caplen", [MAX_RECORD_BYTES + 1, 0xFFFFFFFF, 10_000_000])
def test_absurd_caplen(tmp_path, caplen):
    good = pcap_record(tcp_frame())
    p = tmp_path / "absurd.pcap"
    p.write_bytes(pcap_header(snaplen=65535) + good + struct.pack("<IIII", 1, 0, caplen, caplen) + bytes(64))
    with pytest.raises(CaptureError, match=rf"absurd\.pcap: absurd captured length {caplen} .* offset {24 + len(good)}"):
        read_capture(p)


def test_truncated_last_record_is_counted_not_an_error(tmp_path, caplog):
    rec = pcap_record(tcp_frame())
    p = tmp_path / "cut.pcap"
    p.write_bytes(pcap_header() + rec + rec + rec[:30])
    with caplog.at_level(logging.WARNING):
        batches, stats = read_capture(p)
    assert stats.truncated_last_record
    assert (stats.records, stats.ip_packets, stats.truncated) == (3, 2, 1)
    assert stats.skipped_by_reason == {"truncated_last_record": 1}
    assert len(one(batches)) == 2
    assert "cut short" in caplog.text


def test_truncated_last_pcapng_block(tmp_path):
    blk = epb(True, 0, 5, tcp_frame(), 60)
    p = tmp_path / "cut.pcapng"
    p.write_bytes(shb(True) + idb(True, 1) + epb(True, 0, 5, tcp_frame(), 60) + blk[:20])
    _, stats = read_capture(p)
    assert stats.truncated_last_record and stats.records == 2 and stats.ip_packets == 1


# ---- layers ------------------------------------------------------------------------------------

@pytest.mark.parametrize("big", [False, True])
@pytest.mark.parametrize("nsec", [False, True])
def test_pcap_byte_orders_and_resolutions(tmp_path, big, nsec):
    p = tmp_path / "x.pcap"
    frac = 123456789 if nsec else 123456
    p.write_bytes(pcap_header(big=big, nsec=nsec) + pcap_record(tcp_frame(), 1_600_000_000, frac, big=big))
    b = one(read_capture(p)[0])
    assert b.ts[0] == 1_600_000_000 + frac / (1e9 if nsec else 1e6)
    assert (b.sport[0], b.dport[0], b.tcp_flags[0], b.tcp_win[0]) == (1234, 80, 0x12, 29200)
    assert bytes(b.src[0]) == b"\x00" * 10 + b"\xff\xff" + V4A


def test_ipv4_options_and_snaplen_cut(tmp_path):
    frame = tcp_frame(ipv4_option_words=3, tcp_options_words=2, payload=500)
    p = tmp_path / "opt.pcap"
    cut = frame[: 14 + 32 + 20]  # IP header with options + TCP fixed header: enough
    too_short = frame[: 14 + 32 + 10]  # cut inside the TCP header
    p.write_bytes(pcap_header(snaplen=66) + pcap_record(cut, orig=len(frame))
                  + pcap_record(too_short, orig=len(frame)))
    batches, stats = read_capture(p)
    b = one(batches)
    assert len(b) == 1 and stats.truncated == 1
    assert stats.skipped_by_reason == {"truncated_l4_header": 1}
    assert b.ip_len[0] == 32 + 28 + 500 and b.ip_header_len[0] == 32 and b.l4_header_len[0] == 28
    assert b.payload_len[0] == 500


def test_ipv4_fragments(tmp_path):
    first = make_record(PacketSpec(4, V4A, V4B, 17, 53, 5353, fragment="first", payload=30), 1, RNG, None)
    later = make_record(PacketSpec(4, V4A, V4B, 17, 53, 5353, fragment="nonfirst", payload=30), 1, RNG, None)
    p = tmp_path / "frag.pcap"
    p.write_bytes(pcap_header() + pcap_record(first.frame) + pcap_record(later.frame))
    batches, stats = read_capture(p)
    b = one(batches)
    assert b.is_fragment.tolist() == [True, True] and stats.fragments == 2
    assert b.sport.tolist() == [53, 0] and b.l4_header_len.tolist() == [8, 0]


def test_ipv6_extension_headers(tmp_path):
    spec = PacketSpec(6, bytes(range(16)), bytes(range(16, 32)), 6, 443, 50000, tcp_flags=0x18,
                      tcp_win=512, ipv6_ext=[(0, 0), (43, 1), (51, 2), (60, 0)], fragment="first", payload=10)
    rec = make_record(spec, 1, RNG, None)
    p = tmp_path / "v6.pcap"
    p.write_bytes(pcap_header() + pcap_record(rec.frame))
    b = one(read_capture(p)[0])
    assert b.proto[0] == 6 and b.ip_header_len[0] == 40 + 8 + 16 + 16 + 8 + 8
    assert (b.sport[0], b.dport[0], b.tcp_flags[0], b.tcp_win[0]) == (443, 50000, 0x18, 512)
    assert b.is_fragment[0] and bytes(b.dst[0]) == bytes(range(16, 32))


def test_tso_zero_total_length_uses_wire_length(tmp_path):
    frame = bytearray(tcp_frame(payload=100))
    frame[16:18] = b"\x00\x00"  # IPv4 total length 0, as offloaded captures write it
    p = tmp_path / "tso.pcap"
    p.write_bytes(pcap_header() + pcap_record(bytes(frame)))
    b = one(read_capture(p)[0])
    assert b.ip_len[0] == 20 + 20 + 100 and b.payload_len[0] == 100


def test_malformed_headers_are_counted(tmp_path):
    bad_ihl = bytearray(tcp_frame()); bad_ihl[14] = 0x43
    bad_len = bytearray(tcp_frame()); bad_len[16:18] = b"\x00\x10"
    bad_doff = bytearray(tcp_frame()); bad_doff[14 + 20 + 12] = 0x30
    bad_ver = bytearray(tcp_frame()); bad_ver[14] = 0x65
    p = tmp_path / "bad.pcap"
    p.write_bytes(pcap_header() + b"".join(pcap_record(bytes(f)) for f in (bad_ihl, bad_len, bad_doff, bad_ver))
                  + pcap_record(tcp_frame()))
    batches, stats = read_capture(p)
    assert stats.malformed == 4 and stats.ip_packets == 1
    assert stats.skipped_by_reason == {"bad_ipv4_ihl": 1, "bad_ip_length": 1, "bad_tcp_offset": 1,
                                       "bad_ip_version": 1}
    assert one(batches).frame_index.tolist() == [4]


def test_unsupported_link_type_counted_as_non_ip(tmp_path, caplog):
    p = tmp_path / "wifi.pcap"
    p.write_bytes(pcap_header(link=105) + pcap_record(bytes(40)) + pcap_record(bytes(40)))
    with caplog.at_level(logging.WARNING):
        batches, stats = read_capture(p)
    assert stats.non_ip == 2 and stats.link_types == {"UNSUPPORTED(105)": 2}
    assert stats.skipped_by_reason == {"unsupported_link_type": 2} and batches == []
    assert "unsupported link type" in caplog.text


def test_pcapng_interfaces_with_own_resolution_and_offset(tmp_path):
    v6 = make_record(PacketSpec(6, bytes(16), bytes(15) + b"\x01", 17, 1, 2), 229, RNG, None)
    v4 = make_record(PacketSpec(4, V4A, V4B, 6, 3, 4), 113, RNG, None)
    data = (shb(False) + idb(False, 229, 0, 9) + idb(False, 113, 0, 0x80 | 10, 100)
            + epb(False, 0, 1_700_000_000_123_456_789, v6.frame, len(v6.frame))
            + epb(False, 1, 5 * 1024 + 512, v4.frame, len(v4.frame))
            + spb(False, v6.frame, len(v6.frame)))
    p = tmp_path / "multi.pcapng"
    p.write_bytes(data)
    batches, stats = read_capture(p)
    b = one(batches)
    assert b.ts.tolist() == [1_700_000_000 + 0.123456789, 105.5, 105.5]  # SPB: previous ts
    assert b.ip_version.tolist() == [6, 4, 6]
    assert stats.link_types == {"LINUX_SLL(113)": 1, "IPV6(229)": 2}


def test_chunk_and_batch_sizes_do_not_change_the_result(tmp_path):
    rng = random.Random(3)
    recs = [make_record(PacketSpec(4, V4A, V4B, 6, i, 80, payload=rng.randrange(300)), 1, rng, None)
            for i in range(200)]
    p = tmp_path / "many.pcap"
    write_pcap(p, recs, [(i, 0) for i in range(200)])
    ref = one(read_capture(p)[0])
    for chunk, batch in [(64, 1), (100, 7), (4096, 50), (1 << 20, 1000)]:
        got = one(list(CaptureReader(p, batch_packets=batch, chunk_bytes=chunk)))
        for name in PacketBatch.__dataclass_fields__:
            np.testing.assert_array_equal(getattr(got, name), getattr(ref, name), err_msg=name)
    assert ref.sport.tolist() == list(range(200))


def test_record_larger_than_chunk_grows_buffer(tmp_path):
    big = make_record(PacketSpec(4, V4A, V4B, 17, 7, 9, payload=60_000), 1, RNG, None)
    p = tmp_path / "jumbo.pcap"
    write_pcap(p, [big, big], [(0, 0), (1, 0)])
    b = one(list(CaptureReader(p, chunk_bytes=4096)))
    assert b.ip_len.tolist() == [60_028, 60_028]


def test_iterating_twice_gives_the_same_stats(tmp_path):
    p = tmp_path / "twice.pcap"
    p.write_bytes(pcap_header() + pcap_record(tcp_frame()) * 3)
    reader = CaptureReader(p)
    first = [len(b) for b in reader], reader.stats.as_dict()
    second = [len(b) for b in reader], reader.stats.as_dict()
    assert first == second and first[1]["records"] == 3


def test_non_ip_record_between(tmp_path):
    recs = [make_record(PacketSpec(4, V4A, V4B, 6, 1, 2), 1, RNG, None),
            Record(b"\xff" * 12 + b"\x08\x06" + bytes(28), 42, 1, None),
            make_record(PacketSpec(4, V4A, V4B, 6, 3, 4), 1, RNG, None)]
    p = tmp_path / "arp.pcap"
    write_pcap(p, recs, [(0, 0)] * 3)
    batches, stats = read_capture(p)
    assert stats.non_ip == 1 and one(batches).frame_index.tolist() == [0, 2]
