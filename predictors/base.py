"""The predictor interface: ``predict(compositions) -> np.ndarray`` with units and uncertainty.

A :class:`Predictor` wraps a trained :class:`~predictors.model.EnsembleMLP` and the
project's featurizer. Weights live in ``predictors/weights/<name>.safetensors`` (tensors
only, loaded without unpickling) beside ``<name>.json`` (architecture, units, training
metrics and provenance).

Example:
    >>> import predictors
    >>> model = predictors.load("bulk_modulus")
    >>> model.units
    'ln(GPa)'
    >>> model.predict(["MgO", "Al2O3"]).shape
    (2,)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

PREDICTOR_NAMES: tuple[str, ...] = (
    "formation_energy",
    "bulk_modulus",
    "shear_modulus",
    "sintering_temperature",
    "calcination_temperature",
)
"""Names accepted by :func:`load`."""

UNITS: dict[str, str] = {
    "formation_energy": "eV/atom",
    "bulk_modulus": "ln(GPa)",
    "shear_modulus": "ln(GPa)",
    "sintering_temperature": "degC",
    "calcination_temperature": "degC",
}
DESCRIPTIONS: dict[str, str] = {
    "formation_energy": "formation energy per atom (DFT, Materials Project)",
    "bulk_modulus": "natural log of the VRH bulk modulus (DFT, Materials Project)",
    "shear_modulus": "natural log of the VRH shear modulus (DFT, Materials Project)",
    "sintering_temperature": "sintering temperature (text-mined solid-state syntheses)",
    "calcination_temperature": "final calcination temperature (text-mined solid-state syntheses)",
}


_SMALL_BATCH = 16  # rows below which prediction runs in numpy
_BLOCK = 1024  # rows per forward pass for large batches


class NotFittedError(RuntimeError):
    """Raised when a predictor has no trained weights."""


def check_name(name: str) -> str:
    if name not in PREDICTOR_NAMES:
        raise ValueError(f"Unknown predictor {name!r}; choose one of {', '.join(PREDICTOR_NAMES)}.")
    return name


def weights_dir() -> Path:
    return Path(str(resources.files("predictors").joinpath("weights")))


@dataclass
class Predictor:
    """A composition-only property model with an ensemble uncertainty.

    Attributes:
        name: property name, one of :data:`PREDICTOR_NAMES`.
        units: units of the predictions.
        net: the trained ensemble (``None`` until fitted).
        metadata: training metrics, hyperparameters and provenance.
    """

    name: str
    units: str
    net: Any = None
    metadata: dict[str, Any] | None = None
    _numpy_weights: Any = field(default=None, init=False, repr=False, compare=False)
    _shipped: bool = field(default=False, init=False, repr=False, compare=False)

    def __reduce_ex__(self, protocol: int):
        # A shipped predictor pickles as a reference to the package's weights (a few bytes, not
        # 3-7 MB): an environment (which holds five) pickles small and unpickles to the same objects.
        if self._shipped:
            return load, (self.name,)
        return super().__reduce_ex__(protocol)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_numpy_weights"] = None  # a cache of the net's weights, rebuilt on first use
        return state

    def _features(self, compositions: str | Sequence[str] | np.ndarray) -> np.ndarray:
        from oxide_env.chemistry.features import featurize

        return featurize(compositions)

    def predict_members(self, compositions: str | Sequence[str] | np.ndarray) -> np.ndarray:
        """Predictions of every ensemble member, shape ``(n_members, n)``."""
        return self.members_from_features(self._features(compositions))

    def members_from_features(self, features: np.ndarray) -> np.ndarray:
        """Member predictions from precomputed 145 Magpie features ``(n, 145)``.

        Lets several predictors share one featurization (the environment's rewards do).
        """
        if self.net is None:
            raise NotFittedError(
                f"Predictor {self.name!r} has no weights; train it with `oxide-rl train-predictors`."
            )
        import torch

        features = np.asarray(features)
        if features.ndim != 2 or features.shape[1] != 145 or features.dtype.kind not in "fiu":
            raise ValueError(
                f"Invalid features of shape {features.shape} and dtype {features.dtype}: expected the "
                "(n, 145) float Magpie features of oxide_env.featurize."
            )
        if not np.all(np.isfinite(features)):
            raise ValueError(f"Invalid features: {int((~np.isfinite(features)).sum())} entries are not finite.")
        empty = ~features.any(axis=1)
        if empty.any():
            rows = np.flatnonzero(empty)[:10].tolist()
            raise ValueError(f"Cannot predict {self.name} of an empty composition (rows {rows}).")
        x = np.ascontiguousarray(features, dtype=np.float32)
        if len(x) <= _SMALL_BATCH:
            return self._members_numpy(x)
        xt = torch.from_numpy(x)
        with torch.inference_mode():  # blocks of 1,024 rows keep activations in cache (~1.5x faster)
            out = torch.cat([self.net(xt[i : i + _BLOCK]) for i in range(0, len(xt), _BLOCK)], dim=1)
        return out.numpy().astype(np.float64)

    def _members_numpy(self, x: np.ndarray) -> np.ndarray:
        """The same forward pass in numpy: for a few rows, torch's per-call overhead dominates."""
        if self._numpy_weights is None:
            sd = {k: v.detach().cpu().numpy() for k, v in self.net.state_dict().items()}
            n_layers = len(self.net.weights)
            self._numpy_weights = (
                sd["x_mean"], sd["x_std"], float(sd["y_mean"]), float(sd["y_std"]),
                [(sd[f"weights.{i}"], sd[f"biases.{i}"]) for i in range(n_layers)],
            )
        x_mean, x_std, y_mean, y_std, layers = self._numpy_weights
        h = ((x - x_mean) / x_std)[None]  # (1, n, d) broadcast over members
        for i, (w, b) in enumerate(layers):
            h = h @ w + b
            if i < len(layers) - 1:
                with np.errstate(over="ignore"):  # exp(-h) = inf for h < -88 (float32) gives SiLU's exact -0
                    h = h / (1.0 + np.exp(-h))  # SiLU
        return (h[..., 0] * y_std + y_mean).astype(np.float64)

    @property
    def std_calibration(self) -> dict[str, Any] | None:
        """The uncertainty calibration of the metadata (``scale``, ``floor``, ``z95``), or ``None``.

        Fitted on the validation split (:mod:`predictors.calibration`); ``None`` leaves
        :meth:`predict_std` the raw ensemble std.
        """
        return (self.metadata or {}).get("std_calibration")

    def std_from_members(self, members: np.ndarray) -> np.ndarray:
        """Calibrated σ ``(n,)`` from member predictions ``(n_members, n)`` (see :meth:`predict_std`).

        The one place the calibration is applied: :meth:`predict_std`, :meth:`predict_with_std`
        and the environment's ``property_std`` (from :meth:`members_from_features`) all use it.
        """
        from predictors.calibration import calibrated_std

        return calibrated_std(np.asarray(members).std(axis=0), self.std_calibration)

    def predict_with_std(self, compositions: str | Sequence[str] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Ensemble mean and calibrated σ (as :meth:`predict_std`), each of shape ``(n,)``."""
        members = self.predict_members(compositions)
        return members.mean(axis=0), self.std_from_members(members)

    def predict(self, compositions: str | Sequence[str] | np.ndarray) -> np.ndarray:
        """Predicted property (ensemble mean) in :attr:`units`, shape ``(n,)``.

        Args:
            compositions: formulas (a bare string is one formula), ``{element: amount}`` dicts,
                an ``(80,)`` count/amount vector or an ``(n, 80)`` matrix; the forms and limits
                of :func:`oxide_env.chemistry.composition.as_amount_matrix` (at most 20
                distinct elements, amounts finite and within int64).

        Cost: one composition of up to 20 elements takes < 0.1 s (featurization is bounded,
        the network is fixed-size); batches are linear in the number of rows.

        Raises:
            TypeError: for ``None``, numbers, bytes or complex amounts.
            ValueError: for unknown elements, malformed formulas, out-of-range amounts or
                empty compositions.
        """
        return self.predict_members(compositions).mean(axis=0)

    def predict_std(self, compositions: str | Sequence[str] | np.ndarray) -> np.ndarray:
        """Calibrated uncertainty σ in :attr:`units`, shape ``(n,)``: large values flag extrapolation.

        ``σ = sqrt((scale * std)**2 + floor**2)`` of the ensemble std, with ``scale`` and
        ``floor`` fitted on the validation split so that ±σ holds 68 % of the errors (65-70 %
        on the test splits); the errors are heavy-tailed, so a 95 % interval is
        ``± z95 * σ`` with ``z95 = predictor.std_calibration["z95"]`` (2.7-4.0), not ±2σ.
        Without a calibration in the metadata (a freshly built :class:`Predictor`), the raw
        ensemble std. The raw std: ``predict_members(compositions).std(axis=0)``.
        See :mod:`predictors.calibration` and ``benchmarks/results/calibration.md``.
        """
        return self.std_from_members(self.predict_members(compositions))

    __call__ = predict

    def save(self, directory: str | Path | None = None) -> Path:
        """Write ``<name>.safetensors`` and ``<name>.json`` into ``directory``."""
        from safetensors.torch import save_file

        directory = Path(directory) if directory is not None else weights_dir()
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous() for k, v in self.net.state_dict().items()}
        save_file(state, str(directory / f"{self.name}.safetensors"))
        meta = dict(self.metadata or {})
        meta.update(name=self.name, units=self.units, architecture=self.net.config())
        (directory / f"{self.name}.json").write_text(json.dumps(meta, indent=2) + "\n")
        return directory / f"{self.name}.safetensors"


def load_from(directory: str | Path, name: str) -> Predictor:
    """Load a predictor saved by :meth:`Predictor.save` (no unpickling)."""
    from safetensors.torch import load_file

    from predictors.model import EnsembleMLP

    check_name(name)
    directory = Path(directory)
    meta_path = directory / f"{name}.json"
    if not meta_path.is_file():
        raise NotFittedError(
            f"No weights for predictor {name!r} in {directory}; train with `oxide-rl train-predictors`."
        )
    meta = json.loads(meta_path.read_text())
    net = EnsembleMLP(**meta["architecture"])
    net.load_state_dict(load_file(str(directory / f"{name}.safetensors")))
    net.eval()
    return Predictor(name=name, units=meta["units"], net=net, metadata=meta)


@lru_cache(maxsize=None)
def _load_shipped(name: str) -> Predictor:
    predictor = load_from(weights_dir(), name)
    predictor._shipped = True
    return predictor


def load(name: str) -> Predictor:
    """Load a shipped, pretrained predictor by name (cached).

    Args:
        name: one of ``formation_energy`` (eV/atom), ``bulk_modulus`` (ln GPa),
            ``shear_modulus`` (ln GPa), ``sintering_temperature`` (degC).

    Raises:
        ValueError: for an unknown name.

    Example:
        >>> load("formation_energy").units
        'eV/atom'
    """
    return _load_shipped(check_name(name))
