"""Streaming pcap / pcapng reader -> columnar batches of parsed packet headers.

The file is read in chunks (``chunk_bytes``, 4 MiB by default) into one reusable buffer; a
numba walker finds record boundaries and a numba decoder turns link/IP/transport headers into
the columns of :class:`PacketBatch`. Memory is bounded by the chunk buffer plus one batch,
whatever the capture size.

Supported
    * classic pcap, both byte orders, microsecond (0xa1b2c3d4) and nanosecond (0xa1b23c4d) magic;
    * pcapng: SHB (both byte orders, several sections), IDB (link type, snaplen, ``if_tsresol``,
      ``if_tsoffset``), EPB, SPB, obsolete PB; all other blocks are skipped;
    * link types: Ethernet (1), Linux SLL (113), SLL2 (276), raw IP (101, 12, 14, 228, 229),
      BSD null (0, either byte order), OpenBSD loop (108), PPP (9), PPP in HDLC framing (50),
      Cisco HDLC (104); 802.1Q / 802.1ad / QinQ tags, PPPoE session and MPLS shims;
    * IPv4 with options, IPv6 with hop-by-hop, routing, fragment, destination options, AH
      (and mobility/HIP/shim6) extension headers; fragments (``is_fragment``; a non-first
      fragment has ports 0).

Conventions
    * Addresses are 16 bytes; IPv4 is written IPv4-mapped (``::ffff:a.b.c.d``).
    * ``ip_len`` comes from the IP header, so a snaplen-cut packet keeps its true size. A zero
      length field (written by TSO/GSO offload captures; IPv6 jumbograms) is replaced by the
      on-wire length.
    * Tunnels (IP-in-IP 4in6 / 6in6 / 6in4, GRE, ...) are reported at the **outer** IP layer:
      ``proto`` is 4, 41 or 47 and the ports are 0. Nothing is decapsulated.
    * A record is emitted when its IP header (with IPv6 extension headers) and the fixed part of
      its TCP (20 B) / UDP (8 B) / SCTP (4 B, ports) header are captured; otherwise it is counted
      in ``ReadStats.truncated``. Non-IP frames are counted in ``non_ip``, broken headers in
      ``malformed``; ``skipped_by_reason`` has the fine-grained reason of every skipped record.
    * A simple packet block (pcapng SPB) carries no timestamp: it gets the previous packet's.

Compressed captures
    A gzip (``.pcap.gz``, magic ``1f 8b``) or zstd (``.zst``, magic ``28 b5 2f fd``; needs the
    ``zstandard`` package) file is recognised by its magic bytes, whatever its name, and decompressed
    as it is read (:class:`_DecompressedStream`: bounded chunks into the same buffer, no temporary
    file); concatenated members/frames are one stream. Byte offsets in messages are then offsets in
    the decompressed capture. A stream cut short (no end-of-stream marker) keeps every packet before
    the cut: the partial last record is counted as truncated, then :class:`CaptureError` names the
    file, the problem and the offsets; corrupt compressed data is a :class:`CaptureError` too.
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from nidsflow.capture import _pcap_kernels as K

log = logging.getLogger(__name__)

#: Largest record accepted (a captured length above it means the file is corrupt).
MAX_RECORD_BYTES = 256 * 1024 * 1024
#: Captured lengths up to max(snaplen, this) are accepted (Wireshark's standard maximum).
STANDARD_MAX_SNAPLEN = 262144
#: Packets per reader batch. The flow meter sweeps idle flows after every batch, so a batch's span of capture
#: time adds to the flows held at once: a 5 M-flow spoofed flood peaked at 1 253 MiB with 262 144 and at
#: 960 MiB with 16 384, at the same speed (docs/benchmarks.md, "Extraction in parallel").
DEFAULT_BATCH_PACKETS = 16384
DEFAULT_CHUNK_BYTES = 4 * 1024 * 1024  # fits in cache: the decoder re-reads what the walker read

PCAP_MAGICS = {  # first 4 bytes as they appear in the file -> (big_endian, fractions per second)
    b"\xd4\xc3\xb2\xa1": (False, 1_000_000),
    b"\xa1\xb2\xc3\xd4": (True, 1_000_000),
    b"\x4d\x3c\xb2\xa1": (False, 1_000_000_000),
    b"\xa1\xb2\x3c\x4d": (True, 1_000_000_000),
}
PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
KNOWN_UNSUPPORTED_MAGICS = {
    b"\xa1\xb2\xcd\x34": "a modified (Kuznetzov) pcap",
    b"\x34\xcd\xb2\xa1": "a modified (Kuznetzov) pcap",
}

LINK_TYPE_NAMES = {
    0: "NULL", 1: "ETHERNET", 9: "PPP", 12: "RAW", 14: "RAW", 50: "PPP_HDLC", 101: "RAW",
    104: "C_HDLC", 108: "LOOP", 113: "LINUX_SLL", 228: "IPV4", 229: "IPV6", 276: "LINUX_SLL2",
}
SUPPORTED_LINK_TYPES = frozenset(LINK_TYPE_NAMES)

_NON_IP = (K.ST_NON_IP, K.ST_UNSUPPORTED_LINK)
_TRUNCATED = (K.ST_TRUNC_L2, K.ST_TRUNC_IP, K.ST_TRUNC_L4)
_MALFORMED = (K.ST_BAD_IP_VERSION, K.ST_BAD_IPV4_IHL, K.ST_BAD_IP_LENGTH, K.ST_BAD_TCP_OFFSET,
              K.ST_BAD_IPV6_EXT)

_WALK_ERRORS = {
    K.WALK_ABSURD_CAPLEN: "absurd captured length",
    K.WALK_BAD_BLOCK_LEN: "invalid pcapng block length",
    K.WALK_TRAILER_MISMATCH: "pcapng block trailer length differs from its header length",
    K.WALK_BAD_INTERFACE: "packet block refers to an undescribed interface",
    K.WALK_CAPLEN_BEYOND_BLOCK: "packet data runs past the end of its pcapng block",
}


class CaptureError(ValueError):
    """A capture file cannot be read; the message names the file and the problem."""


class _StreamError(Exception):
    """Corrupt or truncated compressed data (turned into a :class:`CaptureError` naming the file)."""


def compression_of(head: bytes) -> str | None:
    """"gzip" or "zstd" when the file's first bytes are that format's magic, else None."""
    if head[:2] == GZIP_MAGIC:
        return "gzip"
    if head[:4] == ZSTD_MAGIC:
        return "zstd"
    return None


class _DecompressedStream:
    """The decompressed bytes of a gzip or zstd file, with ``readinto`` like a file opened "rb".

    Compressed input is read in ``RAW_CHUNK`` pieces and each decoder call's output is capped
    (zlib's ``max_length``), so memory stays bounded whatever the ratio. Concatenated gzip members
    (``cat a.gz b.gz``, RFC 1952 section 2.2) and zstd frames are read as one stream; NUL padding
    after the last gzip member is ignored, as gzip(1) does. A problem raises :class:`_StreamError`
    after the bytes decoded before it have been returned.
    """

    RAW_CHUNK = 1 << 18
    OUT_CHUNK = 1 << 20

    def __init__(self, path: Path, kind: str):
        if kind == "zstd":
            try:
                import zstandard
            except ImportError:
                raise CaptureError(f"{path}: file is zstd-compressed and the zstandard package is not "
                                   f"installed (pip install zstandard, or decompress it first)") from None
            self._zstd = zstandard
            self._errors: tuple = (zstandard.ZstdError,)
        else:
            self._errors = (zlib.error,)
        self.kind = kind
        self.raw_pos = 0     # compressed bytes read from the file
        self.out_pos = 0     # decompressed bytes handed out
        self._f = open(path, "rb")
        self._d = self._decoder()
        self._in = b""       # compressed input not yet given to the decoder
        self._out = b""      # decoded bytes not yet handed out
        self._out_off = 0
        self._done = False
        self._error: _StreamError | None = None

    def _decoder(self):
        if self.kind == "gzip":
            return zlib.decompressobj(16 + zlib.MAX_WBITS)  # gzip header and trailer (CRC-32, size)
        return self._zstd.ZstdDecompressor().decompressobj()

    def _raw(self) -> bytes:
        data = self._f.read(self.RAW_CHUNK)
        self.raw_pos += len(data)
        return data

    def _next_member(self) -> bool:
        """After the end of a member/frame: start the next one; False at the clean end of the file."""
        rest = self._d.unused_data + self._in
        magic = GZIP_MAGIC if self.kind == "gzip" else ZSTD_MAGIC
        while True:
            if self.kind == "gzip":
                rest = rest.lstrip(b"\0")  # NUL padding between/after members, skipped as gzip(1) does
            if len(rest) >= len(magic):
                break
            more = self._raw()
            if not more:
                if not rest:
                    return False
                break
            rest += more
        if not rest.startswith(magic):
            raise _StreamError(f"data after the end of the {self.kind} stream is not another {self.kind} "
                               f"member (compressed byte offset {self.raw_pos - len(rest)})")
        self._d = self._decoder()
        self._in = rest
        return True

    def _decode_some(self) -> None:
        """Decode the next piece of output into ``self._out`` (or set ``_done`` / raise)."""
        if self._d.eof and not self._next_member():
            self._done = True
            return
        if not self._in:
            self._in = self._raw()
            if not self._in:
                raise _StreamError(f"{self.kind} stream is truncated: the file ends (compressed byte offset "
                                   f"{self.raw_pos}) before the end-of-stream marker, after "
                                   f"{self.out_pos + len(self._out) - self._out_off} decompressed bytes")
        start = self.raw_pos - len(self._in)
        try:
            if self.kind == "gzip":
                out = self._d.decompress(self._in, self.OUT_CHUNK)
                self._in = self._d.unconsumed_tail if not self._d.eof else b""
            else:
                out = self._d.decompress(self._in)
                self._in = b""
        except self._errors as exc:
            raise _StreamError(f"corrupt {self.kind} data ({exc}) in compressed bytes {start}-{self.raw_pos}, "
                               f"after {self.out_pos} decompressed bytes") from None
        self._out, self._out_off = out, 0

    def readinto(self, buf) -> int:
        """Fill ``buf`` (a writable memoryview) with the next decompressed bytes; 0 at the end."""
        mv = memoryview(buf).cast("B")
        n, want = 0, len(mv)
        while n < want:
            if self._out_off < len(self._out):
                k = min(len(self._out) - self._out_off, want - n)
                mv[n:n + k] = self._out[self._out_off:self._out_off + k]
                self._out_off += k
                n += k
                continue
            if self._done or self._error is not None:
                break
            try:
                self._decode_some()
            except _StreamError as exc:
                self._error = exc  # raised on the next call: the bytes decoded so far go out first
        self.out_pos += n
        if n == 0 and self._error is not None:
            raise self._error
        return n

    def close(self) -> None:
        self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def link_type_name(link_type: int) -> str:
    """'ETHERNET(1)' style name of a link type number."""
    return f"{LINK_TYPE_NAMES.get(link_type, 'UNSUPPORTED')}({link_type})"


@dataclass
class PacketBatch:
    """Parsed headers of up to ``batch_packets`` IP packets, one numpy column per field."""

    ts: np.ndarray             # float64 seconds since epoch, UTC
    src: np.ndarray            # uint8 [n, 16]; IPv4 as ::ffff:a.b.c.d
    dst: np.ndarray            # uint8 [n, 16]
    ip_version: np.ndarray     # uint8, 4 or 6
    proto: np.ndarray          # uint8, after IPv6 extension headers
    sport: np.ndarray          # uint16, 0 if not TCP/UDP/SCTP or a non-first fragment
    dport: np.ndarray          # uint16
    ip_len: np.ndarray         # uint32, header-derived
    ip_header_len: np.ndarray  # uint16, IHL*4 or 40 + extension headers
    l4_header_len: np.ndarray  # uint16, TCP data offset*4, UDP 8, else 0
    payload_len: np.ndarray    # uint32, ip_len - ip_header_len - l4_header_len, >= 0
    tcp_flags: np.ndarray      # uint8, FIN=1 SYN=2 RST=4 PSH=8 ACK=16 URG=32 ECE=64 CWR=128
    tcp_win: np.ndarray        # uint16 raw window field
    is_fragment: np.ndarray    # bool
    frame_index: np.ndarray    # int64, 0-based record index in the file

    def __len__(self) -> int:
        return int(self.ts.shape[0])

    @classmethod
    def concat(cls, batches: list["PacketBatch"]) -> "PacketBatch":
        """One batch holding all rows of ``batches`` in order (an empty batch if none)."""
        if not batches:
            return _empty_batch(0)
        return cls(**{f: np.concatenate([getattr(b, f) for b in batches])
                      for f in cls.__dataclass_fields__})


def _empty_batch(n: int) -> PacketBatch:
    return PacketBatch(
        ts=np.empty(n, np.float64), src=np.empty((n, 16), np.uint8),
        dst=np.empty((n, 16), np.uint8), ip_version=np.empty(n, np.uint8),
        proto=np.empty(n, np.uint8), sport=np.empty(n, np.uint16), dport=np.empty(n, np.uint16),
        ip_len=np.empty(n, np.uint32), ip_header_len=np.empty(n, np.uint16),
        l4_header_len=np.empty(n, np.uint16), payload_len=np.empty(n, np.uint32),
        tcp_flags=np.empty(n, np.uint8), tcp_win=np.empty(n, np.uint16),
        is_fragment=np.empty(n, np.bool_), frame_index=np.empty(n, np.int64),
    )


@dataclass
class ReadStats:
    """Counts of everything read: records = ip_packets + non_ip + truncated + malformed."""

    records: int = 0
    ip_packets: int = 0
    non_ip: int = 0
    truncated: int = 0
    malformed: int = 0
    fragments: int = 0
    truncated_last_record: bool = False
    link_types: dict[str, int] = field(default_factory=dict)
    skipped_by_reason: dict[str, int] = field(default_factory=dict)
    bytes_read: int = 0             # capture bytes (decompressed ones for a compressed file)
    file_bytes_read: int = 0        # bytes of the file on disk (= bytes_read unless compressed)
    compression: str | None = None  # "gzip" / "zstd" when the file was decompressed as read
    #: bytes at the end of the file that did not form a whole record (the cut-short last record)
    tail_bytes: int = 0

    def as_dict(self) -> dict:
        return {k: (dict(v) if isinstance(v, dict) else v) for k, v in self.__dict__.items()}


@dataclass
class _Interface:
    link_type: int
    snaplen: int
    units_per_second: int = 1_000_000
    offset_s: float = 0.0


class CaptureReader:
    """Iterate over :class:`PacketBatch` es of a pcap or pcapng file, in bounded memory.

    The path and file header are validated at construction (:class:`CaptureError` otherwise);
    ``stats`` is complete once iteration has finished; ``format`` is "pcap" or "pcapng";
    ``compression`` is "gzip", "zstd" (read through :class:`_DecompressedStream`) or None.
    """

    def __init__(self, path: str | os.PathLike, batch_packets: int = DEFAULT_BATCH_PACKETS,
                 chunk_bytes: int = DEFAULT_CHUNK_BYTES):
        self.path = Path(path)
        if int(batch_packets) < 1:
            raise ValueError(f"batch_packets must be >= 1, got {batch_packets}")
        if int(chunk_bytes) < 64:
            raise ValueError(f"chunk_bytes must be >= 64, got {chunk_bytes}")
        self.batch_packets = int(batch_packets)
        self.chunk_bytes = int(chunk_bytes)
        self.stats = ReadStats()
        if not self.path.exists():
            raise CaptureError(f"{self.path}: no such file")
        if not self.path.is_file():
            raise CaptureError(f"{self.path}: not a regular file")
        self.file_size = self.path.stat().st_size
        if self.file_size == 0:
            raise CaptureError(f"{self.path}: empty file (0 bytes), not a capture")
        with open(self.path, "rb") as f:
            head = f.read(32)
        self.compression = compression_of(head)
        if self.compression is not None:
            head = self._decompressed_head()
        magic = head[:4]
        if magic in PCAP_MAGICS:
            self.format = "pcap"
            self._parse_pcap_header(head)
        elif magic == PCAPNG_SHB:
            self.format = "pcapng"
            if len(head) < 12:
                raise CaptureError(f"{self.path}: truncated pcapng section header block "
                                   f"({len(head)} bytes)")
            self._shb_byte_order(head, 0)
        else:
            for prefix, what in KNOWN_UNSUPPORTED_MAGICS.items():
                if magic.startswith(prefix):
                    raise CaptureError(f"{self.path}: file is {what}, not pcap/pcapng")
            where = f" of the decompressed {self.compression} stream" if self.compression else ""
            raise CaptureError(f"{self.path}: not a pcap or pcapng file (magic bytes "
                               f"{magic.hex()} at offset 0{where})")

    def _decompressed_head(self) -> bytes:
        """The first 32 bytes of the decompressed capture (CaptureError for a corrupt/empty stream)."""
        head = bytearray(32)
        n = 0
        try:
            with _DecompressedStream(self.path, self.compression) as s:
                while n < len(head):
                    got = s.readinto(memoryview(head)[n:])
                    if not got:
                        break
                    n += got
        except _StreamError as exc:
            if not n:
                raise CaptureError(f"{self.path}: file is {self.compression}-compressed and cannot be "
                                   f"decompressed: {exc}") from None
        if n == 0:
            raise CaptureError(f"{self.path}: {self.compression}-compressed file holds no data (0 bytes "
                               f"after decompression), not a capture")
        return bytes(head[:n])

    def _open(self):
        """The capture's bytes: the file itself, or its decompressed stream."""
        if self.compression is None:
            return open(self.path, "rb")
        return _DecompressedStream(self.path, self.compression)

    # ---- headers --------------------------------------------------------------------------
    def _parse_pcap_header(self, head: bytes) -> None:
        if len(head) < 24:
            raise CaptureError(f"{self.path}: truncated pcap file header ({len(head)} of 24 bytes)")
        self._big, self._frac_per_second = PCAP_MAGICS[head[:4]]
        e = ">" if self._big else "<"
        major, _minor, _zone, _sigfigs, snaplen, network = struct.unpack(e + "HHiIII", head[4:24])
        if major != 2:
            raise CaptureError(f"{self.path}: unsupported pcap version {major} (expected 2)")
        self.snaplen = snaplen
        # The upper bits of `network` carry FCS information; the link type is the low 16 bits.
        self.link_type = network & 0xFFFF
        self._max_caplen = min(MAX_RECORD_BYTES, max(snaplen, STANDARD_MAX_SNAPLEN))

    def _shb_byte_order(self, buf, pos: int) -> bool:
        """Byte order of the section whose SHB starts at ``pos`` (True = big-endian)."""
        bom = bytes(buf[pos + 8:pos + 12])
        if bom == b"\x4d\x3c\x2b\x1a":
            return False
        if bom == b"\x1a\x2b\x3c\x4d":
            return True
        raise CaptureError(f"{self.path}: bad pcapng byte-order magic {bom.hex()} in the section "
                           f"header block at offset {pos}")

    def _parse_idb(self, blk: bytes, big: bool, offset: int) -> _Interface:
        e = ">" if big else "<"
        if len(blk) < 20:
            raise CaptureError(f"{self.path}: interface description block too short at offset {offset}")
        link, _res, snaplen = struct.unpack(e + "HHI", blk[8:16])
        iface = _Interface(link_type=link, snaplen=snaplen)
        p, stop = 16, len(blk) - 4
        while p + 4 <= stop:
            code, olen = struct.unpack(e + "HH", blk[p:p + 4])
            if code == 0:
                break
            val = blk[p + 4:p + 4 + olen]
            if len(val) < olen:
                raise CaptureError(f"{self.path}: option {code} runs past its interface "
                                   f"description block at offset {offset}")
            if code == 9 and olen >= 1:  # if_tsresol: 10^-v, or 2^-v when the high bit is set
                v = val[0]
                units = 2 ** (v & 0x7F) if v & 0x80 else 10 ** v
                if units >= 2 ** 64 or units < 1:
                    raise CaptureError(f"{self.path}: unsupported if_tsresol {v:#x} at offset {offset}")
                iface.units_per_second = units
            elif code == 14 and olen >= 8:  # if_tsoffset: seconds added to every timestamp
                iface.offset_s = float(struct.unpack(e + "q", val[:8])[0])
            p += 4 + olen + (-olen % 4)
        return iface

    # ---- iteration ------------------------------------------------------------------------
    def __iter__(self) -> Iterator[PacketBatch]:
        self.stats = ReadStats(compression=self.compression)
        stats = self.stats
        nb = self.batch_packets
        rec_off = np.empty(nb, np.int64)
        rec_cap = np.empty(nb, np.int64)
        rec_orig = np.empty(nb, np.int64)
        rec_ts = np.empty(nb, np.float64)
        rec_link = np.empty(nb, np.int64)
        status = np.empty(nb, np.uint8)
        status_counts = np.zeros(K.N_STATUS, np.int64)
        batch, filled = _empty_batch(nb), 0  # rows accumulate over chunks until nb are filled
        link_counts: dict[int, int] = {}
        buf = np.empty(max(self.chunk_bytes, 64), np.uint8)
        pos = end = 0
        file_off = 0        # file offset of buf[0]
        frame_base = 0      # record index of the next record
        eof = False
        stream_error: _StreamError | None = None  # a corrupt/truncated compressed stream, raised at the end
        is_ng = self.format == "pcapng"
        if is_ng:
            big = False
            ifaces: list[_Interface] = []
            if_arrays = self._interface_arrays(ifaces)
            ng_state = np.zeros(1, np.float64)
            max_block = MAX_RECORD_BYTES + 64
        else:
            big = self._big
            rec_link[:] = self.link_type

        with self._open() as f:
            if not is_ng:
                if self.compression is None:
                    f.seek(24)
                else:
                    f.readinto(memoryview(buf)[:24])  # the header was checked at construction
                file_off = 24
            while True:
                if is_ng:
                    n, new_pos, wst = K.walk_pcapng(
                        buf, pos, end, big, *if_arrays, max_block, nb - filled, ng_state,
                        rec_off, rec_cap, rec_orig, rec_ts, rec_link)
                else:
                    n, new_pos, wst = K.walk_pcap(
                        buf, pos, end, big, self._frac_per_second, self._max_caplen, nb - filled,
                        rec_off, rec_cap, rec_orig, rec_ts)
                if n:
                    filled = self._decode(buf, n, rec_off, rec_cap, rec_orig, rec_ts, rec_link,
                                          frame_base, batch, filled, status, status_counts,
                                          link_counts)
                    frame_base += n
                    if filled == nb:
                        yield self._emit(batch, filled)
                        batch, filled = _empty_batch(nb), 0
                pos = new_pos
                if wst == K.WALK_FULL:
                    continue
                if wst in _WALK_ERRORS:
                    msg = self._walk_error(wst, buf, pos, file_off, big, is_ng)
                    if filled:  # the packets decoded before the corrupt record are not lost with it
                        yield self._emit(batch, filled)
                    raise CaptureError(msg)
                if wst == K.WALK_PYTHON_BLOCK:
                    need = self._python_block_size(buf, pos, end, big, file_off)
                    if need is not None and pos + need <= end:
                        blk = bytes(buf[pos:pos + need])
                        btype = struct.unpack(">I" if big else "<I", blk[:4])[0]
                        if blk[:4] == PCAPNG_SHB:  # new section: byte order, interfaces reset
                            big = self._shb_byte_order(blk, 0)
                            major = struct.unpack(">H" if big else "<H", blk[12:14])[0]
                            if major != 1:
                                raise CaptureError(f"{self.path}: unsupported pcapng version "
                                                   f"{major} at offset {file_off + pos}")
                            ifaces = []
                        elif btype == 1:
                            ifaces.append(self._parse_idb(blk, big, file_off + pos))
                            lt = ifaces[-1].link_type
                            if lt not in SUPPORTED_LINK_TYPES:
                                log.warning("%s: interface %d has unsupported link type %d; its "
                                            "packets are counted as non-IP", self.path,
                                            len(ifaces) - 1, lt)
                        if_arrays = self._interface_arrays(ifaces)
                        pos += need
                        continue
                # WALK_NEED_DATA (or a Python block not yet complete in the buffer)
                if eof:
                    msg = self._finish_leftover(buf, pos, end, big, is_ng, file_off)
                    if msg is not None:  # not a cut-short last record: corrupt; keep what came before
                        if filled:
                            yield self._emit(batch, filled)
                        raise CaptureError(msg)
                    break
                # keep the incomplete tail, then refill the rest of the buffer
                tail = end - pos
                if tail and pos:
                    buf[:tail] = buf[pos:end]
                file_off += pos
                pos, end = 0, tail
                if end == buf.shape[0]:  # one record larger than the buffer: grow it
                    grown = np.empty(buf.shape[0] * 2, np.uint8)
                    grown[:end] = buf[:end]
                    buf = grown
                try:
                    got = f.readinto(memoryview(buf)[end:])
                except _StreamError as exc:  # keep what was decoded; the partial last record is counted
                    stream_error, got = exc, 0
                if not got:
                    eof = True
                end += got
                stats.bytes_read += got
                stats.file_bytes_read = f.raw_pos if self.compression else stats.bytes_read

        if filled:
            yield self._emit(batch, filled)
        self._finalize_stats(status_counts, link_counts)
        if stream_error is not None:
            raise CaptureError(f"{self.path}: {stream_error}; the {stats.ip_packets} IP packets of the "
                               f"{stats.records} records before it are kept")

    @staticmethod
    def _interface_arrays(ifaces: list[_Interface]):
        return (np.array([i.link_type for i in ifaces], np.int64),
                np.array([i.snaplen for i in ifaces], np.int64),
                np.array([i.units_per_second for i in ifaces], np.uint64),
                np.array([i.offset_s for i in ifaces], np.float64))

    def _python_block_size(self, buf, pos: int, end: int, big: bool, file_off: int) -> int | None:
        """Total length of the SHB/IDB at ``pos``, or None if its header is not in the buffer."""
        if end - pos < 12:
            return None
        if bytes(buf[pos:pos + 4]) == PCAPNG_SHB:
            big = self._shb_byte_order(buf, pos)
        blen = struct.unpack(">I" if big else "<I", bytes(buf[pos + 4:pos + 8]))[0]
        min_len = 28 if bytes(buf[pos:pos + 4]) == PCAPNG_SHB else 20
        if blen < min_len or blen % 4 or blen > MAX_RECORD_BYTES:
            raise CaptureError(f"{self.path}: pcapng block at byte offset {file_off + pos} has "
                               f"invalid length {blen}")
        return blen

    def _walk_error(self, wst: int, buf, pos: int, file_off: int, big: bool, is_ng: bool) -> str:
        what = _WALK_ERRORS[wst]
        e = ">" if big else "<"
        if wst == K.WALK_ABSURD_CAPLEN:
            cap = struct.unpack(e + "I", bytes(buf[pos + 8:pos + 12]))[0]
            what += (f" {cap} (snaplen {self.snaplen}, limit {self._max_caplen}); the file is "
                     f"corrupt or not a capture past this point")
        elif is_ng:
            btype, blen = struct.unpack(e + "II", bytes(buf[pos:pos + 8]))
            what += f" (block type {btype:#x}, length {blen})"
        where = f" of the decompressed {self.compression} stream" if self.compression else ""
        return f"{self.path}: {what} at byte offset {file_off + pos}{where}"

    def _finish_leftover(self, buf, pos: int, end: int, big: bool, is_ng: bool, file_off: int) -> str | None:
        """Bytes left at end of file that do not form a whole record: a truncated last record. Returns an error
        message instead when a classic pcap record claims more than any capture holds (above
        ``STANDARD_MAX_SNAPLEN``, allowed only by a huge header snaplen): a corrupt header, not a writer
        stopped mid-record, and the bytes after it would be dropped silently."""
        tail = end - pos
        if tail == 0:
            return None
        if not is_ng and tail >= 16:
            cap = struct.unpack(">I" if big else "<I", bytes(buf[pos + 8:pos + 12]))[0]
            if cap > STANDARD_MAX_SNAPLEN:
                return (f"{self.path}: record at byte offset {file_off + pos} claims a captured length of {cap} "
                        f"bytes (above {STANDARD_MAX_SNAPLEN}) but {tail - 16} bytes follow: the file is corrupt "
                        f"past this point ({tail} bytes not read)")
        st = self.stats
        st.truncated_last_record = True
        st.tail_bytes = tail
        is_packet = True
        if is_ng and tail >= 4:
            btype = struct.unpack(">I" if big else "<I", bytes(buf[pos:pos + 4]))[0]
            is_packet = btype in (2, 3, 6)
        if is_packet:
            st.records += 1
            st.truncated += 1
            st.skipped_by_reason["truncated_last_record"] = (
                st.skipped_by_reason.get("truncated_last_record", 0) + 1)
        log.warning("%s: the last %s (%d bytes at offset %d) is cut short by the end of the file; "
                    "counted as truncated", self.path, "record" if is_packet else "block", tail,
                    file_off + pos)
        return None

    def _decode(self, buf, n, rec_off, rec_cap, rec_orig, rec_ts, rec_link, frame_base, b,
                filled, status, status_counts, link_counts) -> int:
        """Decode n records into batch `b` from row `filled` on; returns the next free row."""
        new_filled = K.decode_records(
            buf, n, rec_off, rec_cap, rec_orig, rec_ts, rec_link, frame_base, filled,
            b.ts, b.src, b.dst, b.ip_version, b.proto, b.sport, b.dport, b.ip_len,
            b.ip_header_len, b.l4_header_len, b.payload_len, b.tcp_flags, b.tcp_win,
            b.is_fragment, b.frame_index, status[:n])
        status_counts += np.bincount(status[:n], minlength=K.N_STATUS)
        if self.format == "pcap":
            link_counts[self.link_type] = link_counts.get(self.link_type, 0) + n
        else:
            links, counts = np.unique(rec_link[:n], return_counts=True)
            for lt, c in zip(links.tolist(), counts.tolist()):
                link_counts[lt] = link_counts.get(lt, 0) + c
        self.stats.records += n
        self.stats.ip_packets += new_filled - filled
        return new_filled

    def _emit(self, b: PacketBatch, filled: int) -> PacketBatch:
        if filled < len(b):
            b = PacketBatch(**{name: getattr(b, name)[:filled].copy()  # release the unused rows
                               for name in PacketBatch.__dataclass_fields__})
        self.stats.fragments += int(np.count_nonzero(b.is_fragment))
        return b

    def _finalize_stats(self, status_counts: np.ndarray, link_counts: dict[int, int]) -> None:
        st = self.stats
        st.non_ip += int(sum(status_counts[s] for s in _NON_IP))
        st.truncated += int(sum(status_counts[s] for s in _TRUNCATED))
        st.malformed += int(sum(status_counts[s] for s in _MALFORMED))
        for s in range(1, K.N_STATUS):
            if status_counts[s]:
                st.skipped_by_reason[K.STATUS_NAMES[s]] = int(status_counts[s])
        st.link_types = {link_type_name(lt): c for lt, c in sorted(link_counts.items())}
        unsupported = [lt for lt in link_counts if lt not in SUPPORTED_LINK_TYPES]
        if unsupported:
            log.warning("%s: unsupported link type(s) %s: their records are counted as non-IP",
                        self.path, unsupported)
        skipped = st.records - st.ip_packets
        if skipped:
            log.info("%s: %d records, %d IP packets, skipped %d (%s)", self.path, st.records,
                     st.ip_packets, skipped, st.skipped_by_reason)


def read_capture(path: str | os.PathLike, batch_packets: int = DEFAULT_BATCH_PACKETS
                 ) -> tuple[list[PacketBatch], ReadStats]:
    """Read a whole (small) capture: its batches and its statistics."""
    reader = CaptureReader(path, batch_packets=batch_packets)
    batches = list(reader)
    return batches, reader.stats
