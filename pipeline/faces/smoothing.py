"""Temporal smoothing of head-pose estimates in video: the one definition of the filter and its constants.

An exponential moving average per angle, ``out = prev + alpha * (new - prev)``, restarted from the new
value when two estimates are more than ``max_gap_s`` apart (face lost, camera paused) or time runs
backwards: a stale pose is never dragged into a new one. ``alpha`` 0.5 halves frame-to-frame jitter's
weight each frame and still follows a turning head within a few frames at 30 fps; a gap of 0.5 s is
about where a face that left the frame is a new situation rather than a dropped frame.

Export writes these constants into every face model's ``model_meta.json`` as top-level
``"smoothing": {"alpha": ..., "max_gap_s": ...}`` (:func:`meta_entry`); ``python -m pipeline predict
--smooth`` and the Android app's ``PoseSmoother`` read them from there, so both smooth alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

ALPHA = 0.5
MAX_GAP_S = 0.5


def meta_entry(alpha: float = ALPHA, max_gap_s: float = MAX_GAP_S) -> dict:
    """What export writes as ``model_meta.json``'s top-level ``smoothing``."""
    check(alpha, max_gap_s)
    return {"alpha": float(alpha), "max_gap_s": float(max_gap_s)}


def check(alpha: float, max_gap_s: float) -> None:
    if not (isinstance(alpha, int | float) and 0.0 < alpha <= 1.0):
        raise ValueError(f"smoothing alpha must be in (0, 1] (1 = no smoothing), got {alpha!r}")
    if not (isinstance(max_gap_s, int | float) and max_gap_s >= 0.0 and math.isfinite(max_gap_s)):
        raise ValueError(f"smoothing max_gap_s must be a finite number of seconds >= 0, got {max_gap_s!r}")


@dataclass
class PoseSmoother:
    """One face's filter; ``update(pose, t_s)`` returns the smoothed (yaw, pitch, roll)."""

    alpha: float = ALPHA
    max_gap_s: float = MAX_GAP_S
    _last: np.ndarray | None = field(default=None, init=False, repr=False)
    _time: float = field(default=0.0, init=False, repr=False)

    def __post_init__(self) -> None:
        check(self.alpha, self.max_gap_s)

    @classmethod
    def from_meta(cls, meta: dict) -> PoseSmoother:
        """The filter a model's ``model_meta.json`` names; the constants above for artifacts exported
        before export wrote them."""
        entry = meta.get("smoothing") or {}
        return cls(float(entry.get("alpha", ALPHA)), float(entry.get("max_gap_s", MAX_GAP_S)))

    def update(self, pose, t_s: float) -> np.ndarray:
        new = np.asarray(pose, np.float64)
        prev = self._last
        if prev is None or t_s - self._time > self.max_gap_s or t_s < self._time:
            out = new
        else:
            out = prev + self.alpha * (new - prev)
        self._last, self._time = out, float(t_s)
        return out.copy()

    def reset(self) -> None:
        self._last = None
