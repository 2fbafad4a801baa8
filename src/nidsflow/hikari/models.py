"""Base detectors of the HIKARI meta-ensemble (SPEC "HIKARI meta-ensemble").

* ``Scalers``: the AE scaler fitted on normal training rows only and clipped to [-c, c]; the
  supervised scaler fitted on the whole training split.
* ``fit_autoencoder``: Dense(w, relu) -> BN -> Dropout -> Dense(latent, relu) -> BN, mirrored decoder,
  linear output; Adam(lr, clipnorm), EarlyStopping, ReduceLROnPlateau; trained on normals only.
* ``ResidualModel``: residual r = x_s - AE(x_s);
  MSE(x) = mean_j r_j^2;
  MD(x) = sqrt((r - mu)^T (Sigma + eps I)^-1 (r - mu)) with mu, Sigma from normal training residuals
  (Mahalanobis 1936);
  GMM(x) = -log p(PCA_12(r)), p a K=3 Gaussian mixture fitted on normal training residuals (Bishop 2006);
  hybrid(x) = w_mse z(MSE) + w_md z(MD), z standardising by the mean/std of MSE and MD on the AE's
  *validation* normals (rows the AE never trained on; the seed's in-sample training residuals make
  the z-values, and so the hybrid score, optimistic).
* ``ClusterGate``: KMeans(K) on normal training latents; per-cluster threshold = q-th percentile of the
  normal training score (hybrid, as the seed; or MSE) in that cluster; flag when the score exceeds its
  cluster's one. A second, relaxed quantile (the seed's README suggests 99.0 for 99.5) is kept beside it.
* ``fit_supervised``: calibrated (sigmoid, Platt 1999) logistic regression on the latent; XGBoost with
  scale_pos_weight = n_normal / n_attack (Chen & Guestrin 2016); IsolationForest, score = -score_samples
  (Liu et al. 2008), fitted both on all training rows (the seed) and on the normal ones; ``iforest.fit_on``
  says which one is the meta feature.
* ``BasePipeline``: all of the above fitted on one training set -> the 5 meta features
  [hybrid, gmm, iso, latent_prob, xgb_prob] of any rows.
"""

from __future__ import annotations

import logging
import os
import weakref
from dataclasses import dataclass

import numpy as np

from nidsflow.mahalanobis import mahalanobis_squared

log = logging.getLogger(__name__)

META_FEATURE_NAMES: tuple[str, ...] = ("ae_hybrid", "gmm_score", "iso_score", "latent_prob", "xgb_prob")


# ------------------------------------------------------------------------------------------ runtime


def configure_runtime(seed: int, threads: int = 1) -> None:
    """Seed Python/NumPy/TF (keras.utils.set_random_seed), make TF ops deterministic, cap TF threads."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ["TF_DETERMINISTIC_OPS"] = "1"
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras
    import tensorflow as tf

    try:  # only possible before TF's runtime starts; later calls in the same process keep the first value
        tf.config.threading.set_intra_op_parallelism_threads(int(threads))
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass
    tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(int(seed))


# ------------------------------------------------------------------------------------------ scalers


@dataclass
class Scalers:
    """AE scaler (normal training rows, clipped) and supervised scaler (whole training split)."""

    ae_mean: np.ndarray
    ae_std: np.ndarray
    sup_mean: np.ndarray
    sup_std: np.ndarray
    clip: float

    @classmethod
    def fit(cls, X: np.ndarray, y: np.ndarray, clip: float) -> Scalers:
        normal = X[y == 0]
        if len(normal) < 2:
            raise ValueError(f"the AE scaler needs normal training rows; got {len(normal)}")

        def stats(a):
            m = a.mean(axis=0, dtype=np.float64)
            s = a.std(axis=0, dtype=np.float64)
            return m, np.where(s > 1e-12, s, 1.0)  # a feature constant on normals: leave it unscaled

        am, asd = stats(normal)
        sm, ssd = stats(X)
        return cls(am, asd, sm, ssd, float(clip))

    def ae(self, X: np.ndarray) -> np.ndarray:
        return np.clip((X - self.ae_mean) / self.ae_std, -self.clip, self.clip).astype(np.float32)

    def sup(self, X: np.ndarray) -> np.ndarray:
        return ((X - self.sup_mean) / self.sup_std).astype(np.float32)


# ------------------------------------------------------------------------------------------ autoencoder

LATENT_LAYER = "latent_bn"
_BOTH: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def build_autoencoder(n_features: int, cfg: dict):
    """The SPEC autoencoder (Keras functional model; the latent is the output of layer ``latent_bn``)."""
    import keras
    from keras import layers

    width, latent, drop = int(cfg["width"]), int(cfg["latent_dim"]), float(cfg["dropout"])
    inp = keras.Input(shape=(n_features,), name="x")
    h = layers.Dense(width, activation="relu", name="enc_dense")(inp)
    h = layers.BatchNormalization(name="enc_bn")(h)
    h = layers.Dropout(drop, name="enc_drop")(h)
    h = layers.Dense(latent, activation="relu", name="latent_dense")(h)
    z = layers.BatchNormalization(name=LATENT_LAYER)(h)
    h = layers.Dense(width, activation="relu", name="dec_dense")(z)
    h = layers.BatchNormalization(name="dec_bn")(h)
    h = layers.Dropout(drop, name="dec_drop")(h)
    out = layers.Dense(n_features, activation="linear", name="recon")(h)
    model = keras.Model(inp, out, name="hikari_ae")
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=float(cfg["lr"]), clipnorm=float(cfg["clipnorm"])),
                  loss="mse")
    return model


def fit_autoencoder(X_normal_scaled: np.ndarray, cfg: dict, seed: int):
    """Train on normal rows only; a seeded ``val_fraction`` of them drives EarlyStopping/ReduceLROnPlateau.

    Returns (model, history, val_rows): ``val_rows`` indexes the rows of ``X_normal_scaled`` held out
    for validation (the AE never trained on them; the hybrid score's z-statistics are fitted there).
    """
    import keras

    keras.utils.set_random_seed(int(seed))
    rng = np.random.default_rng(seed)
    rows = np.arange(len(X_normal_scaled))
    max_train = cfg.get("max_train")
    if max_train and len(rows) > int(max_train):
        rows = np.sort(rng.choice(len(rows), int(max_train), replace=False))
        log.info("AE: subsampled %d normal rows (ae.max_train)", len(rows))
    X = X_normal_scaled[rows]
    n_val = int(round(float(cfg["val_fraction"]) * len(X)))
    perm = rng.permutation(len(X))
    val, tr = X[perm[:n_val]], X[perm[n_val:]]
    val_rows = np.sort(rows[perm[:n_val]])
    model = build_autoencoder(X.shape[1], cfg)
    monitor = "val_loss" if n_val > 0 else "loss"
    callbacks = [
        keras.callbacks.EarlyStopping(monitor=monitor, patience=int(cfg["patience"]), restore_best_weights=True),
        keras.callbacks.ReduceLROnPlateau(monitor=monitor, factor=float(cfg["lr_factor"]),
                                          patience=int(cfg["lr_patience"]), min_lr=float(cfg["min_lr"])),
    ]
    hist = model.fit(tr, tr, validation_data=(val, val) if n_val > 0 else None, epochs=int(cfg["epochs"]),
                     batch_size=int(cfg["batch_size"]), shuffle=True, callbacks=callbacks, verbose=0)
    history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    log.info("AE: %d train / %d val normal rows, %d epochs, final loss %.4g", len(tr), n_val,
             len(history.get("loss", [])), history["loss"][-1] if history.get("loss") else float("nan"))
    return model, history, val_rows


def ae_reconstruct(model, X_scaled: np.ndarray, batch_size: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """Reconstruction and latent of each row (inference mode: BN running stats, no dropout)."""
    import keras

    both = _BOTH.get(model)
    if both is None:  # built once per model: a new keras.Model per call would retrace predict
        both = _BOTH[model] = keras.Model(model.inputs, [model.output, model.get_layer(LATENT_LAYER).output])
    recon, latent = both.predict(X_scaled, batch_size=batch_size, verbose=0)
    return np.asarray(recon, np.float32), np.asarray(latent, np.float32)


def ae_weights(model) -> list[np.ndarray]:
    return [np.asarray(w) for w in model.get_weights()]


# ------------------------------------------------------------------------------------------ residuals


@dataclass
class ResidualModel:
    """MSE / Mahalanobis / PCA-GMM / hybrid scores of AE residuals, fitted on normal training residuals."""

    mu: np.ndarray
    precision: np.ndarray
    mse_mean: float
    mse_std: float
    md_mean: float
    md_std: float
    pca: object
    gmm: object
    w_mse: float
    w_md: float

    @classmethod
    def fit(cls, residual_normal: np.ndarray, cfg: dict, seed: int,
            residual_val: np.ndarray | None = None) -> ResidualModel:
        """Mahalanobis and GMM on ``residual_normal``; the hybrid's z-statistics on ``residual_val`` (the
        AE's validation normals) when it has at least 2 rows, else on ``residual_normal`` (logged)."""
        from sklearn.decomposition import PCA
        from sklearn.mixture import GaussianMixture

        r = residual_normal.astype(np.float64)
        d = r.shape[1]
        mu = r.mean(axis=0)
        cov = np.cov(r, rowvar=False).reshape(d, d) + float(cfg["eps"]) * np.eye(d)
        precision = np.linalg.inv(cov)
        if residual_val is not None and len(residual_val) >= 2:
            rz = residual_val.astype(np.float64)
        else:
            log.warning("hybrid z-statistics on the AE's training normals (no validation normals: ae.val_fraction)")
            rz = r
        mse = np.mean(rz ** 2, axis=1)
        md = _mahalanobis(rz, mu, precision)
        n_comp = max(1, min(int(cfg["pca_dim"]), d, len(r) - 1))
        pca = PCA(n_components=n_comp, random_state=seed).fit(r)
        gmm = GaussianMixture(n_components=int(cfg["gmm_components"]), covariance_type=cfg["gmm_covariance"],
                              reg_covar=float(cfg["gmm_reg_covar"]), random_state=seed).fit(pca.transform(r))
        return cls(mu, precision, float(mse.mean()), float(mse.std() + 1e-12), float(md.mean()),
                   float(md.std() + 1e-12), pca, gmm, float(cfg["hybrid_w_mse"]), float(cfg["hybrid_w_md"]))

    def scores(self, residual: np.ndarray) -> dict[str, np.ndarray]:
        r = residual.astype(np.float64)
        mse = np.mean(r ** 2, axis=1)
        md = _mahalanobis(r, self.mu, self.precision)
        hybrid = self.w_mse * (mse - self.mse_mean) / self.mse_std + self.w_md * (md - self.md_mean) / self.md_std
        gmm = -self.gmm.score_samples(self.pca.transform(r))
        return {"mse": mse, "md": md, "hybrid": hybrid, "gmm": gmm}


def _mahalanobis(r: np.ndarray, mu: np.ndarray, precision: np.ndarray) -> np.ndarray:
    return np.sqrt(np.maximum(mahalanobis_squared(r, mu, precision), 0.0))


@dataclass
class ClusterGate:
    """Per-cluster AE thresholds: KMeans on normal latents, q-th percentile of the normal score per cluster."""

    kmeans: object
    thresholds: np.ndarray
    score_name: str
    quantile: float
    relaxed_thresholds: np.ndarray
    relaxed_quantile: float

    @classmethod
    def fit(cls, latent_normal: np.ndarray, score_normal: np.ndarray, cfg: dict, seed: int) -> ClusterGate:
        from sklearn.cluster import KMeans

        k = max(1, min(int(cfg["n_clusters"]), len(latent_normal)))
        km = KMeans(n_clusters=k, n_init=int(cfg.get("n_init", 4)), random_state=seed).fit(latent_normal)

        def per_cluster(q):
            return np.array([np.percentile(score_normal[km.labels_ == c], q) if np.any(km.labels_ == c)
                             else np.inf for c in range(k)])

        q, qr = float(cfg["quantile"]), float(cfg["relaxed_quantile"])
        thr, thr_r = per_cluster(q), per_cluster(qr)
        counts = np.bincount(km.labels_, minlength=k)
        log.info("cluster gate (%s): %d clusters of normal latents, sizes %s, thresholds q%g %s, q%g %s",
                 cfg["score"], k, counts.tolist(), q, np.round(thr, 4).tolist(), qr, np.round(thr_r, 4).tolist())
        return cls(km, thr, str(cfg["score"]), q, thr_r, qr)

    def _thr(self, latent, relaxed):
        return (self.relaxed_thresholds if relaxed else self.thresholds)[self.kmeans.predict(latent)]

    def ratio(self, latent: np.ndarray, score: np.ndarray, relaxed: bool = False) -> np.ndarray:
        """score / threshold of the row's cluster (> 1 means flagged); a continuous gate score."""
        t = self._thr(latent, relaxed)
        return score / np.where(np.abs(t) > 1e-12, t, 1e-12)

    def flag(self, latent: np.ndarray, score: np.ndarray, relaxed: bool = False) -> np.ndarray:
        return (score > self._thr(latent, relaxed)).astype(np.int8)


# ------------------------------------------------------------------------------------------ supervised


def fit_latent_lr(latent: np.ndarray, y: np.ndarray, cfg: dict, seed: int):
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.linear_model import LogisticRegression

    base = LogisticRegression(C=float(cfg["C"]), max_iter=int(cfg["max_iter"]), random_state=seed)
    return CalibratedClassifierCV(base, method="sigmoid", cv=int(cfg["calibration_cv"])).fit(latent, y)


def fit_xgb(X_sup: np.ndarray, y: np.ndarray, cfg: dict, seed: int, threads: int):
    from xgboost import XGBClassifier

    n_pos = int(y.sum())
    spw = (len(y) - n_pos) / max(n_pos, 1)
    params = {k: v for k, v in cfg.items()}
    model = XGBClassifier(**params, scale_pos_weight=spw, random_state=seed, n_jobs=int(threads),
                          eval_metric="logloss")
    return model.fit(X_sup, y)


IFOREST_FITS: tuple[str, ...] = ("all", "normal")


def fit_iforest(X_sup: np.ndarray, cfg: dict, seed: int, threads: int):
    from sklearn.ensemble import IsolationForest

    return IsolationForest(n_estimators=int(cfg["n_estimators"]), max_samples=cfg["max_samples"],
                           random_state=seed, n_jobs=int(threads)).fit(X_sup)


def fit_iforests(X_sup: np.ndarray, y: np.ndarray, cfg: dict, seed: int, threads: int) -> dict:
    """IsolationForest on all training rows (the seed: attacks, when they dominate, become "normal")
    and on the normal ones; both are kept so the comparison table shows both, ``fit_on`` names the
    meta feature's one."""
    return {"all": fit_iforest(X_sup, cfg, seed, threads), "normal": fit_iforest(X_sup[y == 0], cfg, seed, threads),
            "fit_on": str(cfg["fit_on"])}


def iforest_scores(iforests: dict, X_sup: np.ndarray) -> dict[str, np.ndarray]:
    """-score_samples of both forests: {"iso_all": ..., "iso_normal": ...}."""
    return {f"iso_{k}": -iforests[k].score_samples(X_sup) for k in IFOREST_FITS}


# ------------------------------------------------------------------------------------------ one pipeline


@dataclass
class BasePipeline:
    """Every base detector fitted on one training set (a CV fold or the whole training split)."""

    scalers: Scalers
    ae: object
    ae_history: dict
    residual: ResidualModel
    latent_lr: object
    xgb: object
    iforests: dict

    @classmethod
    def fit(cls, X: np.ndarray, y: np.ndarray, cfg: dict, seed: int, threads: int = 1) -> BasePipeline:
        scalers = fit_scalers(X, y, cfg)
        ae, history, val_rows = fit_autoencoder(scalers.ae(X[y == 0]), cfg["ae"], seed)
        residual, ae_out = fit_residual(ae, scalers, X, y, val_rows, cfg, seed)
        latent_lr, xgb, iforests = fit_supervised(scalers, ae_out["latent"], X, y, cfg, seed, threads)
        return cls(scalers, ae, history, residual, latent_lr, xgb, iforests)

    def ae_outputs(self, X: np.ndarray) -> dict[str, np.ndarray]:
        return ae_outputs(self.ae, self.scalers, self.residual, X)

    def meta_features(self, X: np.ndarray) -> np.ndarray:
        return self.scores(X)[0]

    def scores(self, X: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The 5 meta features of rows X and both IsolationForest scores ({"iso_all", "iso_normal"})."""
        out = self.ae_outputs(X)
        iso = iforest_scores(self.iforests, self.scalers.sup(X))
        _, lp, xp = supervised_scores(self.latent_lr, self.xgb, None, self.scalers, out["latent"], X)
        return meta_features_from(out, iso[f"iso_{self.iforests['fit_on']}"], lp, xp), iso


def fit_scalers(X, y, cfg) -> Scalers:
    return Scalers.fit(X, y, cfg["preprocess"]["clip"])


def ae_outputs(ae, scalers: Scalers, residual: ResidualModel | None, X: np.ndarray) -> dict[str, np.ndarray]:
    xs = scalers.ae(X)
    recon, latent = ae_reconstruct(ae, xs)
    out = {"latent": latent, "residual": xs - recon}
    if residual is not None:
        out.update(residual.scores(out["residual"]))
    return out


def fit_residual(ae, scalers: Scalers, X, y, val_rows, cfg, seed):
    """ResidualModel on the normal rows of X; ``val_rows`` (indices into X[y == 0], the AE's validation
    normals) for the hybrid's z-statistics. Returns the model and the AE outputs + scores of every row."""
    out = ae_outputs(ae, scalers, None, X)
    r_normal = out["residual"][y == 0]
    residual = ResidualModel.fit(r_normal, cfg["residual"], seed, r_normal[np.asarray(val_rows, dtype=np.int64)])
    out.update(residual.scores(out["residual"]))
    return residual, out


def fit_supervised(scalers: Scalers, latent, X, y, cfg, seed, threads):
    latent_lr = fit_latent_lr(latent, y, cfg["latent_lr"], seed)
    xs = scalers.sup(X)
    xgb = fit_xgb(xs, y, cfg["xgb"], seed, threads)
    iforests = fit_iforests(xs, y, cfg["iforest"], seed, threads)
    return latent_lr, xgb, iforests


def supervised_scores(latent_lr, xgb, iforest, scalers: Scalers, latent, X) -> tuple[np.ndarray, ...]:
    """(iso score = -score_samples, or None without ``iforest``; latent LR probability; XGBoost probability)."""
    xs = scalers.sup(X)
    iso = None if iforest is None else -iforest.score_samples(xs)
    return iso, latent_lr.predict_proba(latent)[:, 1], xgb.predict_proba(xs)[:, 1]


def meta_features_from(ae_out: dict, iso, lat_prob, xgb_prob) -> np.ndarray:
    """[hybrid, gmm, iso, latent_prob, xgb_prob] (``META_FEATURE_NAMES``), float64 [n, 5]."""
    return np.column_stack([ae_out["hybrid"], ae_out["gmm"], iso, lat_prob, xgb_prob]).astype(np.float64)
