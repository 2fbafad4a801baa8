"""The flow's negative log-likelihood under JANUS (score option ``janus.flow_nll``), in nats per flow:

    flow_nll = NLL_cont + NLL_disc + NLL_len

* NLL_cont: the CNF's log-density of the flow's raw continuous values (:func:`score.cnf_log_likelihood`,
  the instantaneous change of variables of Chen et al. 2018 / FFJORD, Grathwohl et al. 2019), over the
  *modelled* coordinates only (:meth:`data.Normaliser.density_inputs`: coordinates fixed by the others
  are held at their values and left out of the state and the divergence), plus the log-Jacobian of the
  feature transform (so it is a density of raw values), with integer channels dequantised
  (x + u, u ~ U[0, 1); -log p(x + u) bounds -log P(x) from above in expectation, Theis et al. 2016,
  Ho et al. 2019), averaged over a fixed number of seeded draws per flow;
* NLL_disc: the masked-diffusion negative ELBO of the flow's bits given its continuous values
  (:func:`masked_diffusion_nelbo`; MDLM, Sahoo et al. 2024; Shi et al. 2024);
* NLL_len: -log p(packet count) of a smoothed categorical fitted on benign train (:class:`LengthModel`).

Sums, not averages over dimensions: flows with more packets have more terms, as their likelihood does.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

from nidsflow.janus.paths import MASK_STATE, bit_nll


@dataclass
class LengthModel:
    """Categorical over the packet count in categories 1, 2, ..., T-1 and ">= T" (the model sees at most T
    packets, so T and more are one category), add-one (Laplace) smoothed on benign train:
    p_k = (c_k + 1) / (N + T).  ``nll`` = -log p_k in nats; a count of 0 (no packet) is NaN."""

    T: int
    counts: list[int]

    @classmethod
    def fit(cls, n_packets: np.ndarray, T: int) -> "LengthModel":
        cat = cls._category(np.asarray(n_packets, dtype=np.int64), T)
        cat = cat[cat >= 0]
        return cls(int(T), np.bincount(cat, minlength=T).astype(int).tolist())

    @staticmethod
    def _category(n: np.ndarray, T: int) -> np.ndarray:
        """0-based category: n - 1 for n < T, T - 1 for n >= T, -1 for n < 1."""
        return np.where(n < 1, -1, np.minimum(n, T) - 1)

    def nll(self, n_packets: np.ndarray) -> np.ndarray:
        c = np.asarray(self.counts, dtype=np.float64)
        logp = np.log(c + 1.0) - math.log(c.sum() + len(c))
        cat = self._category(np.asarray(n_packets, dtype=np.int64), self.T)
        return np.where(cat >= 0, -logp[np.maximum(cat, 0)], np.nan)

    def state_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_state_dict(cls, d: dict) -> "LengthModel":
        return cls(int(d["T"]), [int(v) for v in d["counts"]])


@dataclass
class NelboDraws:
    """One flow batch's Monte-Carlo draws of :func:`masked_diffusion_nelbo`, each [K, n, ...]:
    ``masked`` [K, n, L, C] positions given the mask state, ``t`` [K, n] the path time fed to the
    denoiser, ``weight`` [K, n] = N / m (N valid positions of the flow, m masked)."""

    masked: torch.Tensor
    t: torch.Tensor
    weight: torch.Tensor


def nelbo_draws(generators: list[np.random.Generator], valid: np.ndarray, n_channels: int, K: int, T_full: int,
                kappa_power: float) -> NelboDraws:
    """Draws of the masked-diffusion NELBO per flow, from the flow's own generator (so independent of its batch).

    The continuous-time NELBO (:func:`masked_diffusion_nelbo`) rewritten exactly over the number of masked
    positions m (kappa = the path's keep probability, P(|M| = m | kappa) prop. kappa^(N-m) (1-kappa)^m):

        -ELBO = int_0^1 dkappa / (1 - kappa) E[sum_{i in M} l_i(M, kappa)]
              = sum_{m=1}^N (1/m) E_{M: |M| = m} E_{kappa ~ Beta(N-m+1, m)} [sum_{i in M} l_i(M, kappa)]

    so with m stratified over K draws (m_k = 1 + floor((k + u0) N / K), u0 ~ U[0, 1) per flow), M a uniform
    subset of size m of the flow's N valid positions (the first m of one random order of them, so the K
    subsets are nested) and kappa ~ Beta(N - m + 1, m), the estimate
    N/m sum_{i in M} l_i is unbiased, with a weight bounded by N (the time-sampled form 1 / (1 - kappa) is
    not: a rare masked position at kappa near 1 gets an unbounded weight). t = kappa^(1/p) for
    kappa_t = t^p (:class:`paths.MixtureDiscretePath`). Each flow draws its order over the model's full
    T_full positions and keeps the first L, so the draws do not depend on how its batch is cut.
    """
    n, L = valid.shape
    masked = np.zeros((K, n, L, n_channels), dtype=bool)
    t = np.ones((K, n))
    weight = np.zeros((K, n))
    for r, g in enumerate(generators):
        u0 = g.random()
        order = g.random((max(T_full, L), n_channels))[:L]
        N = int(valid[r].sum()) * n_channels
        if N == 0:
            continue
        keys = np.where(valid[r][:, None], order, np.inf).reshape(-1)
        rank = keys.argsort().argsort().reshape(L, n_channels)
        for k in range(K):
            m = 1 + min(N - 1, int((k + u0) * N / K))
            masked[k, r] = rank < m  # nested subsets of one random order: common random numbers over k
            kappa = g.beta(N - m + 1, m)
            t[k, r] = kappa ** (1.0 / kappa_power)
            weight[k, r] = N / m
    return NelboDraws(torch.from_numpy(masked), torch.from_numpy(t), torch.from_numpy(weight))


def masked_diffusion_nelbo(denoise, bits: torch.Tensor, draws: NelboDraws) -> torch.Tensor:
    """[n] negative ELBO (nats) of the clean bits ``bits`` [n, L, C] under the absorbing (mask) diffusion
    whose denoiser is ``denoise(x_t [n, L, C] in {0, 1, MASK_STATE}, t [n]) -> logits [n, L, C]``:

        -ELBO(x) = int_0^1 (kappa'_t / (1 - kappa_t)) E_{z_t ~ q_t(.|x)} [ sum_{i masked} -log p(x_i | z_t) ] dt

    (MDLM, Sahoo et al. 2024, Eq. 10; Shi et al. 2024, Eq. 5, with kappa_t = alpha_{1-t} the probability a
    position is kept), estimated by :func:`nelbo_draws`' exact rewriting over the number of masked
    positions. Unmasked positions contribute 0 (the carry-over parameterisation)."""
    K = draws.masked.shape[0]
    dev = bits.device
    total = torch.zeros(bits.shape[0], dtype=torch.float64, device=dev)
    for k in range(K):
        m = draws.masked[k].to(dev)
        xt = torch.where(m, torch.full_like(bits, MASK_STATE), bits)
        logits = denoise(xt, draws.t[k].to(dev).float())
        nll = (bit_nll(logits.float(), bits).double() * m).sum(dim=(1, 2))
        total = total + draws.weight[k].to(dev) * nll
    return total / K
