"""Dataset drivers: the constants of each public dataset, used by one shared extraction library.

A driver says how a dataset's labels come (``kind``):

* ``"csv"``: labelled CICFlowMeter-format flow CSVs joined to the flows of the captures
  (:mod:`nidsflow.capture.labels`): CIC-IDS2017, CIC-DDoS2019, ISCXTor2016, the demo;
* ``"per_file"``: captures sorted by class, a table capture file -> label: CIC-IoT2023, ``per_file``;
* ``"flow_table"``: CIC-format CSVs without captures: a store of flows + flow_features, no packets.

Sources of the constants (public documentation; see ``docs/datasets.md``):
CIC-IDS2017 www.unb.ca/cic/datasets/ids-2017.html (MachineLearningCSV / GeneratedLabelledFlows,
Canadian Atlantic local time, day-first timestamps with and without seconds, labels with a
Windows-1252 dash in "Web Attack \x96 Brute Force"); CIC-DDoS2019 www.unb.ca/cic/datasets/ddos-2019.html
(CSVs "01-12/*.csv" and "03-11/*.csv", ISO timestamps with microseconds); CIC-IoT2023
www.unb.ca/cic/datasets/iotdataset-2023.html (pcaps and CSVs per attack, CSVs carry no 5-tuple,
so labels are per file); ISCXTor2016 www.unb.ca/cic/datasets/tor.html (Scenario A/B CSVs,
labels TOR / nonTOR and application classes).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

#: Column roles -> the spellings seen in CIC releases (compared after stripping spaces, case-insensitive).
DEFAULT_COLUMNS: dict[str, tuple[str, ...]] = {
    "src_ip": ("Source IP", "Src IP", "src_ip", "SrcIP", "Source Address", "srcip"),
    "src_port": ("Source Port", "Src Port", "src_port", "SrcPort", "sport"),
    "dst_ip": ("Destination IP", "Dst IP", "dst_ip", "DstIP", "Destination Address", "dstip"),
    "dst_port": ("Destination Port", "Dst Port", "dst_port", "DstPort", "dport"),
    "protocol": ("Protocol", "proto", "protocol"),
    "timestamp": ("Timestamp", "timestamp", "Flow Start", "StartTime"),
    "label": ("Label", "label", "class", "Class"),
}

#: Timestamp formats tried in order (each row takes the first that parses it).
CIC_FORMATS: tuple[str, ...] = (
    "%d/%m/%Y %H:%M:%S", "%d/%m/%Y %H:%M", "%d/%m/%Y %I:%M:%S %p", "%d/%m/%Y %I:%M %p",
    "%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M",
)

BENIGN_ALIASES: tuple[str, ...] = ("BENIGN", "Benign", "benign", "Normal", "NORMAL", "normal", "nonTOR",
                                   "NonTOR", "BenignTraffic")


def normalise_class(label: str) -> str:
    """'Web Attack \x96 Brute Force' -> 'web_attack_brute_force' (lower case, non-alphanumerics -> _)."""
    return re.sub(r"[^a-z0-9]+", "_", str(label).lower()).strip("_") or "unknown"


@dataclass(frozen=True)
class Driver:
    name: str
    kind: str = "csv"                       # csv | per_file | flow_table
    columns: dict = field(default_factory=lambda: dict(DEFAULT_COLUMNS))
    timestamp_formats: tuple[str, ...] = CIC_FORMATS
    #: resolution of the CSV's timestamps: added to the join tolerance
    timestamp_resolution_s: float = 1.0
    benign_labels: tuple[str, ...] = BENIGN_ALIASES
    #: label values whose rows are removed; flows that match them are dropped (and counted)
    drop_labels: tuple[str, ...] = ()
    #: regex: labels matching it are dropped too (e.g. "Attempted" rows of the CIC-IDS2017 re-release)
    drop_label_regex: str | None = None
    #: raw label -> attack class (after normalise_class of the raw label when absent)
    class_map: dict = field(default_factory=dict)
    #: typical CSV clock minus capture clock, for the docs; "auto" still measures it
    expected_offset_s: float | None = None
    #: day -> capture file names of the public release (docs; configs list the files themselves)
    day_pcaps: dict = field(default_factory=dict)

    def attack_class(self, label: str) -> str:
        if label in self.benign_labels or label == "BENIGN":
            return "benign"
        return self.class_map.get(label, normalise_class(label))

    def is_dropped(self, label: str) -> bool:
        return label in self.drop_labels or (
            self.drop_label_regex is not None and re.search(self.drop_label_regex, label) is not None)


_DASH = "\x96"  # CIC-IDS2017's Windows-1252 en dash, read as U+0096 or U+FFFD
CICIDS2017 = Driver(
    name="cicids2017",
    timestamp_resolution_s=60.0,  # Tuesday-Friday files have minute resolution ("6/7/2017 8:59")
    expected_offset_s=-3 * 3600.0,  # Atlantic Daylight Time, UTC-3
    drop_label_regex=r"(?i)attempted",
    class_map={
        **{f"Web Attack {d} {k}": f"web_attack_{normalise_class(k)}" for d in (_DASH, "\ufffd", "-", "–")
           for k in ("Brute Force", "XSS", "Sql Injection", "SQL Injection")},
        "DoS Hulk": "dos_hulk", "DoS GoldenEye": "dos_goldeneye", "DoS slowloris": "dos_slowloris",
        "DoS Slowhttptest": "dos_slowhttptest", "PortScan": "portscan", "Bot": "botnet", "BOT": "botnet",
        "Botnet": "botnet", "Portscan": "portscan", "DoS Slowloris": "dos_slowloris",
    },
    day_pcaps={
        "Monday": ["Monday-WorkingHours.pcap"], "Tuesday": ["Tuesday-WorkingHours.pcap"],
        "Wednesday": ["Wednesday-workingHours.pcap"], "Thursday": ["Thursday-WorkingHours.pcap"],
        "Friday": ["Friday-WorkingHours.pcap"],
    },
)

CICDDOS2019 = Driver(
    name="cicddos2019",
    timestamp_formats=("%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S") + CIC_FORMATS,
    timestamp_resolution_s=1.0,
    drop_labels=("WebDDoS",),  # 439 rows in the public CSVs, no matching traffic share documented
    class_map={"DrDoS_DNS": "dns", "DrDoS_LDAP": "ldap", "DrDoS_MSSQL": "mssql", "DrDoS_NetBIOS": "netbios",
               "DrDoS_NTP": "ntp", "DrDoS_SNMP": "snmp", "DrDoS_SSDP": "ssdp", "DrDoS_UDP": "udp",
               "Syn": "syn", "TFTP": "tftp", "UDP-lag": "udp_lag", "UDPLag": "udp_lag", "LDAP": "ldap",
               "MSSQL": "mssql", "NetBIOS": "netbios", "Portmap": "portmap", "UDP": "udp"},
    day_pcaps={"01-12": ["SAT-01-12-2018_0*"], "03-11": ["SAT-03-11-2018_0*"]},
)

CICIOT2023 = Driver(
    name="ciciot2023",
    kind="per_file",
    # the 33 attacks of the public release, grouped as in the dataset's 7 categories
    class_map={**{k: "ddos" for k in (
        "DDoS-ACK_Fragmentation", "DDoS-UDP_Flood", "DDoS-SlowLoris", "DDoS-ICMP_Flood", "DDoS-RSTFINFlood",
        "DDoS-PSHACK_Flood", "DDoS-HTTP_Flood", "DDoS-UDP_Fragmentation", "DDoS-ICMP_Fragmentation",
        "DDoS-TCP_Flood", "DDoS-SYN_Flood", "DDoS-SynonymousIP_Flood")},
               **{k: "dos" for k in ("DoS-TCP_Flood", "DoS-HTTP_Flood", "DoS-SYN_Flood", "DoS-UDP_Flood")},
               **{k: "mirai" for k in ("Mirai-greeth_flood", "Mirai-greip_flood", "Mirai-udpplain")},
               **{k: "recon" for k in ("Recon-PingSweep", "Recon-OSScan", "Recon-PortScan",
                                       "VulnerabilityScan", "Recon-HostDiscovery")},
               **{k: "spoofing" for k in ("DNS_Spoofing", "MITM-ArpSpoofing")},
               **{k: "web" for k in ("BrowserHijacking", "Backdoor_Malware", "XSS", "Uploading_Attack",
                                     "SqlInjection", "CommandInjection")},
               "DictionaryBruteForce": "bruteforce"},
)

ISCXTOR2016 = Driver(
    name="iscxtor2016",
    timestamp_formats=("%d/%m/%Y %I:%M:%S %p", "%d/%m/%Y %H:%M:%S", "%d/%m/%Y %H:%M") + CIC_FORMATS,
    timestamp_resolution_s=1.0,
    benign_labels=("nonTOR", "NonTOR", "BENIGN"),
    class_map={"TOR": "tor"},
)

DEMO = Driver(
    name="demo",
    timestamp_formats=("%d/%m/%Y %H:%M:%S",) + CIC_FORMATS,
    timestamp_resolution_s=1.0,
)

PER_FILE = Driver(name="per_file", kind="per_file")
FLOW_TABLE = Driver(name="flow_table", kind="flow_table")

DRIVERS: dict[str, Driver] = {d.name: d for d in (CICIDS2017, CICDDOS2019, CICIOT2023, ISCXTOR2016, DEMO,
                                                  PER_FILE, FLOW_TABLE)}
DRIVERS["cic-ids2017"] = CICIDS2017
DRIVERS["cic-ddos2019"] = CICDDOS2019
DRIVERS["cic-iot2023"] = CICIOT2023


def get_driver(name: str) -> Driver:
    try:
        return DRIVERS[str(name).lower()]
    except KeyError:
        raise ValueError(f"unknown dataset driver {name!r}; known: {sorted(DRIVERS)}") from None
