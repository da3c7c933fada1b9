"""Masked top-n% sampling, the paper's diversity mechanism (Section 2.3), in torch.

Example:
    >>> import torch
    >>> q = torch.tensor([[0.0, 3.0, 2.0, 1.0]])
    >>> mask = torch.tensor([[True, False, True, True]])
    >>> top_n_sample(q, mask, n_pct=0.0).tolist()  # n -> 0 is greedy among allowed
    [2]
"""

from __future__ import annotations

import numpy as np
import torch

import agents.kernels as kernels
from oxide_env.chemistry.episode import N_COUNTS


def any_true(mask: torch.Tensor, dim: int, keepdim: bool = False) -> torch.Tensor:
    """``mask.any(dim, keepdim)`` of a bool tensor, read as bytes: the same answer ~10x faster on a CPU.

    torch's boolean reductions run a slow generic loop on ``(100, 800)`` masks (75-150 µs on
    this project's 2-core machine); the max of the same bytes is vectorised (7 µs).

    Example:
        >>> any_true(torch.tensor([[False, True], [False, False]]), dim=1).tolist()
        [True, False]
    """
    return _reduce_bytes(mask, "any", dim, keepdim)


def all_true(mask: torch.Tensor, dim: int, keepdim: bool = False) -> torch.Tensor:
    """``mask.all(dim, keepdim)`` of a bool tensor, read as bytes (see :func:`any_true`).

    Example:
        >>> all_true(torch.tensor([[True, True], [False, True]]), dim=0).tolist()
        [False, True]
    """
    return _reduce_bytes(mask, "all", dim, keepdim)


def _reduce_bytes(mask: torch.Tensor, how: str, dim: int, keepdim: bool) -> torch.Tensor:
    if mask.numel() == 0:  # torch's max / min refuse empty tensors
        return getattr(mask, how)(dim=dim, keepdim=keepdim)
    as_bytes = mask.view(torch.uint8)
    return (as_bytes.amax if how == "any" else as_bytes.amin)(dim=dim, keepdim=keepdim).bool()


def distinct_rows(*arrays: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(first, inverse)``: one row index per distinct row of the arrays read together, and each row's distinct index.

    Rows ``i`` and ``j`` are the same when they are equal, byte for byte, in every array (all
    with the same number of rows). ``arrays[k][first][inverse]`` equals ``arrays[k]``. Lets a
    batch of states be scored once per distinct state (e.g. every episode's first state).

    Example:
        >>> first, inverse = distinct_rows(np.array([[1, 2], [3, 4], [1, 2]]), np.array([[True], [False], [True]]))
        >>> first.tolist(), inverse.tolist()
        ([0, 1], [0, 1, 0])
    """
    n = len(arrays[0])
    parts = []
    for a in arrays:
        a = np.ascontiguousarray(a)
        if len(a) != n:
            raise ValueError(f"distinct_rows needs arrays with the same number of rows; got {len(a)} and {n}.")
        rows = a.reshape(n, -1)
        parts.append(np.packbits(rows, axis=1) if rows.dtype == bool else rows.view(np.uint8))
    key = np.ascontiguousarray(np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0])
    _, first, inverse = np.unique(key.view(np.dtype((np.void, key.shape[1]))).reshape(n), return_index=True,
                                  return_inverse=True)
    return first, inverse.reshape(n)


def top_n_sample(q: torch.Tensor, mask: torch.Tensor, n_pct: float = 20.0,
                 generator: torch.Generator | None = None, rows: torch.Tensor | None = None) -> torch.Tensor:
    """Sample uniformly among the top ``n_pct`` % of the allowed actions of each row, by ``q``.

    Row ``i`` keeps ``k_i = max(1, ceil(n_pct / 100 * allowed_i))`` actions. Runs on the tensors'
    device (on a CPU the selection is :func:`agents.kernels.top_n_pick`, equal values ranked by
    action index; elsewhere ``torch.topk``); rows with no allowed action fall back to all actions
    (callers should not pass any).

    Args:
        q: scores ``(batch, n_actions)``.
        mask: allowed actions, bool ``(batch, n_actions)``.
        n_pct: percentage of allowed actions to sample from (0 = greedy).
        generator: torch generator on the same device, for reproducibility.
        rows: optional index ``(m,)``: draw ``m`` actions, the ``i``-th from row ``rows[i]``
            (many draws from few distinct rows rank each row once).

    Returns:
        Long tensor ``(batch,)`` (or ``(m,)``) of actions.
    """
    if not 0.0 <= n_pct <= 100.0:
        raise ValueError(f"Invalid n_pct={n_pct!r}: expected a percentage in [0, 100].")
    mask = mask.bool()
    if kernels.AVAILABLE and q.device.type == "cpu" and q.dtype == torch.float32:
        # the same draws, and the same actions where the allowed scores differ: each draw's rank is
        # selected in linear time (agents.kernels.top_n_pick) instead of sorting every row's top k
        index = torch.arange(len(q)) if rows is None else rows.to(torch.long)
        u = torch.rand(index.shape[0], device=q.device, generator=generator)
        return torch.from_numpy(kernels.top_n_pick(q.detach().numpy(), mask.numpy(), index.numpy(), u.numpy(), n_pct))
    empty = ~any_true(mask, dim=1, keepdim=True)
    mask = mask | empty
    n_allowed = mask.sum(dim=1)
    k = torch.clamp(torch.ceil(n_allowed.to(torch.float64) * (n_pct / 100.0)).long(), min=1)
    k = torch.minimum(k, n_allowed)
    k_max = int(k.max())
    scores = q.masked_fill(~mask, float("-inf"))
    top = torch.topk(scores, k_max, dim=1).indices  # (batch, k_max), best first
    if rows is not None:
        top, k = top[rows], k[rows]
    u = torch.rand(top.shape[0], device=q.device, generator=generator)
    pick = torch.clamp((u * k).long(), max=k_max - 1)
    pick = torch.minimum(pick, k - 1)
    return top.gather(1, pick[:, None]).squeeze(1)


def merge_noop_actions(q: torch.Tensor, mask: torch.Tensor, n_counts: int = N_COUNTS) -> torch.Tensor:
    """Keep one count-0 action per row (the best-scoring allowed one): the others are the same move.

    Action ``a = n_counts * element + count`` with count 0 adds nothing, so the 80 count-0
    actions all lead to the same next state. Ranked as 80 separate actions they can fill the
    top n% of a row and make top-n% sampling (and ε-exploration) choose "add nothing" far more
    often than any real addition, which collapses generated compositions onto few elements.
    Merging them leaves the set of reachable states and every Q value unchanged.

    Example:
        >>> q = torch.tensor([[5.0, 1.0, 4.0, 0.0]])  # two elements x counts 0-1
        >>> merge_noop_actions(q, torch.ones(1, 4, dtype=torch.bool), n_counts=2).tolist()
        [[True, True, False, True]]
    """
    # only the count-0 columns (every n_counts-th) are ranked: argmax over them in column order picks
    # the same action as over whole rows with the others at -inf
    noop_mask = mask[:, ::n_counts]
    best = q[:, ::n_counts].masked_fill(~noop_mask, float("-inf")).argmax(dim=1) * n_counts
    has_noop = any_true(noop_mask, dim=1)
    keep = mask.clone()
    keep[:, ::n_counts] = False
    keep[torch.arange(len(mask), device=mask.device)[has_noop], best[has_noop]] = True
    return keep


def uniform_allowed(mask: torch.Tensor, generator: torch.Generator | None = None,
                    where: torch.Tensor | None = None) -> torch.Tensor:
    """A uniformly random allowed action per row of ``mask`` (bool ``(batch, n_actions)``).

    One uniform number per row picks the ``j``-th allowed action (a cumulative count), which is
    ~50x cheaper than ``torch.multinomial`` over ``(100, 800)`` weights on a CPU. A row with no
    allowed action draws among all actions.

    Args:
        mask: allowed actions, bool ``(batch, n_actions)``.
        generator: torch generator on the mask's device (``None``: torch's default one).
        where: bool ``(batch,)``: pick only in these rows (the others read -1). One number is
            still drawn for every row, so the generator advances as without ``where`` and the
            picked rows get the same actions (ε-exploration picks in the few rows that explore).

    Example:
        >>> mask = torch.tensor([[False, True, False, True], [False, False, False, False]])
        >>> a = uniform_allowed(mask, torch.Generator().manual_seed(0))
        >>> bool(a[0] in (1, 3)), 0 <= int(a[1]) < 4
        (True, True)
        >>> uniform_allowed(mask, torch.Generator().manual_seed(0), where=torch.tensor([True, False]))[1].item()
        -1
    """
    u = torch.rand(mask.shape[0], device=mask.device, generator=generator)
    if where is None:
        return _pick_allowed(mask, u)
    rows = where.nonzero().squeeze(1)
    picked = torch.full((mask.shape[0],), -1, dtype=torch.long, device=mask.device)
    picked[rows] = _pick_allowed(mask, u, rows)
    return picked


def _pick_allowed(mask: torch.Tensor, u: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
    """The ``floor(u * n_allowed)``-th allowed action of each row of ``mask`` (with ``rows``, of
    those rows only; ``u`` has one number per row of ``mask``); all actions where none is allowed.

    On a CPU one compiled pass (:func:`agents.kernels.uniform_pick`), elsewhere a cumulative sum.
    """
    if kernels.AVAILABLE and mask.device.type == "cpu":
        index = torch.arange(mask.shape[0]) if rows is None else rows
        return torch.from_numpy(kernels.uniform_pick(mask.bool().numpy(), index.numpy(), u[index].numpy()))
    if rows is not None:
        mask, u = mask[rows], u[rows]
    return _cumulative_pick(mask, u)


def _cumulative_pick(mask: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """:func:`_pick_allowed` by a cumulative sum over each row (any device)."""
    mask = mask.bool()
    mask = mask | ~any_true(mask, dim=1, keepdim=True)
    cumulative = mask.cumsum(dim=1)
    n_allowed = cumulative[:, -1]
    j = torch.minimum((u * n_allowed).long(), n_allowed - 1)  # 0-based rank among the allowed actions
    return (cumulative > j[:, None]).to(torch.uint8).argmax(dim=1)
