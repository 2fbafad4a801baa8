"""Demo generator, transport layer: a TCP connection model and the packet-record builder.

Time model: the capture point sits on the client LAN (as in the CIC captures). A packet from the
client is seen at t; the server's reaction is seen one round-trip later (t + RTT + server think
time); the client's reaction to a server packet is seen after a small host delay. Servers on the
LAN have a LAN round-trip instead of the domain's WAN RTT.

TCP model (RFC 793 / 5681 / 7323 in spirit, not a full stack): three-way handshake with OS-typical
SYN options (MSS = MTU - 40, SACK-permitted, timestamps, window scale); sequence numbers advance by
the payload (+1 for SYN and FIN); every segment after the SYN carries ACK with the peer's next
sequence number; data goes in MSS-sized segments, in bursts limited by min(cwnd, receiver window)
with cwnd doubling per round trip (slow start) and one burst per RTT; the receiver ACKs every
second segment (a lone last segment gets a delayed ACK unless the reply piggybacks it); now and
then a segment is retransmitted (same sequence number, one RTO later); teardown by FIN/ACK
(three- or four-way) or RST.
"""

from __future__ import annotations

import math
import random
import struct
from dataclasses import dataclass

from nidsflow.demo.wire import ACK, FIN, OPT_TS, PSH, RST, SYN, TCP

#: Per-OS TCP behaviour: initial TTL, SYN option layout and window-scale shift (None: no scaling).
OS_TCP = {
    "linux": {"ttl": 64, "opts": "linux", "wscale": 7},
    "windows": {"ttl": 128, "opts": "windows", "wscale": 8},
    "embedded": {"ttl": 255, "opts": "mss", "wscale": None},
}


@dataclass
class Session:
    """One generated conversation (a TCP connection, a UDP exchange or a single probe)."""

    sid: int
    label: str            # CIC label: "BENIGN" or the attack family
    kind: str             # benign service ("web", "dns", ...) or the attack family
    proto: int
    client: int
    sport: int
    server: int
    dport: int
    start_s: float
    complete: bool = False  # True when a full three-way handshake was generated


def syn_options(os_name: str, mss: int, tsval: int, tsecr: int) -> bytes:
    """SYN / SYN-ACK options as the OS lays them out (Linux 20 bytes, Windows 12, embedded MSS only)."""
    style = OS_TCP[os_name]["opts"]
    if style == "linux":  # MSS, SACK_PERM, TS, NOP, WS
        return struct.pack("!BBHBBBBIIBBBB", 2, 4, mss, 4, 2, 8, 10, tsval, tsecr, 1, 3, 3, OS_TCP[os_name]["wscale"])
    if style == "windows":  # MSS, NOP, WS, NOP, NOP, SACK_PERM
        return struct.pack("!BBHBBBBBBBB", 2, 4, mss, 1, 3, 3, OS_TCP[os_name]["wscale"], 1, 1, 4, 2)
    return struct.pack("!BBH", 2, 4, mss)


class TcpConn:
    """A TCP connection between ``client`` and ``server`` that appends packet records to a builder."""

    def __init__(self, b, sess: Session, rtt: float, vlan: int):
        self.b = b
        self.rnd = b.rnd
        self.sess = sess
        self.sid = sess.sid
        self.cli, self.srv, self.sport, self.dport = sess.client, sess.server, sess.sport, sess.dport
        self.rtt = rtt
        self.vlan = vlan
        self.cos = b.host_os(self.cli)
        self.sos = b.host_os(self.srv)
        self.ttl_c = b.observed_ttl(self.cli)
        self.ttl_s = b.observed_ttl(self.srv)
        self.cseq = self.rnd.getrandbits(32)
        self.sseq = self.rnd.getrandbits(32)
        self.c_isn, self.s_isn = self.cseq, self.sseq
        self.mss = b.p.mss
        self.syn_win_c = b.syn_window(self.cos)
        self.syn_win_s = b.syn_window(self.sos)
        ws_c, ws_s = OS_TCP[self.cos]["wscale"], OS_TCP[self.sos]["wscale"]
        scaled = ws_c is not None and ws_s is not None
        self.ws_c = ws_c if scaled else 0
        self.ws_s = ws_s if scaled else 0
        self.ts_ok = OS_TCP[self.cos]["opts"] == "linux" and OS_TCP[self.sos]["opts"] == "linux"
        self.rcvd_c = 0
        self.rcvd_s = 0
        self.cwnd = {True: 10, False: 10}
        self.t = 0.0               # latest time of any packet emitted so far
        self.t_by = {True: 0.0, False: 0.0}  # latest packet time of each side (client: True)
        self.t_last = 0.0          # time of the last data/control packet of the last sender
        self.last_from_client: bool | None = None
        self.pending: tuple[float, bool] | None = None  # delayed ACK: (time, sent by client?)
        self.closed = False

    # ------------------------------------------------------------ primitives

    def cproc(self) -> float:
        """Client host delay as seen at the capture point (30 us .. a few ms)."""
        return 3e-5 + self.rnd.expovariate(1 / 4e-4)

    def rtt_j(self) -> float:
        return self.rtt * (0.85 + 0.3 * self.rnd.random())

    def window(self, client_side: bool) -> int:
        """Advertised window field: the receive buffer (growing with data received, as autotuning
        does) shifted by the negotiated window scale."""
        if client_side:
            buf = self.syn_win_c + min(self.rcvd_c, 3 * self.syn_win_c)
            return min(65535, buf >> self.ws_c)
        buf = self.syn_win_s + min(self.rcvd_s, 3 * self.syn_win_s)
        return min(65535, buf >> self.ws_s)

    def emit(self, t: float, from_client: bool, flags: int, plen: int, opt=None, seq: int | None = None) -> None:
        advance = seq is None
        c = from_client
        own_seq, peer_seq = (self.cseq, self.sseq) if c else (self.sseq, self.cseq)
        if seq is None:
            seq = own_seq
        ack = peer_seq if flags & ACK else 0
        win = (self.syn_win_c if c else self.syn_win_s) if flags & SYN else self.window(c)
        src, dst, sport, dport, ttl = ((self.cli, self.srv, self.sport, self.dport, self.ttl_c) if c
                                       else (self.srv, self.cli, self.dport, self.sport, self.ttl_s))
        if c:  # bytes the other side has received (its advertised window grows with them)
            self.rcvd_s += plen
        else:
            self.rcvd_c += plen
        if opt is None and self.ts_ok and not flags & SYN:
            opt = OPT_TS
        self.b.add(t, src, dst, sport, dport, TCP, flags, seq, ack, min(win, 65535), plen, opt, self.vlan, ttl, self.sid)
        if advance:
            step = plen + (1 if flags & (SYN | FIN) else 0)
            if from_client:
                self.cseq = (self.cseq + step) & 0xFFFFFFFF
            else:
                self.sseq = (self.sseq + step) & 0xFFFFFFFF
        if t > self.t:
            self.t = t
        if t > self.t_by[from_client]:
            self.t_by[from_client] = t

    def _flush_pending(self, next_t: float, next_from_client: bool) -> None:
        """Emit a delayed ACK unless the next segment from the same side comes first (piggyback)."""
        if self.pending is None:
            return
        at, by_client = self.pending
        self.pending = None
        if by_client == next_from_client and next_t <= at:
            return
        self.emit(at, by_client, ACK, 0)

    def start_time(self, from_client: bool, think: float) -> float:
        """When the next message from one side is seen, given who spoke last (see the time model)."""
        if self.last_from_client is None or from_client == self.last_from_client:
            t = self.t_last + think + 1e-5
        else:
            t = self.t_last + (self.cproc() if from_client else self.rtt_j()) + think
        # a side's packets leave in sequence-number order: never before its own latest packet
        return max(t, self.t_by[from_client] + 1e-5)

    # ------------------------------------------------------------ phases

    def handshake(self, t: float, syn_retx_p: float = 0.005) -> float:
        """SYN, SYN-ACK (ack = client ISN + 1), ACK. Returns the time of the final ACK."""
        b = self.b
        tsval = int(t * 1000) + (self.cli & 0xFFFF)
        self.emit(t, True, SYN, 0, opt=syn_options(self.cos, self.mss, tsval, 0))
        if self.rnd.random() < syn_retx_p:  # lost SYN: the client retries after the initial RTO (1 s)
            t += 1.0 + 0.01 * self.rnd.random()
            self.b.add(t, self.cli, self.srv, self.sport, self.dport, TCP, SYN, self.c_isn, 0, self.syn_win_c, 0,
                       syn_options(self.cos, self.mss, tsval + 1000, 0), self.vlan, self.ttl_c, self.sid)
        t2 = t + self.rtt_j()
        self.emit(t2, False, SYN | ACK, 0, opt=syn_options(self.sos, b.server_mss(self.srv), tsval + 7, tsval))
        t3 = t2 + self.cproc()
        self.emit(t3, True, ACK, 0)
        self.t_last, self.last_from_client = t3, True
        self.sess.complete = True
        return t3

    def send(self, from_client: bool, nbytes: int, think: float = 0.0) -> float:
        """One application message of ``nbytes`` from one side. Returns the time of its last segment."""
        rnd = self.rnd
        t = self.start_time(from_client, think)
        self._flush_pending(t, from_client)
        # segment size: the receiver's MSS, less the 12 option bytes when timestamps are on (as Linux does)
        mss = (min(self.mss, self.b.server_mss(self.srv)) if from_client else self.mss) - (12 if self.ts_ok else 0)
        far = not from_client
        recv_buf = (self.syn_win_s + min(self.rcvd_s, 3 * self.syn_win_s)) if from_client else \
            (self.syn_win_c + min(self.rcvd_c, 3 * self.syn_win_c))
        rwnd = max(2, recv_buf // mss)
        cwnd = self.cwnd[from_client]
        ser = mss * 8.0 / self.b.p.bandwidth
        ack_lat = self.cproc if far else self.rtt_j
        retx_p = self.b.p.retx_p
        sent = 0
        last_t = t
        unacked = 0
        while sent < nbytes:
            burst = min(cwnd, rwnd)
            bt = t
            first_ack = None
            k = 0
            while k < burst and sent < nbytes:
                seg = min(mss, nbytes - sent)
                sent += seg
                last = sent >= nbytes
                seq0 = self.cseq if from_client else self.sseq
                flags = ACK | (PSH if last else 0)
                self.emit(bt, from_client, flags, seg)
                last_t = bt
                if rnd.random() < retx_p:  # the segment is resent one RTO later (same sequence number)
                    rto = max(0.2, 3 * self.rtt) * (1 + 0.2 * rnd.random())
                    self.emit(bt + rto, from_client, flags, seg, seq=seq0)
                unacked += 1
                if unacked == 2:
                    at = bt + ack_lat()
                    self.emit(at, not from_client, ACK, 0)
                    first_ack = at if first_ack is None else first_ack
                    unacked = 0
                bt += ser * (0.7 + 0.6 * rnd.random())
                k += 1
            if sent >= nbytes:
                break
            cwnd = min(cwnd * 2, 512)
            t = max(bt, (first_ack if first_ack is not None else bt) + (self.rtt_j() if far else self.cproc()))
        self.cwnd[from_client] = cwnd
        if unacked:
            self.pending = (last_t + ack_lat() + rnd.uniform(0.0, 0.04), not from_client)
        self.t_last, self.last_from_client = last_t, from_client
        return last_t

    def close(self, how: str, think: float = 0.0) -> float:
        """Teardown: ``cfin``/``sfin`` (FIN from client/server; three- or four-way), ``crst``/``srst``,
        or ``open`` (left open at the end of the capture)."""
        if how == "open":
            if self.pending is not None:
                self._flush_pending(self.pending[0] + 1.0, not self.pending[1])
            return self.t
        from_client = how[0] == "c"
        t = max(self.start_time(from_client, think), self.t + 1e-4)
        self._flush_pending(t, from_client)
        t = max(t, self.t + 1e-4)
        if how.endswith("rst"):
            self.emit(t, from_client, RST | ACK, 0)
            self.closed = True
            return t
        peer_react = self.rtt_j if from_client else self.cproc
        self.emit(t, from_client, FIN | ACK, 0)
        t2 = t + peer_react()
        if self.rnd.random() < 0.3:  # four-way: the peer ACKs first, its FIN follows
            self.emit(t2, not from_client, ACK, 0)
            t2 += 1e-4 + self.rnd.expovariate(1 / 0.003)
        self.emit(t2, not from_client, FIN | ACK, 0)
        t3 = t2 + (self.cproc() if from_client else self.rtt_j())
        self.emit(t3, from_client, ACK, 0)
        self.closed = True
        return t3


def lognormal(rnd: random.Random, median: float, sigma: float, lo: float, hi: float) -> float:
    """A log-normal draw exp(N(ln median, sigma^2)) clipped to [lo, hi]."""
    return min(hi, max(lo, median * math.exp(sigma * rnd.gauss(0.0, 1.0))))


def lognormal_int(rnd: random.Random, median: float, sigma: float, lo: int, hi: int) -> int:
    return int(round(lognormal(rnd, median, sigma, lo, hi)))


__all__ = ["OS_TCP", "Session", "TcpConn", "syn_options", "lognormal", "lognormal_int"]
