"""The Nestor engine: collections, storage and ANN backends. Knows nothing of HTTP."""

import os

# Thread pools that busy-wait starve everything else on a small machine, and both settings are read
# only when their library loads, so they are set here, before numpy and faiss are imported.
# - libgomp (faiss's OpenMP) spins idle threads by default: IVF-PQ training measured 72 s instead of
#   3 s, and single-query search 12k instead of 18k QPS.
# - OpenBLAS threads do the same: under CPU contention a 14x384 by 384x200 matmul (a MaxSim rescore)
#   went from 0.05 ms to 1-10 ms. Search-path matrix products are small, so one thread is the right default.
# An explicit setting of the user's wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
_BLAS_DEFAULT = "OPENBLAS_NUM_THREADS" not in os.environ
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

if _BLAS_DEFAULT:
    # numpy may have loaded OpenBLAS before this package (then the variable came too late): apply the same
    # default at run time. One thread also keeps the HNSW saver's fork safe (index/backends/hnsw.py).
    import numpy  # noqa: F401  - loads OpenBLAS, so that the limit below finds it
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")
