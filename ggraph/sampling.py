"""Token sampling as llama.cpp's default chain: penalties -> top-k -> top-p -> min-p -> temperature -> dist.

Each stage narrows a candidate set (ids with their logits), the way llama.cpp's samplers pass a
token-data array down the chain:

- repetition penalty: each distinct token among the last repeat_last_n of history has its logit
  divided by repeat_penalty when positive and multiplied by it otherwise (1.0 = off);
- top-k: the k largest logits (k <= 0 = off);
- top-p: the smallest prefix, by decreasing probability, whose probability sums to >= top_p
  (always at least one token; 1.0 = off);
- min-p: tokens whose probability is >= min_p times the largest one (0.0 = off);
- temperature: logits divided by temp; temp <= 0 is greedy (argmax of the penalized logits, the
  first index on ties), as in llama.cpp;
- dist: one draw from the softmax of what is left, with a numpy Generator seeded by `seed`.

top-p and min-p look at the distribution before temperature, as llama.cpp's chain order implies.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from .errors import GGraphError

__all__ = ["Sampler"]


def _number(name, v, lo=None, hi=None, lo_open=False, integer=False):
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(v, bool) or not isinstance(v, kind) or (not integer and not math.isfinite(v)):
        raise GGraphError(f"Sampler: {name} must be a finite {'integer' if integer else 'number'}, got {v!r}")
    if lo is not None and (v <= lo if lo_open else v < lo):
        raise GGraphError(f"Sampler: {name} must be {'>' if lo_open else '>='} {lo}, got {v!r}")
    if hi is not None and v > hi:
        raise GGraphError(f"Sampler: {name} must be <= {hi}, got {v!r}")
    return int(v) if integer else float(v)


class Sampler:
    """Picks the next token from a row of logits (see the module docstring for the chain)."""

    def __init__(self, *, temp=0.8, top_k=40, top_p=0.95, min_p=0.05, repeat_penalty=1.0,
                 repeat_last_n=64, seed=None):
        self.temp = _number("temp", temp)
        self.top_k = _number("top_k", top_k, integer=True)
        self.top_p = _number("top_p", top_p, 0.0, 1.0, lo_open=True)
        self.min_p = _number("min_p", min_p, 0.0, 1.0)
        self.repeat_penalty = _number("repeat_penalty", repeat_penalty, 0.0, lo_open=True)
        self.repeat_last_n = _number("repeat_last_n", repeat_last_n, -1, integer=True)   # -1: all of history
        if seed is not None:
            seed = _number("seed", seed, 0, integer=True)
        self.seed = seed
        self.rng = np.random.default_rng(seed)

    @property
    def greedy(self) -> bool:
        return self.temp <= 0.0

    def reseed(self, seed=None) -> None:
        """Restart the random stream (same seed -> same draws)."""
        if seed is not None:
            seed = _number("seed", seed, 0, integer=True)
        self.seed = seed
        self.rng = np.random.default_rng(seed)

    # ---- stages

    def _penalize(self, logits: np.ndarray, history) -> np.ndarray:
        if self.repeat_penalty == 1.0 or self.repeat_last_n == 0 or history is None or len(history) == 0:
            return logits
        recent = history if self.repeat_last_n < 0 else history[-self.repeat_last_n:]
        ids = np.unique(np.asarray(recent, dtype=np.int64))
        if ids.size and (ids[0] < 0 or ids[-1] >= logits.shape[0]):
            bad = ids[0] if ids[0] < 0 else ids[-1]
            raise GGraphError(f"Sampler.sample: history token {int(bad)} outside the vocabulary [0, {logits.shape[0]})")
        out = logits.copy()
        sel = out[ids]
        out[ids] = np.where(sel <= 0, sel * self.repeat_penalty, sel / self.repeat_penalty)
        return out

    def _sorted(self, ids, vals, total):
        """Candidates by decreasing logit (ties: lower id first). With top-p on a large set, sort
        only the best 256 when they already hold top_p of the probability (llama.cpp does the same)."""
        if total is not None and ids.size > 1024:
            part = np.argpartition(-vals, 255)[:256]
            order = part[np.lexsort((ids[part], -vals[part]))]
            if np.exp(vals[order] - vals[order[0]]).sum() / total >= self.top_p:
                return ids[order], vals[order]
        order = np.lexsort((ids, -vals))
        return ids[order], vals[order]

    def sample(self, logits: np.ndarray, history=()) -> int:
        """The next token id. logits: (n_vocab,) floats; history: the tokens so far (for the penalty)."""
        ids, probs = self._chain(logits, history, ordered=False)
        if ids.size == 1:
            return int(ids[0])
        cum = np.cumsum(probs)
        r = self.rng.random() * cum[-1]
        return int(ids[min(int(np.searchsorted(cum, r, side="right")), ids.size - 1)])

    def candidates(self, logits: np.ndarray, history=()) -> tuple[np.ndarray, np.ndarray]:
        """What the chain keeps before the draw: ids by decreasing probability, and their
        probabilities after temperature (float64, summing to 1). Greedy: the argmax alone."""
        return self._chain(logits, history, ordered=True)

    def _chain(self, logits, history, ordered):
        logits = np.asarray(logits)
        if logits.ndim != 1 or logits.shape[0] == 0 or not np.issubdtype(logits.dtype, np.floating):
            raise GGraphError(f"Sampler.sample: logits must be a non-empty 1-d float array, got "
                              f"{logits.dtype} of shape {logits.shape}")
        logits = self._penalize(logits, history)
        best = int(np.argmax(logits))
        top = float(logits[best])
        if not math.isfinite(top) or np.isnan(logits).any():
            raise GGraphError("Sampler.sample: logits contain NaN or have no finite maximum")
        if self.greedy:
            return np.array([best]), np.ones(1)

        n = logits.shape[0]
        # top-k: the k largest logits (unordered for now)
        if 0 < self.top_k < n:
            ids = np.argpartition(logits, n - self.top_k)[n - self.top_k:]
        else:
            ids = np.arange(n)
        vals = logits[ids].astype(np.float64)
        # top-p and min-p each keep a prefix of the candidates sorted by decreasing logit, so the
        # chain keeps the shorter of the two. top-p's probabilities are over all top-k candidates.
        if self.top_p < 1.0:
            total = float(np.exp(vals - top).sum())
        if self.min_p > 0.0:
            mask = vals >= top + math.log(self.min_p)
            ids, vals = ids[mask], vals[mask]
        if ordered or self.top_p < 1.0:        # a draw needs no order unless top-p cuts a prefix
            ids, vals = self._sorted(ids, vals, total if self.top_p < 1.0 else None)
        if self.top_p < 1.0 and ids.size > 1:
            cum = np.cumsum(np.exp(vals - top)) / total
            keep = min(int(np.searchsorted(cum, self.top_p, side="left")) + 1, ids.size)
            ids, vals = ids[:keep], vals[:keep]

        p = np.exp((vals - top) / self.temp)
        return ids, p / p.sum()

    def __repr__(self) -> str:
        return (f"Sampler(temp={self.temp}, top_k={self.top_k}, top_p={self.top_p}, min_p={self.min_p}, "
                f"repeat_penalty={self.repeat_penalty}, repeat_last_n={self.repeat_last_n}, seed={self.seed})")
