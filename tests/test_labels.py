"""Label CSV reading (bad input), the nearest-time join and the clock-offset diagnostic."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from nidsflow.capture.drivers import CICIDS2017, DEMO, get_driver
from nidsflow.capture.labels import DROPPED, LabelError, join_labels, read_label_csv
from nidsflow.store import BENIGN, UNMATCHED

HEADER = "\ufeffFlow ID, Source IP, Source Port, Destination IP, Destination Port, Protocol, Timestamp, Flow Bytes/s, Label\n"


def write(tmp_path, text, name="labels.csv"):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_reads_cic_header_with_bom_spaces_and_formats(tmp_path):
    p = write(tmp_path, HEADER
              + "x,10.0.0.1,1234,10.0.0.2,80,6,03/07/2017 09:08:09,1.5,BENIGN\n"
              + "x,10.0.0.1,1235,10.0.0.2,80,6,03/07/2017 09:08,2.0,DoS Hulk\n"
              + "x,10.0.0.1,1236,10.0.0.2,80,6,03/07/2017 01:08:09 PM,2.0,BENIGN\n")
    rows, st = read_label_csv(p, CICIDS2017)
    assert len(rows) == 3 and st.dropped_nan_inf == 0
    t0 = pd.Timestamp("2017-07-03 09:08:09").value / 1e9
    np.testing.assert_allclose(rows.csv_ts, [t0, t0 - 9, t0 + 4 * 3600])
    assert rows.src_port.tolist() == [1234, 1235, 1236]


def test_src_ip_variant_and_iso_microseconds(tmp_path):
    p = write(tmp_path, "id,Flow ID,Src IP,Src Port,Dst IP,Dst Port,Protocol,Timestamp,Label\n"
              "1,f,172.16.0.1,45022,192.168.10.51,444,6,2017-07-05 18:12:15.650811,Heartbleed\n")
    rows, _ = read_label_csv(p, get_driver("cicids2017"))
    assert rows.csv_ts[0] == pytest.approx(pd.Timestamp("2017-07-05 18:12:15.650811").value / 1e9)
    assert rows.label[0] == "Heartbleed"


def test_nan_inf_rows_counted_and_dropped(tmp_path, caplog):
    p = write(tmp_path, HEADER
              + "x,10.0.0.1,1234,10.0.0.2,80,6,03/07/2017 09:08:09,1,BENIGN\n"
              + "x,10.0.0.1,NaN,10.0.0.2,80,6,03/07/2017 09:08:09,1,BENIGN\n"
              + "x,10.0.0.1,1234,10.0.0.2,Infinity,6,03/07/2017 09:08:09,1,BENIGN\n"
              + "x,,1234,10.0.0.2,80,6,03/07/2017 09:08:09,1,BENIGN\n")
    with caplog.at_level(logging.WARNING):
        rows, st = read_label_csv(p, CICIDS2017)
    assert len(rows) == 1 and st.dropped_nan_inf == 3 and st.rows == 4
    assert "dropped 3 rows" in caplog.text


def test_all_rows_bad_is_an_error(tmp_path):
    p = write(tmp_path, HEADER + "x,10.0.0.1,nan,10.0.0.2,80,6,03/07/2017 09:08:09,1,BENIGN\n")
    with pytest.raises(LabelError, match="no usable label rows"):
        read_label_csv(p, CICIDS2017)


def test_missing_column_names_file_and_column(tmp_path):
    p = write(tmp_path, "Flow ID, Source IP, Source Port, Destination IP, Protocol, Timestamp, Label\n"
              "x,10.0.0.1,1,10.0.0.2,6,03/07/2017 09:08:09,BENIGN\n")
    with pytest.raises(LabelError, match=r"labels\.csv.*missing column 'Destination Port'"):
        read_label_csv(p, CICIDS2017)


def test_unknown_timestamp_format(tmp_path):
    p = write(tmp_path, HEADER + "x,10.0.0.1,1,10.0.0.2,80,6,July 3rd 2017 9am,1,BENIGN\n" * 3)
    with pytest.raises(LabelError, match=r"labels\.csv: unknown timestamp format, e.g. 'July 3rd 2017 9am'"):
        read_label_csv(p, CICIDS2017)


def test_empty_and_absent_files(tmp_path):
    with pytest.raises(LabelError, match="empty CSV"):
        read_label_csv(write(tmp_path, ""), DEMO)
    with pytest.raises(LabelError, match="not found"):
        read_label_csv(tmp_path / "nope.csv", DEMO)


def _flows_and_rows(offset, n=300, seed=0):
    rng = np.random.default_rng(seed)
    t = 1.5e9 + np.sort(rng.uniform(0, 3600, n))
    flows = pd.DataFrame({"src_ip": "10.0.0.1", "src_port": 1000 + np.arange(n), "dst_ip": "10.0.0.2",
                          "dst_port": 80, "protocol": 6, "first_ts": t})
    # the CSV writes each flow reversed (direction-insensitive key), on its own clock, to the second
    rows = pd.DataFrame({"src_ip": "10.0.0.2", "src_port": 80, "dst_ip": "10.0.0.1", "dst_port": 1000 + np.arange(n),
                         "protocol": 6, "csv_ts": np.floor(t + offset), "label": np.where(np.arange(n) % 3, "BENIGN", "DDoS")})
    return flows, rows


@pytest.mark.parametrize("offset", [-10800.0, 7200.0, 0.0, -34200.0])
def test_offset_diagnostic_finds_offset_and_logs_it(offset, caplog):
    flows, rows = _flows_and_rows(offset)
    with caplog.at_level(logging.INFO):
        res = join_labels(flows, rows, DEMO, tolerance_s=0.5, time_offset_s="auto")
    assert res.offset_s == offset
    assert f"measured clock offset {offset:g} s; set time_offset_s: {offset:g} in config" in caplog.text
    assert res.unmatched_flows == 0 and res.unmatched_rows == 0
    assert res.matched_per_label == {BENIGN: 200, "DDoS": 100}
    assert -1.0 <= res.measured["median_residual_s"] - offset <= 0.0


def test_wrong_offset_gives_unmatched_never_benign_and_counts_rows():
    flows, rows = _flows_and_rows(-10800.0, n=50)
    res = join_labels(flows, rows, DEMO, tolerance_s=0.5, time_offset_s=0)
    assert (res.label == UNMATCHED).all()
    assert res.unmatched_flows == 50 and res.unmatched_rows == 50


def test_nearest_row_wins_and_tolerance_respected():
    flows = pd.DataFrame({"src_ip": ["1.1.1.1"] * 3, "src_port": [1, 1, 1], "dst_ip": ["2.2.2.2"] * 3,
                          "dst_port": [2, 2, 2], "protocol": [17] * 3, "first_ts": [100.0, 200.0, 400.0]})
    rows = pd.DataFrame({"src_ip": ["1.1.1.1"] * 2, "src_port": [1, 1], "dst_ip": ["2.2.2.2"] * 2, "dst_port": [2, 2],
                         "protocol": [17, 17], "csv_ts": [101.0, 198.0], "label": ["A", "B"]})
    res = join_labels(flows, rows, DEMO, tolerance_s=2.0, time_offset_s=0.0)  # + 1 s resolution
    assert res.label.tolist() == ["A", "B", UNMATCHED]


def test_benign_aliases_and_dropped_labels(tmp_path):
    p = write(tmp_path, "id,Flow ID,Src IP,Src Port,Dst IP,Dst Port,Protocol,Timestamp,Label\n"
              "1,f,1.1.1.1,1,2.2.2.2,2,6,2017-07-05 18:12:15.0,Benign\n"
              "2,f,1.1.1.1,3,2.2.2.2,2,6,2017-07-05 18:12:15.0,DoS Hulk - Attempted\n")
    rows, st = read_label_csv(p, CICIDS2017)
    assert st.dropped_by_label == 1 and rows.label.tolist() == ["Benign", DROPPED]
    flows = pd.DataFrame({"src_ip": ["2.2.2.2", "1.1.1.1"], "src_port": [2, 3], "dst_ip": ["1.1.1.1", "2.2.2.2"],
                          "dst_port": [1, 2], "protocol": [6, 6], "first_ts": rows.csv_ts.to_numpy()})
    res = join_labels(flows, rows, CICIDS2017, 1.0, 0.0)
    assert res.label.tolist() == [BENIGN, DROPPED]


def test_ipv6_spellings_join():
    flows = pd.DataFrame({"src_ip": ["2001:db8::1"], "src_port": [5], "dst_ip": ["fe80::2"], "dst_port": [53],
                          "protocol": [17], "first_ts": [10.0]})
    rows = pd.DataFrame({"src_ip": ["FE80:0:0:0:0:0:0:2"], "src_port": [53], "dst_ip": ["2001:0db8:0000::0001"],
                         "dst_port": [5], "protocol": [17], "csv_ts": [10.0], "label": ["X"]})
    assert join_labels(flows, rows, DEMO, 1.0, 0.0).label.tolist() == ["X"]
