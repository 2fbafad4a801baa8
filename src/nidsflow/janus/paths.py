"""Probability paths of JANUS: OT-CFM on the continuous state, a mixture path on the binary state.

Continuous (conditional flow matching, Lipman et al. 2023; Tong et al. 2024, OT-CFM):

    x_t = (1 - t) x0 + t x1 + sigma * eps,   eps ~ N(0, I)                     (Eq. C1)
    u_t(x_t | x0, x1) = x1 - x0                                                 (Eq. C2)
    L_cfm = E || v_theta(x_t, t) - u_t ||^2  (mean over valid continuous dims)  (Eq. C3)

with x0 ~ N(0, I) the source (noise) and x1 the benign data; (x0, x1) drawn from a minibatch
optimal-transport plan (:class:`OTPlanCoupler`, Eq. C4) instead of independently.

Discrete (discrete flow matching, Gat et al. 2024, mixture path):

    p_t(x_t | x1) = kappa_t delta_{x1} + (1 - kappa_t) p_source,  kappa_t = t^p         (Eq. D1)
    L_dfm = E [ -log p_theta(x1 | x_t, t) ] over corrupted (source-drawn) positions   (Eq. D2)

p_source is the mask token (state 2) or a uniform random bit.
"""

from __future__ import annotations

import logging
import os
import warnings

# POT only gets numpy arrays here; without this it imports TensorFlow (seconds) to register a backend.
for _key in ("POT_BACKEND_DISABLE_TENSORFLOW", "POT_BACKEND_DISABLE_JAX", "POT_BACKEND_DISABLE_CUPY"):
    os.environ.setdefault(_key, "1")

import numpy as np  # noqa: E402
import ot  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F

log = logging.getLogger(__name__)

MASK_STATE = 2


class DegeneratePlanError(RuntimeError):
    """The OT solver returned a plan with NaN/inf or no mass: the coupling is meaningless."""


class ConditionalOTPath:
    """Eq. C1/C2: the Gaussian-smoothed straight path between x0 and x1."""

    def __init__(self, sigma: float):
        if sigma < 0:
            raise ValueError(f"sigma must be >= 0, got {sigma}")
        self.sigma = float(sigma)

    def mean(self, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """mu_t = (1 - t) x0 + t x1 (Eq. C1 without noise)."""
        t = _expand(t, x0)
        return (1 - t) * x0 + t * x1

    def sample(self, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """x_t = mu_t + sigma * eps (Eq. C1)."""
        return self.mean(x0, x1, t) + self.sigma * eps

    @staticmethod
    def target_velocity(x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
        """u_t = x1 - x0 (Eq. C2): independent of t and of eps."""
        return x1 - x0


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of squared errors over ``mask`` and the number of masked-in dims (Eq. C3 = sum / count)."""
    m = mask.to(pred.dtype)
    return (((pred - target) ** 2) * m).sum(), m.sum()


class OTPlanCoupler:
    """Eq. C4: pair noise and data rows of a minibatch through an optimal-transport plan (POT).

    Cost C_ij = sum_d m_jd (x0_id - x1_jd)^2, the squared distance over data row j's valid dims; plan
    P = argmin <P, C> - reg_abs H(P) with uniform marginals (Cuturi 2013), solved by ``ot.sinkhorn``
    (``sinkhorn``: Sinkhorn-Knopp; ``sinkhorn_log``: the log-domain iterations, stable for small reg)
    or exactly by ``ot.emd``.

    Sharpness (issue 11): the plan only depends on C up to row and column constants (they go into the
    dual potentials), so the regularisation is relative to the scale of what is left,
    reg_abs = reg * std(C - row means - column means + mean)  (``reg_scale: centred_std``). The seed's
    reg 0.05 on C / max(C) (``reg_scale: max``) is, in ~100 dimensions, several times that spread: the
    plan is nearly uniform and argmax pairing reuses noise rows (about 160 of 256 distinct), so the
    source the model learns from is not N(0, I). At reg 0.1 relative to the centred spread the plan's
    cost is within 1 % of the exact one (tests/test_janus_paths.py, B 256, 100-d).

    Pairing of data row j with a noise row:

    * ``argmax``: argmax_i P_ij (the seed's; rows are reused when P is blurred);
    * ``sample``: i ~ P_.j / sum_i P_ij independently per data row (torchcfm's OTPlanSampler samples
      (i, j) from the plan; here j is kept so each data row appears once);
    * ``sample_unique``: the same draws taken without replacement -- data rows in a random order, each
      from its plan column restricted to the noise rows not yet taken -- so the pairing is a permutation
      (every noise row used once, the source stays exactly the drawn N(0, I) sample) that follows the plan.

    A plan containing NaN/inf or without mass raises :class:`DegeneratePlanError`; there is no silent
    fallback to random pairing.
    """

    METHODS = ("sinkhorn", "sinkhorn_log", "emd")
    PAIRINGS = ("argmax", "sample", "sample_unique")
    REG_SCALES = ("centred_std", "max")

    def __init__(self, method: str = "sinkhorn_log", reg: float = 0.1, pairing: str = "sample_unique",
                 reg_scale: str = "centred_std", max_iter: int = 50):
        if method not in self.METHODS:
            raise ValueError(f"ot_method must be one of {self.METHODS}, got {method!r}")
        if pairing not in self.PAIRINGS:
            raise ValueError(f"ot_pairing must be one of {self.PAIRINGS}, got {pairing!r}")
        if reg_scale not in self.REG_SCALES:
            raise ValueError(f"ot_reg_scale must be one of {self.REG_SCALES}, got {reg_scale!r}")
        if method != "emd" and reg <= 0:
            raise ValueError(f"ot_reg must be > 0 for {method}, got {reg}")
        self.method, self.reg, self.pairing, self.reg_scale = method, float(reg), pairing, reg_scale
        if max_iter < 1:
            raise ValueError(f"ot_max_iter must be >= 1, got {max_iter}")
        self.max_iter = int(max_iter)
        self.n_unconverged = 0  # plans whose marginals missed by > 1 % after max_iter (logged once, counted)

    @staticmethod
    def cost(x0: torch.Tensor, x1: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
        """C_ij over rows flattened to vectors; ``mask`` is data's valid-dim mask (same shape as x1)."""
        a = x0.reshape(len(x0), -1).double()
        b = x1.reshape(len(x1), -1).double()
        m = mask.reshape(len(x1), -1).double()
        c = (a ** 2) @ m.T - 2 * a @ (m * b).T + ((m * b) ** 2).sum(1)[None, :]
        return c.clamp_min(0).cpu().numpy()

    def cost_scale(self, cost: np.ndarray) -> float:
        """The divisor of C before the solver (``reg_scale``); 1 when C carries no pairing information."""
        if self.reg_scale == "max":
            scale = float(cost.max())
        else:
            centred = cost - cost.mean(0, keepdims=True) - cost.mean(1, keepdims=True) + cost.mean()
            scale = float(centred.std())
        return scale if scale > 0 and np.isfinite(scale) else 1.0

    def plan(self, cost: np.ndarray) -> np.ndarray:
        n0, n1 = cost.shape
        a, b = np.full(n0, 1.0 / n0), np.full(n1, 1.0 / n1)
        c = cost / self.cost_scale(cost)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if self.method == "emd":
                p = ot.emd(a, b, c)
            else:  # torch arrays: POT's torch backend runs the iterations several times faster than numpy
                ta, tb, tc = (torch.from_numpy(v) for v in (a, b, c))
                # stop at a 1 % marginal error (L2 over columns); the plan's cost settles long before
                # its marginals (tests: within 1 % of exact OT after 20 iterations), and sample_unique
                # pairs by a permutation, which has exact marginals anyway
                p = ot.sinkhorn(ta, tb, tc, self.reg, numItermax=self.max_iter, stopThr=0.01 / np.sqrt(n1),
                                method="sinkhorn_log" if self.method == "sinkhorn_log" else "sinkhorn").numpy()
        for w in caught:
            if "did not converge" in str(w.message):
                self.n_unconverged += 1
                if self.n_unconverged == 1:
                    log.warning("OT solver (%s, reg=%g): marginals not within 1 %% after %d iterations (plan used; "
                                "further cases only counted)", self.method, self.reg, self.max_iter)
                continue
            log.warning("OT solver (%s, reg=%g): %s", self.method, self.reg, w.message)
        empty_cols = int((p.sum(axis=0) <= 0).sum()) if np.all(np.isfinite(p)) else n1
        if not np.all(np.isfinite(p)) or empty_cols:
            raise DegeneratePlanError(
                f"OT plan from {self.method} (reg={self.reg}) is degenerate on a {n0}x{n1} batch (non-finite "
                f"entries or {empty_cols} data rows without mass); raise janus.ot_reg or use "
                "ot_method: sinkhorn_log / emd. There is no fallback to random pairing.")
        return p

    def pair(self, x0: torch.Tensor, x1: torch.Tensor, mask: torch.Tensor, rng: np.random.Generator) -> np.ndarray:
        """Index into x0 of the noise row paired with each data row (length len(x1))."""
        p = self.plan(self.cost(x0, x1, mask))
        if self.pairing == "argmax":
            return p.argmax(axis=0)
        if self.pairing == "sample":
            col = p / p.sum(axis=0, keepdims=True)
            u = rng.random(p.shape[1])
            idx = (np.cumsum(col, axis=0) < u[None, :]).sum(axis=0)
            return np.minimum(idx, p.shape[0] - 1)
        return _draw_without_replacement(p, rng)


def _draw_without_replacement(p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Data rows in a random order each draw a noise row from their plan column among those not yet taken.

    When a column has no mass left on the free rows (a plan sharper than float precision), it takes a
    free row uniformly; that is counted in the debug log, it is not a fallback of the whole batch.
    """
    n0, n1 = p.shape
    free = np.ones(n0, dtype=bool)
    out = np.empty(n1, dtype=np.int64)
    n_flat = 0
    for j in rng.permutation(n1):
        if not free.any():  # more data than noise rows: every noise row taken once, start a new round
            free[:] = True
        w = np.where(free, p[:, j], 0.0)
        total = w.sum()
        if total <= 0:
            w, total = free.astype(np.float64), float(free.sum())
            n_flat += 1
        i = int(np.searchsorted(np.cumsum(w), rng.random() * total, side="right"))
        i = min(i, n0 - 1)
        while not free[i]:  # float round-off at the cumsum's end can land on a taken row
            i = (i - 1) % n0
        out[j] = i
        free[i] = False
    if n_flat:
        log.debug("OT sample_unique: %d of %d data rows had no plan mass on the free noise rows", n_flat, n1)
    return out


class MixtureDiscretePath:
    """Eq. D1: keep the data bit with probability kappa_t = t^power, else draw the source state."""

    SOURCES = ("mask", "uniform")

    def __init__(self, source: str = "mask", kappa_power: float = 1.0):
        if source not in self.SOURCES:
            raise ValueError(f"dfm_source must be one of {self.SOURCES}, got {source!r}")
        if kappa_power <= 0:
            raise ValueError(f"kappa_power must be > 0, got {kappa_power}")
        self.source, self.kappa_power = source, float(kappa_power)

    def kappa(self, t: torch.Tensor) -> torch.Tensor:
        return t.clamp(0, 1) ** self.kappa_power

    def sample(self, bits: torch.Tensor, t: torch.Tensor, generator: torch.Generator | None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """(x_t, corrupted): x_t long in {0, 1, MASK_STATE}; ``corrupted`` marks source-drawn positions."""
        kappa = _expand(self.kappa(t), bits.float())
        u = torch.rand(bits.shape, generator=generator, device=bits.device)
        corrupted = u >= kappa
        src = None
        if self.source == "uniform":
            src = torch.randint(0, 2, bits.shape, generator=generator, device=bits.device)
        return self.corrupt(bits, corrupted, src), corrupted

    def corrupt(self, bits: torch.Tensor, corrupted: torch.Tensor, src: torch.Tensor | None) -> torch.Tensor:
        """x_t: the source state where ``corrupted`` (MASK_STATE, or the bits ``src`` for a uniform source)."""
        if self.source == "mask":
            return torch.where(corrupted, torch.full_like(bits, MASK_STATE), bits)
        return torch.where(corrupted, src.to(bits.dtype), bits)


def bit_nll(logits: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    """-log p_theta(x1) per position for Bernoulli logits (Eq. D2 integrand)."""
    return F.binary_cross_entropy_with_logits(logits, bits.to(logits.dtype), reduction="none")


def _expand(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return t.reshape(-1, *([1] * (like.dim() - 1))).to(like.dtype)
