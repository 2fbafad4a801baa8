"""Demo generator, applications: domain profiles, hosts, benign services and attack families.

Every size, delay and count is a draw (mostly log-normal, see :func:`lognormal`) whose range
overlaps the benign ones in part, so that no attack family is separable by a constant. The
parameters of each family are documented on its method.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass, field

from nidsflow.demo.tcp import OS_TCP, Session, TcpConn, lognormal, lognormal_int, syn_options
from nidsflow.demo.wire import ACK, RST, SYN, TCP, UDP

BENIGN = "BENIGN"
#: Attack families and their CIC-style label strings.
ATTACK_FAMILIES = ("SYN Flood", "PortScan", "SSH-Patator", "FTP-Patator", "Slow HTTP DoS", "UDP Flood",
                   "C2 Beaconing", "Web Attack - Oversized")
BENIGN_KINDS = ("web", "dns", "ntp", "ssh", "bulk", "long")


@dataclass(frozen=True)
class DomainProfile:
    """What makes one demo domain differ from another (network path, stacks, services, clock)."""

    name: str
    epoch: int                 # capture start, UTC seconds since 1970
    utc_offset_s: int          # label-CSV local clock minus capture (UTC) clock
    lan: str                   # client LAN prefix, e.g. "192.168.10.0/24"
    rtt_median_s: float        # WAN round-trip time (log-normal per server, sigma 0.5)
    lan_rtt_s: float           # round-trip time to servers on the LAN
    mtu: int                   # link MTU; MSS = MTU - 40
    bandwidth: float           # bottleneck bit rate (segment spacing inside a burst)
    syn_win: dict              # SYN window per OS (bytes)
    os_mix: dict               # OS shares of the hosts
    service_mix: dict          # benign session shares per kind
    attack_mix: dict           # attack session shares per family
    resp_median: int           # web response size median (bytes)
    think_median_s: float      # web think time between requests on a keep-alive connection
    bulk_median: int           # bulk transfer size median (bytes)
    retx_p: float              # probability a data segment is retransmitted
    vlan_share: float = 0.0    # share of clients whose traffic carries an 802.1Q tag
    n_clients: int = 80
    n_external: int = 160
    timestamp_format: str = "%d/%m/%Y %H:%M:%S"
    capture_format: str = "pcap"   # "pcap" (classic, microseconds) or "pcapng"

    @property
    def mss(self) -> int:
        return self.mtu - 40


def _attack_mix(**over) -> dict:
    mix = {"SYN Flood": 0.2, "PortScan": 0.24, "SSH-Patator": 0.1, "FTP-Patator": 0.1, "Slow HTTP DoS": 0.07,
           "UDP Flood": 0.09, "C2 Beaconing": 0.1, "Web Attack - Oversized": 0.1}
    mix.update(over)
    return mix


#: The three demo domains. Clock offsets: demo_a UTC-3 h (Atlantic time, as CIC-IDS2017's New
#: Brunswick captures), demo_b UTC+1 h, demo_c UTC+7 h (as HIKARI-2021's Indonesian captures).
PROFILES: dict[str, DomainProfile] = {
    "demo_a": DomainProfile(
        name="demo_a", epoch=1499083200, utc_offset_s=-3 * 3600, lan="192.168.10.0/24",
        rtt_median_s=0.030, lan_rtt_s=0.0004, mtu=1500, bandwidth=100e6,
        syn_win={"linux": 64240, "windows": 64240, "embedded": 8192},
        os_mix={"linux": 0.55, "windows": 0.4, "embedded": 0.05},
        service_mix={"web": 0.56, "dns": 0.2, "ntp": 0.03, "ssh": 0.08, "bulk": 0.1, "long": 0.03},
        attack_mix=_attack_mix(), resp_median=3000, think_median_s=1.5, bulk_median=50_000, retx_p=0.003),
    "demo_b": DomainProfile(
        name="demo_b", epoch=1547280000, utc_offset_s=1 * 3600, lan="10.20.0.0/16",
        rtt_median_s=0.090, lan_rtt_s=0.0008, mtu=1400, bandwidth=20e6,
        syn_win={"linux": 29200, "windows": 64240, "embedded": 5840},
        os_mix={"linux": 0.75, "windows": 0.2, "embedded": 0.05},
        service_mix={"web": 0.44, "dns": 0.24, "ntp": 0.03, "ssh": 0.11, "bulk": 0.13, "long": 0.05},
        attack_mix=_attack_mix(**{"SSH-Patator": 0.14, "PortScan": 0.2}), resp_median=2200, think_median_s=3.0,
        bulk_median=30_000, retx_p=0.008),
    "demo_c": DomainProfile(
        name="demo_c", epoch=1614556800, utc_offset_s=7 * 3600, lan="172.16.0.0/16",
        rtt_median_s=0.006, lan_rtt_s=0.0002, mtu=1280, bandwidth=1e9,
        syn_win={"linux": 64240, "windows": 8192, "embedded": 2920},
        os_mix={"linux": 0.25, "windows": 0.35, "embedded": 0.4},
        service_mix={"web": 0.5, "dns": 0.3, "ntp": 0.06, "ssh": 0.04, "bulk": 0.06, "long": 0.04},
        attack_mix=_attack_mix(**{"UDP Flood": 0.12, "C2 Beaconing": 0.12, "SYN Flood": 0.16}),
        resp_median=4000, think_median_s=0.8, bulk_median=60_000, retx_p=0.002, vlan_share=0.5,
        capture_format="pcapng"),
}


def _ip(s: str) -> int:
    return struct.unpack("!I", bytes(int(x) for x in s.split(".")))[0]


def _weighted(rnd: random.Random, mix: dict):
    keys = list(mix)
    return rnd.choices(keys, weights=[mix[k] for k in keys])[0]


def allocate(total: int, mix: dict, minimum: int) -> dict:
    """Split ``total`` sessions over the keys of ``mix`` proportionally, each getting at least ``minimum``."""
    weight = sum(mix.values())
    counts = {k: max(minimum, int(round(total * w / weight))) for k, w in mix.items()}
    return counts


@dataclass
class Traffic:
    """Everything generated for one domain: packet records (unsorted) and the sessions."""

    profile: DomainProfile
    records: list = field(default_factory=list)
    sessions: list = field(default_factory=list)


class DomainBuilder:
    """Generates one domain's sessions into packet records (see nidsflow.demo.wire.R_* for the record layout)."""

    def __init__(self, profile: DomainProfile, seed: int, duration_s: float):
        self.p = profile
        self.duration = float(duration_s)
        self.rnd = random.Random(f"nidsflow-demo/{seed}/{profile.name}")
        self.traffic = Traffic(profile)
        self._order = 0
        self._used: set = set()
        self._port_next: dict[int, int] = {}
        self._os: dict[int, str] = {}
        self._hops: dict[int, int] = {}
        self._srv_mss: dict[int, int] = {}
        self._srv_rtt: dict[int, float] = {}
        net, bits = profile.lan.split("/")
        self.lan_net = _ip(net)
        self.lan_mask = (0xFFFFFFFF << (32 - int(bits))) & 0xFFFFFFFF
        base = self.lan_net + (0 if int(bits) >= 24 else 256)
        self.clients = [base + 100 + i for i in range(profile.n_clients)]
        self.srv = {"dns": base + 3, "web": base + 50, "ssh": base + 51, "ftp": base + 52, "files": base + 53,
                    "mqtt": base + 54}
        for ip in self.clients:
            self._os[ip] = _weighted(self.rnd, profile.os_mix)
        for name, ip in self.srv.items():
            self._os[ip] = "linux" if name != "files" else "windows"
        self.external = [self.public_ip() for _ in range(profile.n_external)]
        self.ext_dns = [_ip("8.8.8.8"), _ip("1.1.1.1")]
        self.ext_ntp = [self.public_ip() for _ in range(4)]

    # ------------------------------------------------------------ hosts

    def is_internal(self, ip: int) -> bool:
        return (ip & self.lan_mask) == self.lan_net

    def public_ip(self) -> int:
        """A random routable unicast IPv4 address outside private, loopback, CGN and multicast space."""
        while True:
            ip = self.rnd.getrandbits(32)
            a, b2 = ip >> 24, (ip >> 16) & 255
            if a in (0, 10, 127) or a >= 224 or (a == 172 and 16 <= b2 < 32) or (a == 192 and b2 == 168) \
                    or (a == 169 and b2 == 254) or (a == 100 and 64 <= b2 < 128) or self.is_internal(ip):
                continue
            return ip

    def host_os(self, ip: int) -> str:
        os_name = self._os.get(ip)
        if os_name is None:
            os_name = _weighted(self.rnd, {"linux": 0.6, "windows": 0.3, "embedded": 0.1})
            self._os[ip] = os_name
        return os_name

    def observed_ttl(self, ip: int) -> int:
        """Initial TTL of the host's OS minus its hop count to the capture point (0 on the LAN)."""
        hops = self._hops.get(ip)
        if hops is None:
            hops = 0 if self.is_internal(ip) else self.rnd.randint(6, 24)
            self._hops[ip] = hops
        return OS_TCP[self.host_os(ip)]["ttl"] - hops

    def syn_window(self, os_name: str) -> int:
        return self.p.syn_win[os_name]

    def server_mss(self, ip: int) -> int:
        mss = self._srv_mss.get(ip)
        if mss is None:
            mss = self.p.mss if self.is_internal(ip) else self.rnd.choice((1460, 1452, 1440, 1400, 1380, 1360))
            self._srv_mss[ip] = mss
        return mss

    def rtt_to(self, ip: int) -> float:
        rtt = self._srv_rtt.get(ip)
        if rtt is None:
            rtt = self.p.lan_rtt_s * (0.6 + 0.8 * self.rnd.random()) if self.is_internal(ip) else \
                lognormal(self.rnd, self.p.rtt_median_s, 0.5, 0.001, 1.0)
            self._srv_rtt[ip] = rtt
        return rtt

    def vlan_of(self, ip: int) -> int:
        """802.1Q VLAN id of a client's traffic (0: untagged); only domains with vlan_share > 0 tag."""
        if self.p.vlan_share <= 0 or not self.is_internal(ip):
            return 0
        return 10 if (ip * 2654435761 >> 7) % 1000 < self.p.vlan_share * 1000 else 0

    # ------------------------------------------------------------ records and sessions

    def add(self, t, src, dst, sport, dport, proto, flags, seq, ack, win, plen, opt, vlan, ttl, sid) -> None:
        self._order += 1
        self.traffic.records.append((int(round(t * 1e6)), self._order, src, dst, sport, dport, proto, flags,
                                     seq, ack, win, plen, opt, vlan, ttl, sid))

    def ephemeral_port(self, ip: int, dst: int, dport: int, proto: int) -> int:
        """Next free ephemeral port of a host; a 5-tuple is never reused within a domain."""
        port = self._port_next.get(ip)
        if port is None:
            port = self.rnd.randint(32768, 60999)
        while True:
            port = port + 1 if port < 60999 else 32768
            key = (proto, ip, port, dst, dport)
            if key not in self._used:
                self._used.add(key)
                self._port_next[ip] = port
                return port

    def claim(self, proto: int, src: int, sport: int, dst: int, dport: int) -> bool:
        key = (proto, src, sport, dst, dport)
        if key in self._used:
            return False
        self._used.add(key)
        return True

    def session(self, label: str, kind: str, proto: int, client: int, server: int, dport: int, t: float,
                sport: int | None = None) -> Session:
        if sport is None:
            sport = self.ephemeral_port(client, server, dport, proto)
        s = Session(len(self.traffic.sessions), label, kind, proto, client, sport, server, dport, t)
        self.traffic.sessions.append(s)
        return s

    def tcp(self, label: str, kind: str, client: int, server: int, dport: int, t: float,
            sport: int | None = None) -> TcpConn:
        s = self.session(label, kind, TCP, client, server, dport, t, sport)
        return TcpConn(self, s, self.rtt_to(server), self.vlan_of(client))

    def udp(self, t: float, s: Session, from_client: bool, plen: int) -> None:
        src, dst, sp, dp = (s.client, s.server, s.sport, s.dport) if from_client else \
            (s.server, s.client, s.dport, s.sport)
        self.add(t, src, dst, sp, dp, UDP, 0, 0, 0, 0, plen, None, self.vlan_of(s.client), self.observed_ttl(src), s.sid)

    def ln(self, median, sigma, lo, hi) -> float:
        return lognormal(self.rnd, median, sigma, lo, hi)

    def lni(self, median, sigma, lo, hi) -> int:
        return lognormal_int(self.rnd, median, sigma, lo, hi)

    # ------------------------------------------------------------ benign services

    def benign(self, kind: str, t: float) -> None:
        client = self.rnd.choice(self.clients)
        getattr(self, "benign_" + kind)(t, client)

    def benign_dns(self, t: float, client: int) -> float:
        """DNS over UDP: query 17-300 B (median 38), answer 30-MTU B (median 130) after the resolver's
        delay; 3 % of queries get no answer, half of those are retried on the same socket."""
        r = self.rnd
        resolver = self.srv["dns"] if r.random() < 0.85 else r.choice(self.ext_dns)
        s = self.session(BENIGN, "dns", UDP, client, resolver, 53, t)
        q = self.lni(38, 0.35, 17, 300)
        self.udp(t, s, True, q)
        if r.random() < 0.03:
            if r.random() < 0.5:
                return t
            t += self.ln(2.5, 0.4, 1.0, 10.0)
            self.udp(t, s, True, q)
        t += self.rtt_to(resolver) + self.ln(0.012, 1.2, 0.0002, 1.5)
        self.udp(t, s, False, self.lni(max(130, q + 16), 0.6, q + 12, self.p.mtu - 28))
        return t

    def benign_ntp(self, t: float, client: int) -> float:
        """NTP client poll: 48-byte request and reply (sometimes with a 20-byte authenticator)."""
        server = self.rnd.choice(self.ext_ntp)
        s = self.session(BENIGN, "ntp", UDP, client, server, 123, t)
        size = 48 if self.rnd.random() < 0.8 else 68
        self.udp(t, s, True, size)
        self.udp(t + self.rtt_to(server) + self.ln(0.0005, 0.5, 0.0001, 0.01), s, False, size)
        return t

    def _tls_handshake(self, c: TcpConn) -> None:
        self.tls_like(c, hello=(517, 0.35), cert=(3200, 0.6))

    def tls_like(self, c: TcpConn, hello, cert) -> None:
        c.send(True, self.lni(hello[0], hello[1], 180, 1800))
        c.send(False, self.lni(cert[0], cert[1], 90, 9000), think=self.ln(0.002, 1.0, 0.0001, 0.2))
        c.send(True, self.lni(120, 0.5, 40, 600))
        c.send(False, self.lni(250, 0.6, 40, 1500), think=self.ln(0.001, 1.0, 0.0001, 0.1))

    def benign_web(self, t: float, client: int) -> None:
        """HTTP(S) keep-alive session: optional DNS lookup first, TLS-like handshake on 443/8443,
        1 + floor(Exp(mean 1.3)) requests (log-normal 60 B-16 kB, median 420) each answered by a
        log-normal response (median per domain, sigma 1.2, up to 300 kB) after a server delay;
        think times log-normal (domain median, sigma 1.2, below the idle timeout); closed by the
        client (FIN), by the server after its keep-alive timeout (FIN) or by RST. 3 % first try a
        port that answers RST (a benign refused connection)."""
        r, p = self.rnd, self.p
        internal = r.random() < 0.3
        server = self.srv["web"] if internal else r.choice(self.external)
        port = _weighted(r, {443: 0.62, 80: 0.32, 8080: 0.03, 8443: 0.03})
        if not internal and r.random() < 0.7:
            t = self.benign_dns(t, client) + self.ln(0.001, 1.0, 0.0001, 0.05)
        if r.random() < 0.03:  # a refused first attempt (closed port or a dead service), then the real one
            dead = r.choice((8080, 8443, 8000, 3000))
            sp = self.ephemeral_port(client, server, dead, TCP)
            _, t = self._syn_probe(t, BENIGN, client, server, dead, sp, self.host_os(client), "rst",
                                   self.vlan_of(client), kind="web")
            t += self.ln(0.01, 1.0, 0.0005, 1.0)
        c = self.tcp(BENIGN, "web", client, server, port, t)
        c.handshake(t)
        if port in (443, 8443):
            self._tls_handshake(c)
        nreq = 1 + int(r.expovariate(1 / 1.3))
        for i in range(min(nreq, 30)):
            think = 0.0 if i == 0 else self.ln(p.think_median_s, 1.2, 0.02, 100.0)
            c.send(True, self.lni(420, 0.6, 60, 16000), think=think)
            c.send(False, self.lni(p.resp_median, 1.2, 80, 300_000), think=self.ln(0.02, 1.0, 0.0005, 2.0))
        u = r.random()
        if u < 0.5:
            c.close("cfin", self.ln(0.5, 1.5, 0.001, 60))
        elif u < 0.85:
            c.close("sfin", r.choice((5.0, 15.0, 30.0, 60.0)) * (0.98 + 0.04 * r.random()))
        elif u < 0.95:
            c.close("crst", self.ln(0.2, 1.5, 0.001, 30))
        else:
            c.close("srst", self.ln(5, 1.0, 0.01, 60))

    def _ssh_setup(self, c: TcpConn) -> None:
        """SSH transport set-up: banners, KEXINIT, key exchange, NEWKEYS (sizes log-normal)."""
        c.send(False, self.lni(32, 0.2, 20, 60), think=self.ln(0.003, 0.8, 0.0002, 0.2))  # server banner
        c.send(True, self.lni(30, 0.2, 20, 60))                                              # client banner
        c.send(True, self.lni(1500, 0.15, 800, 2400), think=self.ln(0.001, 0.5, 0.0001, 0.05))  # KEXINIT
        c.send(False, self.lni(1080, 0.15, 600, 2000), think=self.ln(0.002, 0.8, 0.0001, 0.1))
        c.send(True, self.lni(48, 0.5, 40, 1300))                                            # KEX_ECDH_INIT
        c.send(False, self.lni(700, 0.4, 300, 1600), think=self.ln(0.004, 0.8, 0.0002, 0.2))  # ECDH_REPLY
        c.send(True, self.lni(16, 0.1, 12, 64))                                              # NEWKEYS

    def benign_ssh(self, t: float, client: int) -> None:
        """Interactive SSH: set-up, 1-3 auth messages, then keystrokes (36-100 B, log-normal inter-key
        times, median 0.18 s, occasional pauses) echoed by the server, now and then a burst of command
        output (log-normal, median 800 B). 8 % of sessions pause longer than the idle timeout
        (deliberate: the flow splits in two, both BENIGN)."""
        r = self.rnd
        server = self.srv["ssh"] if r.random() < 0.5 else r.choice(self.external)
        c = self.tcp(BENIGN, "ssh", client, server, 22, t)
        c.handshake(t)
        self._ssh_setup(c)
        for _ in range(r.randint(1, 3)):
            c.send(True, self.lni(90, 0.6, 36, 600), think=self.ln(0.01, 1.0, 0.001, 2))
            c.send(False, self.lni(60, 0.5, 28, 400), think=self.ln(0.01, 1.0, 0.001, 0.5))
        keys = self.lni(35, 0.9, 3, 500)
        split_at = r.randint(1, keys) if r.random() < 0.08 else -1
        for k in range(keys):
            if k == split_at:
                think = r.uniform(125.0, 300.0)
            elif r.random() < 0.04:
                think = self.ln(8.0, 1.0, 1.0, 100.0)
            else:
                think = self.ln(0.18, 0.8, 0.02, 5.0)
            size = r.choice((36, 36, 36, 52, 68, 100))
            c.send(True, size, think=think)
            c.send(False, size if r.random() < 0.8 else self.lni(800, 1.5, 50, 200_000),
                   think=self.ln(0.002, 1.0, 0.0001, 0.3))
        c.close("cfin" if r.random() < 0.9 else "srst", self.ln(0.5, 1.0, 0.01, 20))

    def benign_bulk(self, t: float, client: int) -> None:
        """Bulk transfer (download 75 %, upload 25 %) over HTTPS, SMB or rsync: a small request,
        then log-normal(domain median, sigma 1.0, 8 kB-1.5 MB) bytes in MSS segments, window-limited
        bursts, ACK every second segment."""
        r = self.rnd
        port = _weighted(r, {443: 0.5, 445: 0.3, 873: 0.2})
        server = r.choice(self.external) if port == 443 else self.srv["files"]
        if port == 443 and r.random() < 0.7:
            t = self.benign_dns(t, client) + self.ln(0.001, 1.0, 0.0001, 0.05)
        c = self.tcp(BENIGN, "bulk", client, server, port, t)
        c.handshake(t)
        if port == 443:
            self._tls_handshake(c)
        size = self.lni(self.p.bulk_median, 1.0, 8_000, 1_500_000)
        if r.random() < 0.25:
            c.send(True, self.lni(300, 0.6, 60, 4000))
            c.send(False, self.lni(120, 0.5, 30, 1000), think=self.ln(0.005, 1.0, 0.0002, 0.5))
            c.send(True, size)
            c.send(False, self.lni(80, 0.5, 20, 600), think=self.ln(0.01, 1.0, 0.0002, 0.5))
        else:
            c.send(True, self.lni(350, 0.6, 60, 4000))
            c.send(False, size, think=self.ln(0.01, 1.0, 0.0002, 1.0))
        c.close("cfin" if r.random() < 0.7 else "sfin", self.ln(0.05, 1.5, 0.001, 20))

    def benign_long(self, t: float, client: int) -> None:
        """Long-lived connection (IMAP IDLE, MQTT, push channels): small keep-alive exchanges every
        20-110 s (always below the 120 s idle timeout) for 5-58 minutes; those longer than the
        1800 s active timeout are split by it into several flows (all BENIGN)."""
        r = self.rnd
        port = _weighted(r, {993: 0.35, 1883: 0.25, 5223: 0.2, 443: 0.2})
        server = self.srv["mqtt"] if port == 1883 else r.choice(self.external)
        c = self.tcp(BENIGN, "long", client, server, port, t)
        c.handshake(t)
        if port in (993, 5223, 443):
            self._tls_handshake(c)
        length = r.uniform(300.0, 3500.0)
        end = min(t + length, self.duration - 1.0)
        while c.t < end:
            interval = r.uniform(20.0, 110.0)
            if r.random() < 0.25:
                c.send(False, self.lni(400, 1.2, 20, 30_000), think=interval)
                c.send(True, self.lni(40, 0.8, 2, 400), think=self.ln(0.01, 1.0, 0.001, 1.0))
            else:
                c.send(True, self.lni(40, 0.8, 2, 400), think=interval)
                c.send(False, self.lni(40, 0.8, 2, 600), think=self.ln(0.01, 1.0, 0.001, 1.0))
        if t + length >= self.duration - 1.0:
            c.close("open")
        else:
            c.close("cfin" if r.random() < 0.6 else "srst", self.ln(1.0, 1.0, 0.01, 30))

    # ------------------------------------------------------------ attack families

    def campaigns(self, n: int, min_len: float, max_len: float) -> list[tuple[float, float, int]]:
        """Split ``n`` attack sessions over 1-3 campaigns: (start, length, sessions) each."""
        k = max(1, min(3, n // 60 + 1))
        out = []
        left = n
        for i in range(k):
            m = left if i == k - 1 else max(1, int(n / k * (0.7 + 0.6 * self.rnd.random())))
            m = min(m, left)
            left -= m
            length = self.rnd.uniform(min_len, max_len)
            start = self.rnd.uniform(0.02, 0.95) * max(1.0, self.duration - length)
            out.append((start, length, m))
        return [c for c in out if c[2] > 0]

    def _syn_probe(self, t, label, attacker, target, dport, sport, os_name, answer, vlan=0,
                   kind: str | None = None) -> tuple[Session, float]:
        """A lone SYN (scan probe or flood packet) and the target's answer: ``rst`` (RST-ACK),
        ``synack`` (SYN-ACK, then the prober's RST), ``synack_retx`` (SYN-ACK resent 1 s and 3 s
        later, nobody answering), ``retry`` (no answer, the SYN resent once) or ``none``."""
        r = self.rnd
        s = self.session(label, kind or label, TCP, attacker, target, dport, t, sport=sport)
        isn = r.getrandbits(32)
        win = r.choice((1024, 2048, 3072, 4096, 5840, 8192, 29200, 64240, 65535))
        ttl = OS_TCP[os_name]["ttl"] - (0 if self.is_internal(attacker) else r.randint(4, 30))
        ttl = max(1, ttl if r.random() < 0.8 else r.randint(30, 250))
        opts = syn_options(os_name, r.choice((1460, 1460, 1400, 1360, 536, self.p.mss)), int(t * 1000) & 0xFFFFFFF, 0)
        self.add(t, attacker, target, sport, dport, TCP, SYN, isn, 0, win, 0, opts, vlan, ttl, s.sid)
        rtt = self.rtt_to(attacker) if not self.is_internal(attacker) else self.p.lan_rtt_s
        t_ans = t + self.rtt_to(target) * (0.9 + 0.2 * r.random()) + self.ln(0.0002, 1.0, 0.00002, 0.05)
        tttl = self.observed_ttl(target)
        if answer == "rst":
            self.add(t_ans, target, attacker, dport, sport, TCP, RST | ACK, 0, (isn + 1) & 0xFFFFFFFF, 0, 0, None,
                     vlan, tttl, s.sid)
        elif answer.startswith("synack"):
            sisn = r.getrandbits(32)
            sopts = syn_options(self.host_os(target), self.p.mss, int(t_ans * 1000) & 0xFFFFFFF, 0)
            swin = self.syn_window(self.host_os(target))
            self.add(t_ans, target, attacker, dport, sport, TCP, SYN | ACK, sisn, (isn + 1) & 0xFFFFFFFF, swin, 0,
                     sopts, vlan, tttl, s.sid)
            if answer == "synack":
                self.add(t_ans + rtt * (0.9 + 0.2 * r.random()), attacker, target, sport, dport, TCP, RST,
                         (isn + 1) & 0xFFFFFFFF, 0, 0, 0, None, vlan, ttl, s.sid)
            else:
                for back in (1.0, 3.0)[: r.randint(1, 2)]:
                    self.add(t_ans + back * (1 + 0.01 * r.random()), target, attacker, dport, sport, TCP, SYN | ACK,
                             sisn, (isn + 1) & 0xFFFFFFFF, swin, 0, sopts, vlan, tttl, s.sid)
        elif answer == "retry":  # no answer: the prober resends the probe once (same socket)
            self.add(t + self.ln(1.0, 0.3, 0.3, 3.0), attacker, target, sport, dport, TCP, SYN, isn, 0, win, 0, opts,
                     vlan, ttl, s.sid)
        return s, t_ans

    def attack_syn_flood(self, n: int) -> None:
        """SYN flood on a LAN web server from spoofed random sources and ports: one SYN per flow with
        OS-typical options and windows drawn like benign SYNs; the server answers 25 % (SYN-ACK, of
        which 40 % are reset by the real owner of the spoofed address and the rest are resent)."""
        r = self.rnd
        for start, length, m in self.campaigns(n, 20.0, 300.0):
            target, dport = self.srv["web"], r.choice((80, 443))
            t = start
            for _ in range(m):
                t += r.expovariate(m / length)
                while True:
                    src, sport = self.public_ip(), r.randint(1024, 65535)
                    if self.claim(TCP, src, sport, target, dport):
                        break
                u = r.random()
                answer = "none" if u < 0.75 else ("synack" if u < 0.85 else "synack_retx")
                self._syn_probe(t, "SYN Flood", src, target, dport, sport, _weighted(r, self.p.os_mix), answer)

    def attack_portscan(self, n: int) -> None:
        """Port scan (SYN scan and connect scan) of LAN hosts: common and random ports, the prober's
        source port fixed per scan (as nmap), inter-probe gaps log-normal from milliseconds (fast
        scan) to seconds (slow scan); open ports answer SYN-ACK, closed ones RST-ACK, filtered hosts
        nothing. Connect scans complete the handshake and reset it."""
        r = self.rnd
        common = [21, 22, 23, 25, 53, 80, 110, 135, 139, 143, 443, 445, 993, 995, 1723, 3306, 3389, 5900, 8080]
        open_ports = {self.srv["web"]: {80, 443}, self.srv["ssh"]: {22}, self.srv["ftp"]: {21},
                      self.srv["files"]: {445, 139, 873}, self.srv["mqtt"]: {1883}, self.srv["dns"]: {53}}
        for start, length, m in self.campaigns(n, 10.0, 600.0):
            internal_scanner = r.random() < 0.3
            attacker = r.choice(self.clients) if internal_scanner else self.public_ip()
            vlan = self.vlan_of(attacker)
            targets = r.sample(list(self.srv.values()) + r.sample(self.clients, 3), r.randint(1, 4))
            connect = r.random() < 0.3
            filtered = {tgt for tgt in targets if tgt in self.clients and r.random() < 0.5}
            gap_median = length / max(1, m) * (0.5 + r.random())
            os_name = _weighted(r, self.p.os_mix)
            sport = r.randint(32768, 60999)
            t = start
            ports = common + r.sample(range(1, 65536), max(0, m))
            pi = 0
            for _ in range(m):
                t += self.ln(gap_median, 1.0, 0.0001, 60.0)
                tgt = targets[pi % len(targets)]
                port = ports[(pi // len(targets)) % len(ports)]
                pi += 1
                if connect:
                    if port in open_ports.get(tgt, ()):
                        if not self.claim(TCP, attacker, sport + pi % 2000, tgt, port):
                            continue
                        c = self.tcp("PortScan", "PortScan", attacker, tgt, port, t, sport=sport + pi % 2000)
                        c.handshake(t, syn_retx_p=0.0)
                        c.close("crst", self.ln(0.0005, 1.0, 0.00005, 0.05))
                        continue
                    sp = self.ephemeral_port(attacker, tgt, port, TCP)
                else:
                    sp = sport
                    if not self.claim(TCP, attacker, sp, tgt, port):
                        continue
                if tgt in filtered:
                    answer = "retry" if r.random() < 0.5 else "none"
                elif port in open_ports.get(tgt, ()):
                    answer = "synack"
                else:
                    answer = "rst"
                self._syn_probe(t, "PortScan", attacker, tgt, port, sp, os_name, answer, vlan)

    def _guessing(self, n: int, label: str, service: str, port: int, max_threads: int, gap_median_s: float):
        """The connections of a password-guessing family, handshake done: 1-3 campaigns, each from one
        attacker (80 % public, else a LAN client) running 1-``max_threads`` parallel threads, connections
        spread over the campaign plus a log-normal gap (median ``gap_median_s``)."""
        r = self.rnd
        for start, length, m in self.campaigns(n, 60.0, 900.0):
            attacker = self.public_ip() if r.random() < 0.8 else r.choice(self.clients)
            target = self.srv[service]
            threads = r.randint(1, max_threads)
            for i in range(m):
                t = start + length * (i // threads) / max(1, m // threads) + self.ln(gap_median_s, 1.0, 0.001, 20.0)
                c = self.tcp(label, label, attacker, target, port, t)
                c.handshake(t)
                yield c

    def attack_ssh_patator(self, n: int) -> None:
        """SSH password guessing: repeated complete connections (handshake, SSH set-up as benign,
        1-4 password attempts of log-normal size, failures answered after the server's delay,
        server disconnect), several in parallel, gaps log-normal (median 0.6 s)."""
        r = self.rnd
        for c in self._guessing(n, "SSH-Patator", "ssh", 22, 6, 0.6):
            self._ssh_setup(c)
            for _ in range(r.randint(1, 4)):
                c.send(True, self.lni(100, 0.5, 36, 400), think=self.ln(0.05, 1.0, 0.001, 2.0))
                c.send(False, self.lni(52, 0.4, 28, 200), think=self.ln(1.0, 0.8, 0.05, 5.0))
            c.close("sfin" if r.random() < 0.8 else "crst", self.ln(0.01, 1.0, 0.0005, 1.0))

    def attack_ftp_patator(self, n: int) -> None:
        """FTP password guessing: banner, USER/331, PASS/530 (server delay 0.5-3 s) repeated 1-3
        times, then QUIT/221 or a reset; sizes log-normal around the protocol's usual lengths."""
        r = self.rnd
        for c in self._guessing(n, "FTP-Patator", "ftp", 21, 4, 0.5):
            c.send(False, self.lni(45, 0.5, 14, 200), think=self.ln(0.002, 1.0, 0.0001, 0.3))
            for _ in range(r.randint(1, 3)):
                c.send(True, self.lni(14, 0.3, 7, 60), think=self.ln(0.01, 1.0, 0.0005, 1.0))
                c.send(False, self.lni(34, 0.3, 20, 80), think=self.ln(0.001, 1.0, 0.0001, 0.1))
                c.send(True, self.lni(15, 0.4, 7, 60), think=self.ln(0.01, 1.0, 0.0005, 1.0))
                c.send(False, self.lni(22, 0.3, 14, 60), think=self.ln(1.2, 0.5, 0.3, 4.0))
            if r.random() < 0.6:
                c.send(True, 6, think=self.ln(0.01, 1.0, 0.0005, 0.5))
                c.send(False, self.lni(14, 0.3, 10, 40))
                c.close("sfin", 0.0005)
            else:
                c.close("crst", self.ln(0.01, 1.0, 0.0005, 0.5))

    def attack_slow_http(self, n: int) -> None:
        """Slowloris: many connections to the LAN web server, each sending a partial request
        (log-normal 60-400 B) and then one more header line (5-60 B) every log-normal(median 10 s,
        below the idle timeout) seconds until the server times the request out (60-400 s) and closes
        it with FIN or RST (or, 25 %, the attacker gives up with RST)."""
        r = self.rnd
        for start, length, m in self.campaigns(n, 30.0, 300.0):
            attacker = self.public_ip()
            target, port = self.srv["web"], r.choice((80, 80, 443))
            gap_median = self.ln(10.0, 0.4, 3.0, 40.0)
            for i in range(m):
                t = start + length * i / max(1, m) + self.ln(0.2, 1.0, 0.001, 5.0)
                c = self.tcp("Slow HTTP DoS", "Slow HTTP DoS", attacker, target, port, t)
                c.handshake(t)
                c.send(True, self.lni(180, 0.5, 60, 400))
                lifetime = r.uniform(60.0, 400.0)
                while c.t - t < lifetime:
                    c.send(True, self.lni(20, 0.6, 5, 60), think=self.ln(gap_median, 0.5, 0.5, 100.0))
                if r.random() < 0.75:
                    c.close("sfin" if r.random() < 0.6 else "srst", self.ln(0.5, 1.0, 0.01, 10))
                else:
                    c.close("crst", self.ln(0.5, 1.0, 0.01, 10))

    def attack_udp_flood(self, n: int) -> None:
        """UDP flood on LAN hosts: each flow one (source port, target port) pair carrying
        log-normal(median 12, up to 300) datagrams of log-normal size (median 200 B, 1 B-MTU),
        gaps exponential with a log-normal mean (median 5 ms); DNS targets answer 20 % of them."""
        r = self.rnd
        for start, length, m in self.campaigns(n, 20.0, 400.0):
            attacker = self.public_ip() if r.random() < 0.7 else r.choice(self.clients)
            target = r.choice((self.srv["dns"], self.srv["web"], self.srv["files"]))
            size_median = self.ln(200.0, 0.8, 20.0, 1000.0)
            for i in range(m):
                t = start + length * i / max(1, m) + self.ln(0.3, 1.0, 0.001, 10.0)
                dport = 53 if target == self.srv["dns"] and r.random() < 0.7 else r.randint(1, 65535)
                s = self.session("UDP Flood", "UDP Flood", UDP, attacker, target, dport, t)
                gap = self.ln(0.005, 1.2, 0.00005, 2.0)
                for _ in range(self.lni(12, 1.0, 1, 300)):
                    self.udp(t, s, True, self.lni(size_median, 0.9, 1, self.p.mtu - 28))
                    if dport == 53 and r.random() < 0.2:
                        self.udp(t + self.p.lan_rtt_s, s, False, self.lni(150, 0.6, 30, self.p.mtu - 28))
                    t += r.expovariate(1 / gap)

    def attack_c2(self, n: int) -> None:
        """C2 beaconing from infected LAN clients to an external server (443/8443/80): one short
        TLS-like connection per beacon at a host-specific period (30-300 s) with 5-30 % jitter;
        check-in and answer sizes log-normal overlapping web traffic, now and then a task of a few kB."""
        r = self.rnd
        left = n
        while left > 0:
            client = r.choice(self.clients)
            server = self.public_ip()
            port = _weighted(r, {443: 0.7, 8443: 0.15, 80: 0.15})
            period = r.uniform(30.0, 300.0)
            jitter = r.uniform(0.05, 0.3)
            t = r.uniform(0.0, min(self.duration * 0.5, period * 3))
            while t < self.duration - 5.0 and left > 0:
                c = self.tcp("C2 Beaconing", "C2 Beaconing", client, server, port, t)
                c.handshake(t)
                if port != 80:
                    self.tls_like(c, hello=(300, 0.3), cert=(1500, 0.5))
                c.send(True, self.lni(250, 0.6, 40, 3000))
                c.send(False, self.lni(120, 1.0, 20, 20_000) if r.random() < 0.9 else self.lni(4000, 1.0, 500, 60_000),
                       think=self.ln(0.05, 1.0, 0.001, 2.0))
                c.close("cfin" if r.random() < 0.85 else "crst", self.ln(0.01, 1.0, 0.0005, 1.0))
                left -= 1
                t += period * (1.0 + jitter * (2 * r.random() - 1))

    def attack_web_oversized(self, n: int) -> None:
        """Web attack with oversized requests (huge headers/URLs or bodies: log-normal median 12 kB,
        sigma 0.9, 1.5-200 kB) to the LAN web server, 1-4 per connection; the server answers with a
        small error (median 300 B) or a normal page."""
        r = self.rnd
        for start, length, m in self.campaigns(n, 60.0, 900.0):
            attacker = self.public_ip()
            target, port = self.srv["web"], r.choice((80, 443))
            for i in range(m):
                t = start + length * i / max(1, m) + self.ln(0.5, 1.0, 0.001, 20.0)
                c = self.tcp("Web Attack - Oversized", "Web Attack - Oversized", attacker, target, port, t)
                c.handshake(t)
                if port == 443:
                    self._tls_handshake(c)
                for j in range(r.randint(1, 4)):
                    c.send(True, self.lni(12_000, 0.9, 1500, 200_000),
                           think=0.0 if j == 0 else self.ln(0.5, 1.0, 0.01, 30))
                    c.send(False, self.lni(300, 0.6, 80, 2000) if r.random() < 0.7 else self.lni(3000, 1.0, 100, 60_000),
                           think=self.ln(0.01, 1.0, 0.0005, 1.0))
                c.close("sfin" if r.random() < 0.5 else "cfin", self.ln(0.2, 1.0, 0.001, 10))

    ATTACKS = {
        "SYN Flood": "attack_syn_flood", "PortScan": "attack_portscan", "SSH-Patator": "attack_ssh_patator",
        "FTP-Patator": "attack_ftp_patator", "Slow HTTP DoS": "attack_slow_http", "UDP Flood": "attack_udp_flood",
        "C2 Beaconing": "attack_c2", "Web Attack - Oversized": "attack_web_oversized",
    }

    # ------------------------------------------------------------ the whole domain

    def build(self, benign_sessions: int, attack_sessions: int) -> Traffic:
        """Generate the domain: benign sessions at uniform start times, attack families in campaigns."""
        r = self.rnd
        kinds = allocate(benign_sessions, self.p.service_mix, 1)
        for kind in BENIGN_KINDS:
            for _ in range(kinds.get(kind, 0)):
                horizon = 0.6 if kind == "long" else 0.98
                self.benign(kind, r.uniform(0.0, self.duration * horizon))
        if attack_sessions > 0:
            counts = allocate(attack_sessions, self.p.attack_mix, 3)
            for family in ATTACK_FAMILIES:
                getattr(self, self.ATTACKS[family])(counts[family])
        return self.traffic


__all__ = ["ATTACK_FAMILIES", "BENIGN", "BENIGN_KINDS", "DomainBuilder", "DomainProfile", "PROFILES", "Traffic",
           "allocate"]
