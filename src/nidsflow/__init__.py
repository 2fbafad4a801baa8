"""nidsflow: unsupervised network-intrusion detection from packet captures to result tables.

Sub-packages map to the specification's sections: ``capture`` (pcap parsing, flows, features,
label join, dataset drivers, store, demo traffic), ``janus`` (the flow-matching model), ``evaluate``
(aggregators, baselines, tables, figures) and ``hikari`` (the meta-ensemble and validation suite).
"""

__version__ = "0.1.0"
