"""Compressed captures (gzip, zstd) read as they are: the same packets and stores as the decompressed
file, and clear per-file errors for corrupt or truncated streams (packets before the damage kept)."""

from __future__ import annotations

import gzip
import shutil

import numpy as np
import pandas as pd
import pytest

from nidsflow.capture.extract import extract_dataset
from nidsflow.capture.flows import FlowConfig, flows_of_capture
from nidsflow.capture.pcap import CaptureError, CaptureReader, PacketBatch, read_capture
from nidsflow.store import Store

pytestmark = pytest.mark.data

#: small real gzip captures of ../shared/data: pcap and pcapng, benign and attack
SMALL = ["iot-sentinel-benign/Aria_Setup-A-1-STA.pcap.gz",
         "lab-ad-benign/normal_share_traversal.pcapng.gz",
         "otrf-attacks/pcap_log4shell_cve2021_44228_jndi_reference_2022-05-11181020.pcap.gz"]
EXTRACT = {"T": 8, "idle_timeout_s": 120, "active_timeout_s": 1800, "shard_flows": 50}


def _real(shared_data, name):
    """A small real capture of ../shared/data (the test skips when it is absent)."""
    path = shared_data / name
    if not path.exists():
        pytest.skip(f"{path} not found")
    return path


def _gunzip(src, dst_dir):
    dst = dst_dir / src.name[:-3]
    with gzip.open(src, "rb") as fi, open(dst, "wb") as fo:
        shutil.copyfileobj(fi, fo)
    return dst


def _packets(path, **kw):
    reader = CaptureReader(path, **kw)
    return PacketBatch.concat(list(reader)), reader.stats


def _assert_same_batches(a: PacketBatch, b: PacketBatch):
    assert len(a) == len(b) > 0
    for f in PacketBatch.__dataclass_fields__:
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f), err_msg=f)


def _counts(st):
    return {k: v for k, v in st.as_dict().items() if k not in ("compression", "file_bytes_read")}


@pytest.mark.parametrize("name", SMALL)
def test_gzip_gives_the_packets_of_the_plain_file(shared_data, tmp_path, name):
    gz = _real(shared_data, name)
    plain = _gunzip(gz, tmp_path)
    # a small chunk forces many refills, records split across them and a grown buffer
    for kw in ({}, {"chunk_bytes": 4096, "batch_packets": 7}):
        a, sa = _packets(gz, **kw)
        b, sb = _packets(plain, **kw)
        _assert_same_batches(a, b)
        assert _counts(sa) == _counts(sb)
        assert sa.compression == "gzip" and sb.compression is None
        assert sa.file_bytes_read == gz.stat().st_size
        assert sa.bytes_read == sb.bytes_read == plain.stat().st_size - (24 if plain.suffix == ".pcap" else 0)


def test_gzip_and_plain_give_identical_stores(shared_data, tmp_path):
    gzs = [shared_data / n for n in SMALL]
    if not all(p.exists() for p in gzs):
        pytest.skip("small gzip captures not found")
    plain_dir = tmp_path / "plain"
    plain_dir.mkdir()
    plains = [_gunzip(p, plain_dir) for p in gzs]
    stores = {}
    for kind, files in (("gz", gzs), ("plain", plains)):
        ds = {"driver": "per_file", "captures": [str(p) for p in files],
              "labels": {str(files[0]): "BENIGN", str(files[1]): "BENIGN", str(files[2]): "Log4Shell"}}
        report = extract_dataset(kind, ds, EXTRACT, tmp_path / kind)
        assert report["failed_captures"] == []
        stores[kind] = (Store(tmp_path / kind), report)
    (a, ra), (b, rb) = stores["gz"], stores["plain"]
    assert a.n_flows == b.n_flows > 10
    assert ra["packets"] == rb["packets"] and ra["records"] == rb["records"]
    fa, fb = a.flows, b.flows
    names = lambda fr: [f.split("/")[-1].removesuffix(".gz") for f in fr["source_file"]]  # noqa: E731
    assert names(fa) == names(fb)
    pd.testing.assert_frame_equal(fa.drop(columns="source_file"), fb.drop(columns="source_file"))
    pd.testing.assert_frame_equal(a.flow_features, b.flow_features)
    ids = np.arange(a.n_flows)
    for x, y in zip(a.packets(ids), b.packets(ids)):
        np.testing.assert_array_equal(x, y)
    assert set(fa.loc[fa["is_attack"], "attack_class"]) == {"log4shell"}


def test_truncated_gzip_keeps_the_packets_before_the_cut(shared_data, tmp_path):
    src = _real(shared_data, SMALL[1])
    data = src.read_bytes()
    cut = tmp_path / "cut.pcapng.gz"
    cut.write_bytes(data[:len(data) * 6 // 10])
    full, _ = _packets(src)
    reader = CaptureReader(cut)  # the header decompresses: the damage is found while reading
    kept = []
    with pytest.raises(CaptureError, match=r"cut\.pcapng\.gz: gzip stream is truncated.*compressed byte offset "
                                           rf"{len(data) * 6 // 10}.*IP packets .* before it are kept"):
        for b in reader:
            kept.append(b)
    got = PacketBatch.concat(kept)
    assert 0 < len(got) < len(full)
    for f in PacketBatch.__dataclass_fields__:  # exactly the first packets of the whole capture
        np.testing.assert_array_equal(getattr(got, f), getattr(full, f)[:len(got)], err_msg=f)
    st = reader.stats
    assert st.ip_packets == len(got) and st.truncated_last_record and st.truncated >= 1
    assert st.records == st.ip_packets + st.non_ip + st.truncated + st.malformed

    # extraction: the per-file error is reported and the flows read before it are kept
    ds = {"driver": "per_file", "captures": [str(cut), str(src)], "labels": {str(cut): "BENIGN", str(src): "BENIGN"}}
    report = extract_dataset("cut", ds, EXTRACT, tmp_path / "store")
    assert [f["file"] for f in report["failed_captures"]] == [str(cut)]
    assert "gzip stream is truncated" in report["failed_captures"][0]["error"]
    per = {c["file"]: c for c in report["per_capture"]}
    assert 0 < per[str(cut)]["flows"] <= per[str(src)]["flows"]
    assert per[str(cut)]["reader"]["truncated_last_record"]


def test_corrupt_gzip_is_a_clear_error(tmp_path):
    rng = np.random.default_rng(0)
    bad = tmp_path / "noise.pcap.gz"
    bad.write_bytes(b"\x1f\x8b" + rng.integers(0, 256, 500, dtype=np.uint8).tobytes())
    with pytest.raises(CaptureError, match=r"noise\.pcap\.gz: file is gzip-compressed and cannot be decompressed"):
        CaptureReader(bad)


def test_gzip_damaged_mid_stream(shared_data, tmp_path):
    src = _real(shared_data, SMALL[1])
    data = bytearray(src.read_bytes())
    mid = len(data) // 2
    data[mid:mid + 64] = bytes(64)  # a hole in the deflate data
    bad = tmp_path / "hole.pcapng.gz"
    bad.write_bytes(bytes(data))
    with pytest.raises(CaptureError, match=r"hole\.pcapng\.gz: .*(corrupt gzip data|byte offset|block)"):
        read_capture(bad)


def test_gzip_detected_by_magic_members_and_padding(shared_data, tmp_path):
    """A gzip file named .pcap; a capture split over two gzip members with NUL padding after them."""
    src = _real(shared_data, SMALL[0])
    raw = gzip.decompress(src.read_bytes())
    full, _ = _packets(src)
    named = tmp_path / "looks_plain.pcap"
    named.write_bytes(src.read_bytes())
    _assert_same_batches(_packets(named)[0], full)
    k = len(raw) // 3
    multi = tmp_path / "multi.pcap.gz"
    multi.write_bytes(gzip.compress(raw[:k]) + gzip.compress(raw[k:]) + bytes(100))
    a, st = _packets(multi, chunk_bytes=512)
    _assert_same_batches(a, full)
    assert not st.truncated_last_record
    garbage = tmp_path / "tail.pcap.gz"
    garbage.write_bytes(gzip.compress(raw) + b"not gzip at all")
    with pytest.raises(CaptureError, match=r"tail\.pcap\.gz: data after the end of the gzip stream"):
        read_capture(garbage)


def test_gzip_holding_no_capture(tmp_path):
    empty = tmp_path / "empty.pcap.gz"
    empty.write_bytes(gzip.compress(b""))
    with pytest.raises(CaptureError, match=r"empty\.pcap\.gz: gzip-compressed file holds no data"):
        CaptureReader(empty)
    text = tmp_path / "text.pcap.gz"
    text.write_bytes(gzip.compress(b"hello, this is not a capture"))
    with pytest.raises(CaptureError, match=r"text\.pcap\.gz: not a pcap .* of the decompressed gzip stream"):
        CaptureReader(text)


def test_zstd_capture(shared_data, tmp_path):
    zstandard = pytest.importorskip("zstandard")
    src = _real(shared_data, SMALL[1])
    raw = gzip.decompress(src.read_bytes())
    zst = tmp_path / "cap.pcapng.zst"
    zst.write_bytes(zstandard.ZstdCompressor(level=3).compress(raw))
    full, sf = _packets(src)
    a, sa = _packets(zst, chunk_bytes=4096)
    _assert_same_batches(a, full)
    assert sa.compression == "zstd" and _counts(sa) == _counts(sf)
    flows, _, _ = flows_of_capture(zst, FlowConfig(T=8))
    assert len(flows) == len(flows_of_capture(src, FlowConfig(T=8))[0])
    cut = tmp_path / "cut.pcapng.zst"
    cut.write_bytes(zst.read_bytes()[:zst.stat().st_size // 2])
    with pytest.raises(CaptureError, match=r"cut\.pcapng\.zst: .*zstd stream is truncated"):
        read_capture(cut)
