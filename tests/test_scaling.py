"""The one flow-feature preprocessing (nidsflow.scaling): signed log1p -> median/IQR of benign train -> clip."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.preprocessing import RobustScaler

from nidsflow.scaling import ScalingError, SignedLogRobustScaler, signed_log1p


def test_closed_form_on_a_small_column():
    # benign train: e^k - 1 for k = 0..4 -> s(x) = 0, 1, 2, 3, 4: median 2, Q1 1, Q3 3, IQR 2
    x = np.expm1(np.arange(5.0))[:, None]
    sc = SignedLogRobustScaler(clip=20).fit(x)
    assert sc.median_[0] == pytest.approx(2.0) and sc.scale_[0] == pytest.approx(2.0)
    test = np.array([[0.0], [np.expm1(6.0)], [-np.expm1(2.0)], [np.expm1(100.0)]])
    np.testing.assert_allclose(sc.transform(test)[:, 0], [-1.0, 2.0, -2.0, 20.0], rtol=1e-6)  # last one clipped


def test_signed_log1p_is_odd():
    np.testing.assert_allclose(signed_log1p(np.array([-np.e + 1, 0.0, np.e - 1])), [-1.0, 0.0, 1.0])


def test_agrees_with_sklearn_robust_scaler_on_signed_log_where_the_iqr_is_positive():
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.lognormal(8, 3, 400), -rng.lognormal(2, 1, 400), rng.integers(0, 3, 400),
                         np.zeros(400)])  # constant: scale 1, as sklearn
    ours = SignedLogRobustScaler(clip=1e9).fit(X[:300])
    ref = RobustScaler().fit(signed_log1p(X[:300]))
    np.testing.assert_allclose(ours.transform(X[300:]), ref.transform(signed_log1p(X[300:])), rtol=1e-5, atol=1e-5)


def test_zero_iqr_column_is_scaled_by_its_std():
    x = np.r_[np.zeros(90), np.expm1(np.full(10, 3.0))][:, None]  # mostly 0: IQR 0, s(x) std 0.9
    sc = SignedLogRobustScaler().fit(x)
    assert sc.scale_[0] == pytest.approx(0.9)
    assert sc.transform(np.expm1(np.array([[3.0]])))[0, 0] == pytest.approx(3.0 / 0.9, rel=1e-6)


def test_constant_column_is_kept_with_unit_scale_and_non_finite_become_the_median():
    X = np.column_stack([np.arange(1.0, 101.0), np.full(100, 3.0)])
    X[0, 0] = np.inf
    sc = SignedLogRobustScaler().fit(X, ("a", "flag_count"))
    assert sc.names_ == ("a", "flag_count") and sc.scale_[1] == 1.0
    Z = sc.transform(np.array([[np.nan, 3.0], [5.0, np.expm1(5.0)]]))
    assert Z[0, 0] == 0.0 and Z[0, 1] == 0.0  # NaN -> median -> 0
    assert Z[1, 1] == pytest.approx(5.0 - np.log1p(3.0), abs=1e-6)  # an attack's deviation from the constant shows


def test_last_ulp_differences_of_log1p_vanish_in_the_float32_output():
    rng = np.random.default_rng(1)
    X = rng.lognormal(3, 2, size=(2000, 3))
    sc = SignedLogRobustScaler().fit(X)
    nudged = X * (1 + 1e-15)  # a few-ulp change, as another CPU's vectorised log1p gives of its output
    assert (signed_log1p(X) != signed_log1p(nudged)).any()
    np.testing.assert_array_equal(sc.transform(X), sc.transform(nudged))


def test_bad_input_is_a_clear_error():
    with pytest.raises(ScalingError, match="2-d"):
        SignedLogRobustScaler().fit(np.zeros(5))
    with pytest.raises(ScalingError, match="no benign"):
        SignedLogRobustScaler().fit(np.zeros((0, 3)))
    with pytest.raises(ScalingError, match="columns"):
        SignedLogRobustScaler().fit(np.zeros((5, 3))).transform(np.zeros((2, 4)))
    with pytest.raises(ScalingError, match="clip"):
        SignedLogRobustScaler(clip=0)
