"""What a vector's recall target has chosen: the search knobs in force, and the evidence behind them.

A `Tuning` lives on each `DenseField` whose config has `quality` (`index/quality.py` fills it: calibration
at each index build or refit, then the live recall probe's feedback). The planner only asks it for the
knobs of a search (`apply`): a query's own `params` win field by field, and before the first calibration
the config's values serve. Nothing here is persisted: a reopened collection calibrates again.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field

from nestor_client.models import QualityConfig, QualityInfo, RecallEstimate, SearchParams

__all__ = ["KNOBS", "Tuning", "wilson"]

KNOBS = ("ef", "nprobe", "oversampling")  # the search parameters a recall target chooses
_Z = 1.959964  # 95 %


def wilson(hits: int, total: int, z: float = _Z) -> tuple[float, float]:
    """The 95 % Wilson score interval of a proportion (per-neighbour hits: each of the k exact neighbours of
    each query counts once; neighbours of one query are not independent, so this is a little narrow)."""
    if total <= 0:
        return 0.0, 1.0
    p = hits / total
    z2 = z * z
    centre = (p + z2 / (2 * total)) / (1 + z2 / total)
    half = z * math.sqrt(p * (1 - p) / total + z2 / (4 * total * total)) / (1 + z2 / total)
    return max(0.0, centre - half), min(1.0, centre + half)


def estimate(hits: int, total: int, queries: int, source: str, at: float) -> RecallEstimate:
    low, high = wilson(hits, total)
    return RecallEstimate(
        recall=hits / max(total, 1), low=low, high=high, hits=hits, total=total, queries=queries, source=source, at=at
    )


@dataclass
class Tuning:
    config: QualityConfig
    params: SearchParams | None = None  # the knobs in force (None: the config's until calibrated)
    calibrated: SearchParams | None = None  # what calibration found necessary
    calibration: RecallEstimate | None = None
    live: RecallEstimate | None = None
    state: str = "waiting"  # waiting | calibrating | met | below_target | unmet | exact
    message: str | None = None
    adjustments: int = 0
    index_id: int = 0  # id() of the index last calibrated, and its size then: a new or grown index recalibrates
    calibrated_count: int = 0
    sample_version: int = 0  # the posted query sample calibration last used (a new one recalibrates)
    sample_rows: int = 0  # real queries (posted or seen) calibration last used: twice as many recalibrate
    window: list[int] = field(default_factory=lambda: [0, 0, 0])  # live hits, neighbours, queries since a change
    below: list[int] = field(default_factory=lambda: [0, 0])  # the same queries' hits one rung lower, neighbours
    comfortable: int = 0  # consecutive live windows well above the target, or whose rung below meets it
    # the settings calibration found meeting the target, by increasing oversampling, and each one's measured
    # seconds per query (empty when only one oversampling applies): why it chose what it chose
    candidates: list[tuple[SearchParams, float]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def apply(self, p: SearchParams | None) -> SearchParams | None:
        """The knobs of one search: the query's own where it sets them, else the chosen ones."""
        t = self.params
        if t is None or (p is not None and p.exact):
            return p
        if p is None:
            return t
        update = {k: getattr(t, k) for k in KNOBS if getattr(p, k) is None and getattr(t, k) is not None}
        return p.model_copy(update=update) if update else p

    def info(self) -> QualityInfo:
        def knobs(p: SearchParams | None) -> dict[str, float]:
            return {} if p is None else {k: v for k in KNOBS if (v := getattr(p, k)) is not None}

        return QualityInfo(
            recall_target=self.config.recall_target,
            k=self.config.k,
            state=self.state,
            params=knobs(self.params),
            calibrated=knobs(self.calibrated),
            calibration=self.calibration,
            live=self.live,
            adjustments=self.adjustments,
            points=self.calibrated_count,
            message=self.message,
        )
