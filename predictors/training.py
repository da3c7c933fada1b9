"""Training and evaluation of the five predictors (kept out of the model classes).

Protocol (as the paper, Appendix A.2): a seeded random 90/10 train/test split of the
curated table. Inside the 90 %, a further 10 % is held out for choosing the best epoch;
the reported metrics are on the untouched 10 % test split, and the shipped model is the
one trained on the 90 % (so the numbers describe the model users get).

Example (a few seconds):
    >>> from predictors.training import TrainConfig, train
    >>> predictor, report = train("bulk_modulus", TrainConfig(epochs=2, n_members=2, hidden=32))
    >>> sorted(report["test"])
    ['mae', 'r2', 'rmse']
    >>> sorted(report["std_calibration"])  # fitted on the validation split
    ['floor', 'method', 'n', 'quantile', 'scale', 'z95']
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import numpy as np

from predictors.base import DESCRIPTIONS, UNITS, Predictor, check_name
from predictors.calibration import fit_std_calibration


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of one predictor's training run."""

    seed: int = 0
    test_fraction: float = 0.1
    val_fraction: float = 0.1
    n_members: int = 5
    hidden: int = 256
    depth: int = 3
    dropout: float = 0.0
    epochs: int = 100
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 1e-4
    huber_beta: float = 0.25
    max_steps: int | None = None


DEFAULT_CONFIGS: dict[str, TrainConfig] = {
    "formation_energy": TrainConfig(epochs=100, batch_size=512, hidden=384, n_members=4, huber_beta=0.1),
    "bulk_modulus": TrainConfig(epochs=60),
    "shear_modulus": TrainConfig(epochs=60),
    "sintering_temperature": TrainConfig(epochs=100, hidden=384, dropout=0.2, huber_beta=1.0),
    "calcination_temperature": TrainConfig(epochs=100, hidden=384, dropout=0.2, huber_beta=1.0),
}
"""The shipped models' hyperparameters (chosen on the validation split, see benchmarks/predictor_report.py)."""


def split_indices(n: int, *, seed: int, test_fraction: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random train / test indices (test = ``round(test_fraction * n)`` rows)."""
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    n_test = int(round(test_fraction * n))
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def split_rows(n: int, config: TrainConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``(fit, validation, test)`` row indices :func:`train` uses for a table of ``n`` rows.

    Test: :func:`split_indices` with ``config.seed``; validation: ``config.val_fraction`` of the
    rest with ``config.seed + 1``; fit: the remainder. Rebuild a shipped model's splits with
    ``split_rows(len(table), TrainConfig(**predictor.metadata["config"]))``.

    Example:
        >>> fit, val, test = split_rows(100, TrainConfig())
        >>> len(fit), len(val), len(test)
        (81, 9, 10)
    """
    train_idx, test_idx = split_indices(n, seed=config.seed, test_fraction=config.test_fraction)
    fit_idx, val_idx = split_indices(len(train_idx), seed=config.seed + 1, test_fraction=config.val_fraction)
    return train_idx[fit_idx], train_idx[val_idx], test_idx


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """R², MAE and RMSE."""
    err = y_pred - y_true
    ss_res = float(np.sum(err**2))
    ss_tot = float(np.sum((y_true - y_true.mean()) ** 2))
    return {"r2": 1.0 - ss_res / ss_tot, "mae": float(np.mean(np.abs(err))),
            "rmse": float(np.sqrt(np.mean(err**2)))}


def train(name: str, config: TrainConfig | None = None, *, table=None,
          splits: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
          progress: bool = False, device: str = "cpu", features: np.ndarray | None = None
          ) -> tuple[Predictor, dict]:
    """Train one predictor on its curated table and evaluate it on the test split.

    Args:
        name: predictor name.
        config: hyperparameters (default: :data:`DEFAULT_CONFIGS`).
        table: a ``formula, target`` DataFrame to train on (default: the shipped curated table).
        splits: ``(fit, validation, test)`` row indices of ``table`` (default: :func:`split_rows`),
            e.g. the folds of an external protocol (``benchmarks/matbench.py``).
        progress: show a tqdm progress bar over epochs.
        features: the ``(len(table), 145)`` Magpie features of ``table`` (default: computed here
            with :func:`oxide_env.chemistry.features.featurize`, which needs the project's 80
            elements; pass matminer's features for other rows, e.g. ``benchmarks/matbench.py``).
        device: the torch device to train on (``"cpu"``, ``"cuda"``, ...); the returned
            predictor is on the CPU either way. CPU and GPU runs of the same seed differ in the
            last digits (other kernels), so a result records its device.

    Returns:
        ``(predictor, report)``; the report holds dataset sizes, test metrics, the test
        predictions, training time and the configuration.
    """
    import torch
    from tqdm.auto import tqdm

    from oxide_env.chemistry.features import featurize
    from predictors.data import load_table
    from predictors.model import EnsembleMLP

    check_name(name)
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"Invalid device={device!r}: expected a torch device such as 'cpu' or 'cuda'.") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"Invalid device={str(device)!r}: CUDA is not available here; use device='cpu'.")
    cfg = config or DEFAULT_CONFIGS[name]
    t_start = time.perf_counter()
    table = load_table(name) if table is None else table
    formulas = table["formula"].tolist()
    if features is None:
        x_all = featurize(formulas).astype(np.float32)
    else:
        x_all = np.asarray(features, dtype=np.float32)
        if x_all.shape != (len(formulas), 145) or not np.isfinite(x_all).all():
            raise ValueError(f"Invalid features of shape {x_all.shape}: expected finite values of shape "
                             f"({len(formulas)}, 145), one row per table row.")
    y_all = table["target"].to_numpy(np.float64)
    if splits is None:
        fit_idx, val_idx, test_idx = split_rows(len(y_all), cfg)
    else:
        fit_idx, val_idx, test_idx = (np.asarray(s, dtype=np.intp) for s in splits)
        if not len(fit_idx) or not len(val_idx) or not len(test_idx):
            raise ValueError(f"Invalid splits of sizes {len(fit_idx)}, {len(val_idx)}, {len(test_idx)}: the fit, "
                             "validation and test rows must all be non-empty.")

    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    net = EnsembleMLP(x_all.shape[1], hidden=cfg.hidden, depth=cfg.depth,
                      n_members=cfg.n_members, dropout=cfg.dropout)
    x_fit = torch.from_numpy(x_all[fit_idx])
    y_fit = torch.from_numpy(y_all[fit_idx].astype(np.float32))
    net.set_normalization(x_fit.mean(0), x_fit.std(0), float(y_fit.mean()), float(y_fit.std()))
    y_fit_n = ((y_fit - net.y_mean) / net.y_std).to(device)
    x_fit = x_fit.to(device)
    net.to(device)
    x_val = torch.from_numpy(x_all[val_idx]).to(device)
    y_val = y_all[val_idx]

    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = int(np.ceil(len(fit_idx) / cfg.batch_size))
    total_steps = steps_per_epoch * cfg.epochs
    if cfg.max_steps is not None:
        total_steps = min(total_steps, cfg.max_steps)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total_steps, pct_start=0.1)
    best_mae, best_state, best_epoch, step = np.inf, None, -1, 0
    # epochs actually run (max_steps may stop earlier); the bar is advanced by hand, since a
    # `break` out of `for epoch in tqdm(...)` left it one short (1/2 after the last epoch)
    n_epochs = min(cfg.epochs, -(-total_steps // steps_per_epoch))
    bar = tqdm(total=n_epochs, desc=f"train {name}", unit="epoch", disable=not progress)
    for epoch in range(n_epochs):
        net.train()
        perm = torch.randperm(len(fit_idx), generator=gen)
        for start in range(0, len(perm), cfg.batch_size):
            if step >= total_steps:
                break
            batch = perm[start : start + cfg.batch_size].to(device)
            pred = net.forward_normalized(x_fit[batch])  # (members, batch)
            loss = torch.nn.functional.smooth_l1_loss(
                pred, y_fit_n[batch].expand_as(pred), beta=cfg.huber_beta
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
        net.eval()
        with torch.inference_mode():
            val_mae = float(np.mean(np.abs(net(x_val).mean(0).cpu().numpy() - y_val)))
        if val_mae < best_mae:
            best_mae, best_epoch = val_mae, epoch
            best_state = {k: v.clone() for k, v in net.state_dict().items()}
        bar.set_postfix(val_mae=f"{val_mae:.4g}", best=f"{best_mae:.4g}", refresh=False)
        bar.update(1)
        if step >= total_steps:
            break
    bar.close()
    net.load_state_dict(best_state)
    net.to("cpu")
    x_val = x_val.cpu()
    net.eval()
    train_seconds = time.perf_counter() - t_start

    with torch.inference_mode():
        members = net(torch.from_numpy(x_all[test_idx])).numpy().astype(np.float64)
        val_members = net(x_val).numpy().astype(np.float64)
    y_test = y_all[test_idx]
    test = regression_metrics(y_test, members.mean(0))
    std_calibration = None
    if len(val_idx) >= 20:  # sigma = sqrt((scale * std)**2 + floor**2), fitted on validation
        std_calibration = fit_std_calibration(val_members.std(0), val_members.mean(0) - y_val)
    report = {
        "name": name,
        "units": UNITS[name],
        "description": DESCRIPTIONS[name],
        "n_total": int(len(y_all)),
        "n_train": int(len(fit_idx) + len(val_idx)),
        "n_test": int(len(test_idx)),
        "test": test,
        "target_min": float(y_all.min()),
        "target_max": float(y_all.max()),
        "best_epoch": int(best_epoch),
        "val_mae": float(best_mae),
        "train_seconds": float(train_seconds),
        "config": dataclasses.asdict(cfg),
        "test_formulas": [formulas[i] for i in test_idx],
        "test_true": y_test.tolist(),
        "test_pred": members.mean(0).tolist(),
        "test_std": members.std(0).tolist(),
        "std_calibration": std_calibration,
    }
    meta = {k: v for k, v in report.items() if not k.startswith("test_")}
    if std_calibration is None:
        del meta["std_calibration"]
    predictor = Predictor(name=name, units=UNITS[name], net=net, metadata=meta)
    return predictor, report
