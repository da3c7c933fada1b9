"""Applicability domain of each predictor: is a composition near what the model was trained on?

A model's ensemble spread does not flag extrapolation reliably (it exceeds its own training
95th percentile for most random compositions). The domain score here is geometric: the
distance from a composition to its nearest training composition, in the space of the
model's 145 Magpie features standardized with the training mean and std and projected on
their first ``dims`` principal components (computed on the training split). The threshold
is the 95th percentile of the same distance for training compositions to their nearest
*other* training composition (leave-one-out), so about 95 % of held-out compositions like
the training data fall inside, and a composition beyond it is out of domain.

Measured (``python benchmarks/domain.py``, in ``benchmarks/results/domain.md``): AUROC for
telling held-out test compositions from the random baseline, and the Spearman correlation
of the score with the absolute error on the test split, per predictor.

The fitted models ship as ``predictors/weights/<name>.domain.safetensors`` + ``.json``
(rebuild: ``python -m predictors.domain``).

Example:
    >>> from predictors.domain import load_domain
    >>> domain = load_domain("bulk_modulus")
    >>> domain.in_domain(["MgO", "Os8Re10H9O7"]).tolist()
    [True, False]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np

from predictors.base import PREDICTOR_NAMES, check_name, weights_dir

__all__ = ["DomainModel", "fit_domain", "load_domain"]

_BLOCK = 2048
_QUERY_BLOCK = 64
_REFERENCE_BLOCK = 16384


@dataclass
class DomainModel:
    """Nearest-training-neighbour distance in standardized, PCA-projected feature space.

    Attributes:
        name: the predictor whose training data define the domain.
        mean, std: feature standardization ``(145,)`` (training split).
        components: projection ``(145, dims)``.
        reference: projected training compositions ``(n, dims)``.
        threshold: distances above it are out of domain.
        metadata: how it was fitted.
    """

    name: str
    mean: np.ndarray
    std: np.ndarray
    components: np.ndarray
    reference: np.ndarray
    threshold: float
    metadata: dict

    @cached_property
    def _reference_norms(self) -> np.ndarray:
        # squared norms of the training rows, computed once (every terminal batch of an env scores)
        return np.einsum("ij,ij->i", self.reference, self.reference)

    def project(self, features: np.ndarray) -> np.ndarray:
        z = (np.asarray(features, dtype=np.float64) - self.mean) / self.std
        return (z @ self.components).astype(np.float32)

    def score_features(self, features: np.ndarray, *, exclude_self: bool = False) -> np.ndarray:
        """Distance to the nearest training composition for precomputed features ``(n, 145)``.

        ``exclude_self`` skips the nearest match (for queries that are training rows).
        """
        q = self.project(features)
        ref, ref_norm = self.reference, self._reference_norms
        out = np.empty(len(q))
        if exclude_self:
            for start in range(0, len(q), _BLOCK):
                b = q[start : start + _BLOCK]
                d2 = np.einsum("ij,ij->i", b, b)[:, None] + ref_norm[None, :] - 2.0 * (b @ ref.T)
                np.maximum(d2, 0.0, out=d2)
                out[start : start + len(b)] = np.sqrt(np.partition(d2, 1, axis=1)[:, 1])
            return out
        # the nearest row by |r|^2 - 2 q.r in float32, in place on small blocks (an env scores every
        # terminal batch), then its distance again in float64. The training rows are scanned in
        # blocks too, keeping each query's best so far: a (64, 16384) block stays in cache, where
        # (256, 84k) went through memory (3x slower). Strict "<" across blocks and argmin's first
        # index within one keep the first nearest row, as one argmin over all rows would.
        rows = np.arange(_QUERY_BLOCK)
        for start in range(0, len(q), _QUERY_BLOCK):
            b = q[start : start + _QUERY_BLOCK]
            best = np.full(len(b), np.inf, dtype=np.float32)
            nearest = np.zeros(len(b), dtype=np.int64)
            for first in range(0, len(ref), _REFERENCE_BLOCK):
                x = b @ ref[first : first + _REFERENCE_BLOCK].T
                x *= -2.0
                x += ref_norm[first : first + _REFERENCE_BLOCK]
                i = x.argmin(axis=1)
                value = x[rows[: len(b)], i]
                closer = value < best
                best[closer] = value[closer]
                nearest[closer] = i[closer] + first
            out[start : start + len(b)] = np.sqrt(((b.astype(np.float64) - ref[nearest].astype(np.float64)) ** 2
                                                   ).sum(axis=1))
        return out

    def score(self, compositions: str | Sequence[str] | np.ndarray) -> np.ndarray:
        """Distance of each composition to the nearest training composition (larger = farther).

        The empty composition scores NaN (never in domain).
        """
        from oxide_env.chemistry.features import featurize

        features = featurize(compositions)
        out = self.score_features(features)
        out[~features.any(axis=1)] = np.nan
        return out

    def in_domain(self, compositions: str | Sequence[str] | np.ndarray) -> np.ndarray:
        """Whether each composition's score is at most :attr:`threshold` (NaN: False)."""
        return self.score(compositions) <= self.threshold

    def save(self, directory: str | Path | None = None) -> Path:
        from safetensors.numpy import save_file

        directory = Path(directory) if directory is not None else weights_dir()
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{self.name}.domain.safetensors"
        tmp = path.with_suffix(".tmp")
        save_file(
            {
                "mean": self.mean.astype(np.float64),
                "std": self.std.astype(np.float64),
                "components": self.components.astype(np.float64),
                "reference": self.reference.astype(np.float16),
            },
            str(tmp),
        )
        tmp.replace(path)
        meta = dict(self.metadata, name=self.name, threshold=self.threshold)
        json_path = directory / f"{self.name}.domain.json"
        json_tmp = json_path.with_suffix(".tmp")
        json_tmp.write_text(json.dumps(meta, indent=2) + "\n")
        json_tmp.replace(json_path)
        return path


def _features_and_split(name: str):
    from oxide_env.chemistry.features import featurize
    from predictors.data import load_table
    from predictors.training import split_indices

    table = load_table(name)
    meta_path = weights_dir() / f"{name}.json"
    seed = json.loads(meta_path.read_text()).get("config", {}).get("seed", 0) if meta_path.is_file() else 0
    features = featurize(table["formula"].tolist())
    train_idx, test_idx = split_indices(len(table), seed=seed, test_fraction=0.1)
    return table, features, train_idx, test_idx, seed


def fit_domain(name: str, *, dims: int = 32, quantile: float = 0.95, max_calibration: int = 5000,
               seed: int = 0) -> DomainModel:
    """Fit the domain model of one predictor on its training split (see module docstring).

    Args:
        name: predictor name.
        dims: principal components kept.
        quantile: leave-one-out quantile that sets the threshold.
        max_calibration: training rows (a seeded random subset) used to set the threshold.
        seed: seeds that subset.
    """
    check_name(name)
    table, features, train_idx, _, split_seed = _features_and_split(name)
    x = features[train_idx].astype(np.float64)
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    std[std == 0] = 1.0
    z = (x - mean) / std
    _, _, vt = np.linalg.svd(z, full_matrices=False)
    components = vt[:dims].T.copy()
    # float16 is how the reference ships; calibrate on exactly what is shipped
    reference = (z @ components).astype(np.float16).astype(np.float32)
    model = DomainModel(name, mean, std, components, reference, threshold=np.inf, metadata={})
    rng = np.random.default_rng(seed)
    calib = rng.choice(len(x), size=min(max_calibration, len(x)), replace=False)
    loo = model.score_features(x[calib], exclude_self=True)
    model.threshold = float(np.quantile(loo, quantile))
    model.metadata = {
        "dims": dims, "quantile": quantile, "calibration_rows": int(len(calib)),
        "training_rows": int(len(x)), "split_seed": int(split_seed),
        "rule": "nearest training composition, standardized Magpie features, PCA; "
                "threshold = leave-one-out quantile on the training split",
    }
    return model


@lru_cache(maxsize=None)
def load_domain(name: str) -> DomainModel:
    """The shipped domain model of a predictor (cached; no unpickling).

    Raises:
        ValueError: for an unknown predictor name.
        FileNotFoundError: if the files are missing (rebuild with ``python -m predictors.domain``).
    """
    from safetensors.numpy import load_file

    check_name(name)
    path = weights_dir() / f"{name}.domain.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; rebuild it with `python -m predictors.domain`.")
    tensors = load_file(str(path))
    meta = json.loads((weights_dir() / f"{name}.domain.json").read_text())
    return DomainModel(
        name=name, mean=tensors["mean"], std=tensors["std"], components=tensors["components"],
        reference=tensors["reference"].astype(np.float32), threshold=float(meta["threshold"]), metadata=meta,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m predictors.domain",
        description="Fit and save the applicability-domain model of each predictor "
                    "(predictors/weights/<name>.domain.*).",
    )
    parser.add_argument("--property", nargs="+", choices=PREDICTOR_NAMES, default=list(PREDICTOR_NAMES))
    parser.add_argument("--dims", type=int, default=32, help="principal components kept (default 32)")
    parser.add_argument("--out", type=Path, default=None, help="directory (default: the shipped weights)")
    args = parser.parse_args(argv)
    for name in args.property:
        t = time.perf_counter()
        model = fit_domain(name, dims=args.dims)
        path = model.save(args.out)
        print(f"{name}: threshold {model.threshold:.4f}, {len(model.reference)} training rows, "
              f"{time.perf_counter() - t:.1f} s -> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
