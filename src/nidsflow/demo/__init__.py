"""The demo traffic generator (SPEC "Demo data"): labelled captures made from a model of the traffic.

Modules, from the wire up: ``wire`` (packet records -> Ethernet/IPv4/TCP|UDP frames -> pcap, pcapng),
``tcp`` (a TCP connection model), ``traffic`` (domain profiles, benign services, attack families),
``flows`` (the reference flow assembly and its CIC-IDS2017 and HIKARI-2021 statistics), ``hikari_csv``
(the HIKARI-2021 header and the demo's HIKARI CSV), ``generate`` (``generate_demo``: every file of the
demo folder, with its manifest). The parser (:mod:`nidsflow.capture`) knows nothing of it: the demo's
files are read like any other dataset's.
"""
