"""The Nestor engine: collections, storage and ANN backends. Knows nothing of HTTP."""

import os

# libgomp (faiss's OpenMP) busy-spins idle threads by default. On a small machine that steals the
# cores from hnswlib, numpy's BLAS and Python threads: IVF-PQ training measured 72 s instead of 3 s,
# and single-query search 12k instead of 18k QPS. It is read when libgomp loads, so it must be set
# before faiss is imported; an explicit setting of the user's wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
