// One plain graph query (float32, or int8 codes the graph quantizes the query for) from the user's vector
// to `Hit` objects in one call (index/native.py `answer`): what `FaissIvf.hits` (index/_faiss_ivf.h) does
// for IVF-PQ, for the unrolled branches of `native.search`. Through Python the vector's check, the query's
// [1, dim] view, the (labels, scores) lists and `HitReader.finish` cost ~5 us of a ~125 us query at ef 16
// (issue 21's float bar, benchmarks/NATIVE.md).
//
// Included by _graph.cpp after _faiss_ivf.h (it reuses `plain_query_ok`, `hits_by_id`, `GraphQuery`).

namespace {

// `GraphQuery::run` for one query [dim] as the user gave it, PLAIN walk, k = width (`keep` candidates,
// rescored from `rows` when `rescore`: an int8 graph that quantizes the query itself; or a reduced graph's
// walk, `vector` then the reduced query and `full` the user's vector, which the rescore and tail score):
// `DenseField.prepare_one`'s checks here (finite, and of unit norm within 1e-6 when `cosine`), then the
// walk, the unindexed tail `upto..n` scored exactly from `rows` (None when there is none), the liveness
// check, and the labels mapped through `ids` (a None id, deleted since, is dropped, as index/hits.py does).
// None: not that query (another shape, a NaN or Inf, a cosine vector to normalise): the caller's general
// path, which raises or normalises as before.
struct GraphHits {
    static py::object run(Graph& g, py::array_t<float, py::array::c_style | py::array::forcecast> vec, int k,
                          int keep, int ef, bool rescore, py::object rows, py::object alive, size_t upto, size_t n,
                          bool cosine, const py::list& ids, const py::object& full) {
        if (!g_hit.cls) throw std::runtime_error("set_hit_class first");
        if (k < 1 || keep < k) throw std::invalid_argument("need 1 <= k <= keep");
        if (vec.ndim() != 1 || vec.shape(0) != g.dim_) return py::none();
        const float* q = vec.data();
        // a reduced walk: `vec` is the query in the graph's space, `full` the user's vector of the rows
        py::array_t<float, py::array::c_style | py::array::forcecast> full_arr;
        const float* fq = q;
        int fdim = g.dim_;
        if (!full.is_none()) {
            full_arr = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(full);
            if (!full_arr || full_arr.ndim() != 1) return py::none();
            fq = full_arr.data(), fdim = static_cast<int>(full_arr.shape(0));
            if (!plain_query_ok(q, g.dim_, false)) return py::none();
        }
        if (!plain_query_ok(fq, fdim, cosine)) return py::none();
        GraphQuery::Plan pl;
        pl.k = k, pl.width = k, pl.keep = keep, pl.ef = std::max(ef, keep), pl.walk = kPlain, pl.user_l2 = g.l2_;
        pl.rescore = rescore;
        pl.upto = upto, pl.n = n;
        const py::buffer_info live = byte_buffer(alive, "alive");
        pl.alive = static_cast<const uint8_t*>(live.ptr), pl.alive_len = static_cast<size_t>(live.shape[0]);
        py::buffer_info row_buf;
        if (!rows.is_none()) {
            row_buf = float_rows(rows);
            pl.rows = static_cast<const float*>(row_buf.ptr);
            pl.n_rows = static_cast<size_t>(row_buf.shape[0]);
            pl.rdim = static_cast<int>(row_buf.shape[1]);
            if (pl.rdim != fdim) throw std::invalid_argument("rows must be [rows, query dim]");
        } else if (rescore || n > upto) {
            throw std::invalid_argument("a rescore or an unindexed tail needs the rows");
        }
        thread_local std::vector<GraphQuery::Scored> hits;
        {
            py::gil_scoped_release nogil;
            ReadGuard r(g.rw_);
            const size_t n_graph = g.n_.load(std::memory_order_acquire);
            const bool tombstones = g.n_deleted_.load(std::memory_order_acquire) > 0;
            std::unique_ptr<Visited> vis = g.take_visited();
            GraphQuery::Scratch& s = GraphQuery::scratch();
            try {
                GraphQuery::one(g, pl, q, fq, n_graph, tombstones, *vis, s.buf(g.dim_), s.res, s.tail, hits);
            } catch (...) {
                g.give_visited(std::move(vis));
                throw;
            }
            g.give_visited(std::move(vis));
        }
        return hits_by_id(hits, ids);
    }
};

}  // namespace
