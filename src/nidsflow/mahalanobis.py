"""The squared Mahalanobis distance, shared by the JANUS aggregators and the HIKARI residual scores."""

from __future__ import annotations

import numpy as np


def mahalanobis_squared(X: np.ndarray, location: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """d^2(x) = (x - mu)^T P (x - mu) of each row of ``X`` [n, d], P = Sigma^-1 [d, d]."""
    D = X - location
    return np.einsum("ij,jk,ik->i", D, precision, D)
