"""One place that maps a vector's config to its index backend, for building and for loading.

    config                         backend
    flat                           none: exact scans of the vector store
    hnsw                           Nestor's graph (index/_graph.cpp) over float32 vectors; an index saved
                                   by hnswlib (stores before the native graph served plain HNSW) loads as is
    ivf_pq                         faiss IVF-PQ, trained once `train_threshold` vectors exist
    reduce/quantize + any index    `EncodedIndex` (the transforms and codes) over the backend below

The compressed ladder (what serves the codes):

    reduce     quantize   index   backend
    any        -          hnsw    Nestor's graph (index/_graph.cpp) on the reduced float32 vectors
    -/leanvec  -          ivf_pq  faiss IVF-PQ on the reduced vectors
    any        -          flat    faiss flat scan of the reduced vectors
    any        int8       hnsw    Nestor's graph on per-dimension int8 codes of the (reduced) vectors
    any        int8       flat    faiss SQ8 scan
    any        binary     any     faiss binary flat / HNSW / IVF over sign codes (Hamming)

Where the native graph did not build (`index.backends.graph.AVAILABLE`), hnswlib serves the graph
rows (on the reduced float32 vectors when compressed) instead, and `backend_name` says so. Filters then
reach hnswlib as a Python callback per node, which is what the native graph exists to avoid.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from index.backends import graph as native
from index.backends.base import F32, Space, VectorIndex
from index.backends.binary import BinaryIndex, BinaryStructure
from index.backends.faiss_float import FaissFloatIndex
from index.backends.graph import GraphIndex, RowSource
from index.backends.hnsw import HnswIndex
from index.backends.ivfpq import IvfPqIndex, auto_nlist
from index.encoded import EncodedIndex
from nestor_client.models import (
    BinaryQuantizeConfig,
    FlatIndexConfig,
    HnswIndexConfig,
    Int8QuantizeConfig,
    IvfPqIndexConfig,
    MatryoshkaReduceConfig,
    Metric,
    VectorConfig,
)

__all__ = [
    "IVF_MIN_SAMPLE",
    "IVF_SAMPLE_PER_LIST",
    "backend_name",
    "load_backend",
    "load_index",
    "new_index",
    "new_ivf",
    "space_of",
    "train_encoded",
]

IVF_SAMPLE_PER_LIST = 64  # training rows per IVF list
# but at least this many (or every row): on 100k MiniLM vectors IVF512 trained on 32,768 rows reached recall@10
# 0.948 at nprobe 80 and a 12x rerank, on 65,536 rows 0.954 (faiss's own IVF-PQ, benchmarks/RESULTS.md
# issue 18), for 7 s more k-means and PQ training on 2 cores; beyond ~1,000 lists 64 a list is more anyway
IVF_MIN_SAMPLE = 65_536


def space_of(metric: Metric) -> Space:
    return Space.l2 if metric is Metric.l2 else Space.ip


def new_index(
    cfg: VectorConfig, dim: int, space: Space, *, threads: int | None, rows: RowSource | None = None
) -> VectorIndex | None:
    """The index a vector starts with: an empty graph for plain HNSW (reading `rows`, the vector's store,
    in place: one copy of each vector); None for flat, or until trained."""
    index = cfg.index
    if isinstance(index, HnswIndexConfig) and not cfg.compressed:
        if native.AVAILABLE:  # filters reach it as a byte mask, walked natively (ACORN for selective ones)
            graph = GraphIndex(
                dim, space, "float32", m=index.m, ef_construction=index.ef_construction, ef=index.ef, rows=rows
            )
            graph.threads = threads or graph.threads
            return graph
        return HnswIndex(dim, space, m=index.m, ef_construction=index.ef_construction, ef=index.ef, threads=threads)
    return None


def new_ivf(cfg: IvfPqIndexConfig, dim: int, space: Space, sample: F32, n_total: int) -> IvfPqIndex:
    nlist = cfg.nlist or auto_nlist(n_total)
    ivf = IvfPqIndex(dim, space, nlist=nlist, m=cfg.m, nbits=cfg.nbits, nprobe=cfg.nprobe)
    ivf.train(sample)
    ivf.trained_on = n_total
    return ivf


def train_encoded(
    cfg: VectorConfig, space: Space, sample: F32, queries: F32 | None, *, n_total: int, threads: int | None
) -> EncodedIndex:
    """Fit the transforms and codes on `sample`, then attach the trained (empty) backend that serves them."""
    enc = EncodedIndex(cfg, space, threads=threads)
    reduced = enc.fit(sample, queries)
    d = reduced.shape[1]
    inner_space = enc.inner_space
    index, quant, threads_ = cfg.index, cfg.quantize, enc.threads
    inner: Any
    if isinstance(quant, BinaryQuantizeConfig):
        assert enc.binary is not None
        structure: BinaryStructure = (
            "hnsw" if isinstance(index, HnswIndexConfig) else "ivf" if isinstance(index, IvfPqIndexConfig) else "flat"
        )
        hn = index if isinstance(index, HnswIndexConfig) else HnswIndexConfig()
        iv = index if isinstance(index, IvfPqIndexConfig) else IvfPqIndexConfig()
        inner = BinaryIndex(
            8 * enc.binary.plane_bytes,
            structure,
            m=hn.m,
            ef_construction=hn.ef_construction,
            ef=hn.ef,
            nlist=iv.nlist or auto_nlist(n_total),
            nprobe=iv.nprobe,
            threads=threads_,
        )
        inner.train(enc.sign_codes(reduced))
    elif isinstance(index, HnswIndexConfig) and not native.AVAILABLE:
        # no native graph on this machine: hnswlib on the reduced float32 vectors (int8 codes unused)
        inner = HnswIndex(
            d, inner_space, m=index.m, ef_construction=index.ef_construction, ef=index.ef, threads=threads
        )
    elif isinstance(index, HnswIndexConfig):
        # Nestor's own graph: float queries scored against int8 codes, or reduced float32 vectors
        codec: native.Codec = "int8" if isinstance(quant, Int8QuantizeConfig) else "float32"
        inner = GraphIndex(d, inner_space, codec, m=index.m, ef_construction=index.ef_construction, ef=index.ef)
        inner.threads = threads_
        inner.train(reduced)
    elif isinstance(quant, Int8QuantizeConfig):
        # direct codes need the ranking to survive a shift: true for L2, and for unit vectors (cosine)
        direct = (
            inner_space is Space.l2
            or isinstance(cfg.reduce, MatryoshkaReduceConfig)
            or (cfg.reduce is None and cfg.metric is Metric.cosine)
        )
        if direct:
            enc.use_direct_codes(reduced)
        inner = FaissFloatIndex(
            d, Space.l2 if direct else inner_space, "SQ8_direct" if direct else "SQ8", threads=threads_
        )
        inner.train(enc.encode_reduced(reduced))
    elif isinstance(index, IvfPqIndexConfig):
        inner = IvfPqIndex(
            d, inner_space, nlist=index.nlist or auto_nlist(n_total), m=index.m, nbits=index.nbits, nprobe=index.nprobe
        )
        inner.train(reduced)
    else:
        assert isinstance(index, FlatIndexConfig)
        inner = FaissFloatIndex(d, inner_space, "Flat", threads=threads_)
        inner.train(reduced)
    enc.attach(inner, n_total)
    return enc


def load_backend(directory: Path, *, threads: int | None = None, rows: RowSource | None = None) -> Any:
    """A saved backend, by the kind its own `meta.json` records; a plain float32 graph reads `rows`."""
    kind = json.loads((directory / "meta.json").read_text()).get("kind")
    if kind == "hnsw":
        return HnswIndex.load(directory, threads=threads)
    if kind == "ivf_pq":
        return IvfPqIndex.load(directory)
    if kind == "faiss_float":
        return FaissFloatIndex.load(directory, threads=threads)
    if kind == "binary":
        return BinaryIndex.load(directory, threads=threads)
    if kind == "graph":
        if not native.AVAILABLE:
            raise ValueError(f"{directory}: a native graph, but the extension is unavailable here")
        return GraphIndex.load(directory, threads=threads, rows=rows)
    raise ValueError(f"{directory}: unknown index kind {kind!r}")


def load_index(
    directory: Path, cfg: VectorConfig, space: Space, *, threads: int | None, rows: RowSource | None = None
) -> VectorIndex:
    """The saved index of a vector, configured with its current search defaults; a plain HNSW graph
    reads `rows` (the vector's store) in place."""
    if cfg.compressed:
        return EncodedIndex.load(directory, cfg, space, load_backend, threads=threads)
    loaded = load_backend(directory, threads=threads, rows=rows)
    index = cfg.index
    if isinstance(loaded, (HnswIndex, GraphIndex)) and isinstance(index, HnswIndexConfig):
        loaded.ef = index.ef  # a store written before the native graph served plain HNSW keeps its hnswlib index
    elif isinstance(loaded, IvfPqIndex) and isinstance(index, IvfPqIndexConfig):
        loaded.nprobe = index.nprobe
    else:
        raise ValueError(f"{directory}: a saved {type(loaded).__name__} does not serve index type {index.type!r}")
    return loaded  # type: ignore[no-any-return]


def backend_name(index: object) -> str:
    """Which implementation serves an index, for `info` (and why, when it is a fallback)."""
    inner = index.inner if isinstance(index, EncodedIndex) else index
    if isinstance(inner, GraphIndex):
        return f"nestor-graph ({inner.codec}, {inner.kernel} kernel)"
    if isinstance(inner, HnswIndex):
        if not native.AVAILABLE:
            return f"hnswlib (fallback: {native.UNAVAILABLE_REASON or 'the native graph is unavailable'})"
        return "hnswlib"
    if isinstance(inner, IvfPqIndex):
        return "faiss ivf_pq"
    if isinstance(inner, FaissFloatIndex):
        return f"faiss {inner.spec}"
    if isinstance(inner, BinaryIndex):
        return f"faiss binary {inner.structure}"
    return "exact scan" if inner is None else type(inner).__name__


def sample_rows(labels: np.ndarray[Any, Any], size: int) -> np.ndarray[Any, Any]:
    """A sorted random subset of `labels`, seeded by their count (reproducible fits)."""
    rng = np.random.default_rng(len(labels))
    return np.sort(rng.choice(labels, size=min(len(labels), size), replace=False))
