"""The inverted index of a sparse field: posting lists per term, exact dot-product scoring, MaxScore pruning.

`Postings` is immutable: per term (sorted uint32), its labels (ascending) and weights, and the largest
and smallest weight (the bounds pruning needs). It covers the labels below its watermark `upto`; the
labels written since (the tail) are scored straight from the stored rows (`score_rows`), so a write is
searchable the moment it is acknowledged. The field rebuilds the postings when the tail grows, and
readers take the current object with one reference read. Dead labels are masked at query time by the
field's `alive` bits and dropped at the next rebuild.

Two scorers, equal by construction and checked against each other and a brute-force oracle in tests:
- `score_exhaustive`: concatenate the query terms' postings and add them up (term at a time, in numpy);
- `score_maxscore`: the terms in decreasing order of their upper bound (query weight x largest
  weight); once the bounds of the terms left cannot lift a document that has not been seen yet past the
  k-th best score so far, only the documents already seen are completed, by binary search in the
  remaining (long) postings, instead of walking them whole. It applies when no contribution can be
  negative (BM25, SPLADE), and pays when the query has a common term.
Ties rank the lower label (the earlier write) first, so every scorer returns the same list.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt

from index.sparse_store import SparseSnapshot

__all__ = ["Postings", "Scored", "score_exhaustive", "score_maxscore", "score_rows", "topk"]

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
U32 = npt.NDArray[np.uint32]
Bools = npt.NDArray[np.bool_]
Scored = tuple[I64, F32]  # labels, scores (best first)
Labels = npt.NDArray[np.int32] | npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class Postings:
    upto: int  # every live label below this is in the lists
    terms: U32  # sorted
    starts: I64  # [len(terms) + 1]: term i owns entries starts[i]:starts[i+1]
    labels: Labels  # ascending within each term; int32 while the labels fit (8 bytes an entry with the weight)
    weights: F32
    max_w: F32  # per term
    min_w: F32
    # document frequencies: a term's list length at the build, plus this change since (writes, deletes)
    delta: dict[int, int] = field(default_factory=dict)

    @classmethod
    def empty(cls) -> Postings:
        z = np.zeros(0, np.float32)
        return cls(0, np.zeros(0, np.uint32), np.zeros(1, np.int64), np.zeros(0, np.int64), z, z, z)

    @classmethod
    def build(cls, snap: SparseSnapshot, upto: int, alive: Bools) -> Postings:
        """The postings of the live labels below `upto`, from the stored rows."""
        off, idx, val = snap.span(0, upto)
        lengths = np.diff(off)
        labels = np.repeat(np.arange(upto, dtype=np.int64), lengths)
        keep = alive[labels]
        labels, idx, val = labels[keep], idx[keep], val[keep]
        order = np.argsort(idx, kind="stable")  # stable: labels stay ascending within a term
        idx, labels, val = idx[order], labels[order], val[order]
        if upto < 2**31:
            labels = labels.astype(np.int32)
        if not len(idx):
            return replace(cls.empty(), upto=upto)
        first = np.flatnonzero(np.concatenate([[True], idx[1:] != idx[:-1]]))
        starts = np.append(first, len(idx)).astype(np.int64)
        return cls(
            upto,
            idx[first],
            starts,
            labels,
            val,
            np.maximum.reduceat(val, first),
            np.minimum.reduceat(val, first),
        )

    def df(self, terms: U32) -> I64:
        """The live points that have each term."""
        pos, found = self.find(terms)
        out = np.zeros(len(terms), np.int64)
        out[found] = self.starts[pos[found] + 1] - self.starts[pos[found]]
        if self.delta:
            out += np.array([self.delta.get(t, 0) for t in terms.tolist()], np.int64)
        return out

    def df_map(self) -> dict[int, int]:
        """Every term's document frequency (for tests and info; O(vocabulary))."""
        out = dict(zip(self.terms.tolist(), np.diff(self.starts).tolist(), strict=True))
        for t, d in self.delta.items():
            out[t] = out.get(t, 0) + d
        return {t: c for t, c in out.items() if c}

    @property
    def entries(self) -> int:
        return len(self.labels)

    def ram_bytes(self) -> int:
        arrays = (self.terms, self.starts, self.labels, self.weights, self.max_w, self.min_w)
        return sum(int(a.nbytes) for a in arrays) + 100 * len(self.delta)

    def find(self, terms: U32) -> tuple[I64, Bools]:
        """Each query term's slot in `self.terms`, and whether it has a posting list here."""
        pos = np.searchsorted(self.terms, terms)
        found = np.zeros(len(terms), bool)
        inside = pos < len(self.terms)
        found[inside] = self.terms[pos[inside]] == terms[inside]
        return pos.astype(np.int64), found


def topk(labels: I64, scores: F32 | F64, k: int) -> Scored:
    """The best `k` by score, ties to the lower label; `labels` ascending."""
    if len(labels) > k:
        part = np.argpartition(-scores, k - 1)[:k]
        kth = scores[part].min()
        above = np.flatnonzero(scores > kth)
        tied = np.flatnonzero(scores == kth)[: k - len(above)]
        chosen = np.concatenate([above, tied])
        labels, scores = labels[chosen], scores[chosen]
    order = np.lexsort((labels, -scores))
    return labels[order], scores[order].astype(np.float32)


def score_rows(snap: SparseSnapshot, labels: I64, q_terms: U32, q_weights: F64) -> F64:
    """Exact scores of `labels` (any order) from their stored rows; `q_terms` sorted."""
    starts, ends = snap.offsets[labels], snap.offsets[labels + 1]
    lengths = ends - starts
    total = int(lengths.sum())
    out = np.zeros(len(labels), np.float64)
    if not total or not len(q_terms):
        return out
    sub = np.zeros(len(labels) + 1, np.int64)
    np.cumsum(lengths, out=sub[1:])
    rows = np.arange(total, dtype=np.int64) + np.repeat(starts - sub[:-1], lengths)
    idx = snap.indices[rows]
    pos = np.minimum(np.searchsorted(q_terms, idx), len(q_terms) - 1)
    hit = q_terms[pos] == idx
    owner = np.repeat(np.arange(len(labels)), lengths)
    contrib = snap.values[rows][hit].astype(np.float64) * q_weights[pos[hit]]
    return np.bincount(owner[hit], contrib, minlength=len(labels)).astype(np.float64, copy=False)


def matching_rows(snap: SparseSnapshot, start: int, end: int, q_terms: U32, q_weights: F64) -> tuple[I64, F64]:
    """Labels in `start:end` that share a term with the query, and their exact scores."""
    off, idx, val = snap.span(start, end)
    if not len(idx) or not len(q_terms):
        return np.zeros(0, np.int64), np.zeros(0, np.float64)
    if len(q_terms) <= 16:  # a pass of compares per term beats a binary search per entry
        qw = np.zeros(len(idx), np.float64)
        for t, w in zip(q_terms.tolist(), q_weights.tolist(), strict=True):
            qw[idx == t] = w
        hit = np.flatnonzero(qw)
        contrib = val[hit].astype(np.float64) * qw[hit]
    else:
        pos = np.minimum(np.searchsorted(q_terms, idx), len(q_terms) - 1)
        hit = np.flatnonzero(q_terms[pos] == idx)
        contrib = val[hit].astype(np.float64) * q_weights[pos[hit]]
    if not len(hit):
        return np.zeros(0, np.int64), np.zeros(0, np.float64)
    owner = start + np.searchsorted(off, hit, side="right") - 1
    uniq, inv = np.unique(owner, return_inverse=True)
    return uniq, np.bincount(inv, contrib, minlength=len(uniq)).astype(np.float64, copy=False)


def score_exhaustive(p: Postings, slots: I64, q_weights: F64, ok: Bools, n: int) -> tuple[I64, F64]:
    """Every eligible label in the query terms' postings with its exact score (labels ascending).

    `slots`: the query terms' positions in `p.terms`; `ok`: eligible labels (alive, allowed), len >= n."""
    parts = [slice(int(p.starts[s]), int(p.starts[s + 1])) for s in slots.tolist()]
    if not parts:
        return np.zeros(0, np.int64), np.zeros(0, np.float64)
    labels = np.concatenate([p.labels[sl] for sl in parts])
    contrib = np.concatenate([p.weights[sl] * w for sl, w in zip(parts, q_weights.tolist(), strict=True)])
    if len(labels) * 8 < n:  # few entries: group them, no array over every label
        uniq, inv = np.unique(labels, return_inverse=True)
        scores = np.bincount(inv, contrib.astype(np.float64), minlength=len(uniq)).astype(np.float64, copy=False)
    else:
        acc = np.bincount(labels, contrib.astype(np.float64), minlength=n).astype(np.float64, copy=False)
        seen = np.zeros(n, bool)
        seen[labels] = True
        uniq = np.flatnonzero(seen)
        scores = acc[uniq]
    keep = ok[uniq]
    return uniq[keep], scores[keep]


def score_maxscore(
    p: Postings, slots: I64, q_weights: F64, ok: Bools, n: int, k: int, extra: tuple[I64, F64]
) -> tuple[I64, F64] | None:
    """The top `k` candidates (labels ascending, exact scores) by MaxScore, or None when it does not apply.

    `extra`: labels scored elsewhere (the tail), exact, merged in as candidates. Needs every query
    weight positive and every weight in the query terms' postings non-negative."""
    if not len(slots) or (q_weights <= 0).any() or (p.min_w[slots] < 0).any():
        return None
    ub = q_weights * p.max_w[slots].astype(np.float64)
    order = np.argsort(-ub, kind="stable")
    slots, q_weights, ub = slots[order], q_weights[order], ub[order]
    rest = np.concatenate([np.cumsum(ub[::-1])[::-1][1:], [0.0]])  # bound of the terms after each one
    cand, part = extra
    done = len(slots)
    for i, s in enumerate(slots.tolist()):
        sl = slice(int(p.starts[s]), int(p.starts[s + 1]))
        lab = p.labels[sl]
        keep = ok[lab]
        lab, w = lab[keep], p.weights[sl][keep].astype(np.float64) * q_weights[i]
        allc = np.concatenate([cand, lab])
        uniq, inv = np.unique(allc, return_inverse=True)
        part = np.bincount(inv, np.concatenate([part, w]), minlength=len(uniq)).astype(np.float64, copy=False)
        cand = uniq
        if len(cand) >= k and np.partition(part, len(part) - k)[len(part) - k] > rest[i]:
            done = i + 1
            break
    if done == len(slots):
        return cand, part
    # no label outside `cand` can reach the k-th score: complete the candidates in the remaining terms
    for i in range(done, len(slots)):
        theta = np.partition(part, len(part) - k)[len(part) - k]
        alive = part + rest[i - 1] >= theta  # the bound of terms i.. (rest[i-1]) may still lift them
        cand, part = cand[alive], part[alive]
        s = int(slots[i])
        lab = p.labels[int(p.starts[s]) : int(p.starts[s + 1])]
        pos = np.minimum(np.searchsorted(lab, cand), len(lab) - 1)
        hit = lab[pos] == cand
        part[hit] += p.weights[int(p.starts[s]) + pos[hit]].astype(np.float64) * q_weights[i]
    return cand, part
