"""Matplotlib for files, never a screen: the Agg backend, set in one place for every figure of the package.

``from nidsflow.plotting import plt`` instead of importing ``matplotlib.pyplot`` directly.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

__all__ = ["plt"]
