// The native query path: a dense field's whole ANN plan for a query in one call (index/native.py).
//
// Included by _graph.cpp after the Graph class, whose friend `GraphQuery` is. Python validates and
// plans; this runs, per query and with the GIL released, what `planner._ann` does with numpy: the walk
// (plain, ACORN or checking each result), the rescore of the candidates from the float32 rows, the
// exact scan of the unindexed tail merged in, the liveness check, and (a broad filter) the filter test
// of an unfiltered walk's results. It allocates no numpy array: the hits come back as small lists.
//
// A filter arrives as the labels it allows: a pyroaring BitMap's portable serialisation (bytes, read
// here straight into a bitset: a payload index's bitmap costs ~1 us to serialise, against ~230 us to
// list as a numpy array) or an array of labels.

#include "_roaring.h"

namespace {

// A serialised 32-bit roaring bitmap (index/_roaring.h) as a bitset by label.
void roaring_to_bitset(const uint8_t* p, size_t len, std::vector<uint64_t>& bits) {
    bits.assign(1, 0);
    auto words = [&bits](uint32_t base) {
        const size_t at = static_cast<size_t>(base >> 16) << 10;  // in 64-bit words: 65536 labels per key
        if (bits.size() < at + 1024) bits.resize(at + 1024, 0);
        return bits.data() + at;
    };
    for_each_container(
        p, len,
        [&](uint32_t base, uint32_t start, uint32_t end) {
            uint64_t* w = words(base);
            for (uint32_t v = start; v <= end; ++v) w[v >> 6] |= uint64_t{1} << (v & 63);
        },
        [&](uint32_t base, const uint8_t* raw) { std::memcpy(words(base), raw, 8192); },
        [&](uint32_t base, const uint8_t* raw, uint32_t card) {
            uint64_t* w = words(base);
            for (uint32_t j = 0; j < card; ++j) {
                const uint32_t v = static_cast<uint32_t>(raw[2 * j] | (raw[2 * j + 1] << 8));
                w[v >> 6] |= uint64_t{1} << (v & 63);
            }
        });
}

// A label array (any integer dtype numpy makes into uint32: the caller passes labels < 2^32) as a bitset.
void labels_to_bitset(const uint32_t* lp, size_t cnt, std::vector<uint64_t>& bits) {
    uint32_t top = 0;
    for (size_t i = 0; i < cnt; ++i) top = std::max(top, lp[i]);
    bits.assign(cnt ? (static_cast<size_t>(top) >> 6) + 1 : 1, 0);
    for (size_t i = 0; i < cnt; ++i) bits[lp[i] >> 6] |= uint64_t{1} << (lp[i] & 63);
}

// Per query, its (score, label) hits as the (labels, scores) pair of Python lists `index/hits.py` takes.
// One query's (score, label) hits as the tuple (labels, scores) of Python lists.
py::tuple hit_lists(const std::vector<std::pair<float, int64_t>>& h) {
    const auto len = static_cast<Py_ssize_t>(h.size());
    py::list labels = py::reinterpret_steal<py::list>(PyList_New(len));
    py::list scores = py::reinterpret_steal<py::list>(PyList_New(len));
    if (!labels || !scores) throw py::error_already_set();
    for (Py_ssize_t j = 0; j < len; ++j) {
        PyObject* lab = PyLong_FromLongLong(h[static_cast<size_t>(j)].second);
        PyObject* sc = PyFloat_FromDouble(static_cast<double>(h[static_cast<size_t>(j)].first));
        if (!lab || !sc) {
            Py_XDECREF(lab), Py_XDECREF(sc);
            throw py::error_already_set();
        }
        PyList_SET_ITEM(labels.ptr(), j, lab);  // steals the references
        PyList_SET_ITEM(scores.ptr(), j, sc);
    }
    return py::make_tuple(std::move(labels), std::move(scores));
}

py::list hits_to_lists(const std::vector<std::vector<std::pair<float, int64_t>>>& hits) {
    py::list out(hits.size());
    for (size_t i = 0; i < hits.size(); ++i) out[i] = hit_lists(hits[i]);
    return out;
}

// `Graph.query`'s `allowed`, a serialised roaring bitmap (bytes) or an array of labels, as a bitset.
void read_allowed(const py::object& allowed, std::vector<uint64_t>& bits) {
    if (PyBytes_Check(allowed.ptr())) {
        char* raw = nullptr;
        Py_ssize_t len = 0;
        if (PyBytes_AsStringAndSize(allowed.ptr(), &raw, &len) != 0) throw py::error_already_set();
        roaring_to_bitset(reinterpret_cast<const uint8_t*>(raw), static_cast<size_t>(len), bits);
    } else {
        auto lst = py::array_t<uint32_t, py::array::c_style | py::array::forcecast>::ensure(allowed);
        if (!lst || lst.ndim() != 1) throw std::invalid_argument("allowed must be bytes or a 1-d array of labels");
        labels_to_bitset(lst.data(), static_cast<size_t>(lst.size()), bits);
    }
}

// Tests only: the labels an `allowed` argument of `Graph.query` allows, ascending.
std::vector<uint32_t> allowed_labels(const py::object& allowed) {
    std::vector<uint64_t> bits;
    read_allowed(allowed, bits);
    std::vector<uint32_t> out;
    for (size_t w = 0; w < bits.size(); ++w)
        for (uint64_t b = bits[w]; b; b &= b - 1) out.push_back(static_cast<uint32_t>(w * 64 + __builtin_ctzll(b)));
    return out;
}

// A read-only 1-d byte buffer (a numpy bool array) or a C-contiguous float32 matrix, checked.
py::buffer_info byte_buffer(const py::object& obj, const char* what) {
    py::buffer_info b = py::reinterpret_borrow<py::buffer>(obj).request();
    if (b.ndim != 1 || b.itemsize != 1 || (b.shape[0] > 1 && b.strides[0] != 1))
        throw std::invalid_argument(std::string(what) + " must be a contiguous 1-d array of bytes or bools");
    return b;
}

py::buffer_info float_rows(const py::object& obj) {
    py::buffer_info b = py::reinterpret_borrow<py::buffer>(obj).request();
    if (b.ndim != 2 || b.itemsize != 4 || b.format != py::format_descriptor<float>::format() || b.strides[1] != 4 ||
        b.strides[0] != b.shape[1] * 4)
        throw std::invalid_argument("rows must be a C-contiguous float32 [rows, dim] array");
    return b;
}

// The walks `GraphQuery::run` can take (index/native.py names them).
enum Walk : int { kPlain = 0, kAcorn = 1, kChecked = 2, kPostfilter = 3 };

struct GraphQuery {
    using Scored = std::pair<float, int64_t>;  // (score, label): higher is better

    // What stays fixed across the queries of one call.
    struct Plan {
        int k = 10;         // hits wanted
        int width = 10;     // `_ann`'s k: the merged list is cut to this before the dead are dropped
        int keep = 10;      // candidates the walk keeps (the rescore picks `width` of them)
        int ef = 16;
        bool rescore = false;
        int walk = kPlain;
        bool user_l2 = false;  // scores as L2 distances (the user-facing form), not minus their squares
        const float* rows = nullptr;  // float32 rows by label: the rescore and the tail
        size_t n_rows = 0;
        int rdim = 0;
        const uint8_t* alive = nullptr;
        size_t alive_len = 0;
        size_t upto = 0, n = 0;     // the unindexed tail: labels [upto, n)
        const Allow* allow = nullptr;  // the filter, by label
    };

    // One query: its hits (best first, at most plan.k) into `out`. `gq` is in the graph's space (reduced
    // or not), `fq` the full-length query of the rows.
    static void one(Graph& g, const Plan& pl, const float* gq, const float* fq, size_t n_graph, bool tombstones,
                    Visited& vis, Graph::QueryBuf& qbuf, std::vector<Pair>& res, std::vector<Scored>& tail,
                    std::vector<Scored>& out) {
        maybe_fail();
        const Allow* walk_allow = pl.walk == kAcorn || pl.walk == kChecked ? pl.allow : nullptr;
        out.clear();
        const bool has_tail = pl.n > pl.upto && pl.rows != nullptr;
        if (pl.rescore && pl.rows != nullptr) {
            g.walk_rescored(gq, fq, pl.rows, static_cast<py::ssize_t>(pl.n_rows), pl.rdim, pl.keep, pl.ef, pl.width,
                            walk_allow, pl.walk == kAcorn, n_graph, tombstones, vis, qbuf, res);
            for (const Pair& r : res) out.emplace_back(-r.first, g.labels_[r.second]);
        } else {
            g.search_one(gq, pl.keep, pl.ef, walk_allow, pl.walk == kAcorn, n_graph, tombstones, vis, qbuf, res);
            for (const Pair& r : res) out.emplace_back(g.score_of(r.first), g.labels_[r.second]);
        }
        if (has_tail) {
            // a row the indexer added to the graph while this search ran is scored again, exactly, below
            out.erase(std::remove_if(out.begin(), out.end(),
                                     [&](const Scored& s) {
                                         return s.second >= static_cast<int64_t>(pl.upto) &&
                                                s.second < static_cast<int64_t>(pl.n);
                                     }),
                      out.end());
            scan_tail(g, pl, fq, tail);
            out.insert(out.end(), tail.begin(), tail.end());
            std::stable_sort(out.begin(), out.end(), [](const Scored& a, const Scored& b) { return a.first > b.first; });
        }
        if (static_cast<int>(out.size()) > pl.width) out.resize(static_cast<size_t>(pl.width));
        const Allow* post = pl.walk == kPostfilter ? pl.allow : nullptr;
        size_t w = 0;
        for (const Scored& s : out) {
            const int64_t lab = s.second;
            if (lab < 0 || static_cast<size_t>(lab) >= pl.alive_len || !pl.alive[lab]) continue;  // died meanwhile
            if (post != nullptr && !allowed(*post, lab)) continue;
            out[w++] = s;
            if (static_cast<int>(w) == pl.k) break;
        }
        out.resize(w);
        if (pl.user_l2)
            for (Scored& s : out) s.first = std::sqrt(std::max(-s.first, 0.f));
    }

    static bool allowed(const Allow& a, int64_t lab) {
        return static_cast<size_t>(lab) < a.len && ((a.bits[lab >> 6] >> (lab & 63)) & 1u);
    }

    // Exact top `width` of the live (and allowed) tail rows, best first.
    static void scan_tail(const Graph& g, const Plan& pl, const float* fq, std::vector<Scored>& tail) {
        tail.clear();
        const size_t end = std::min(pl.n, pl.n_rows);
        const int d = pl.rdim;
        const float qn = g.l2_ ? g.k_.f32(fq, fq, d) : 0.f;
        auto worse = [](const Scored& a, const Scored& b) { return a.first > b.first; };  // min-heap on score
        const size_t cap = static_cast<size_t>(pl.width);
        for (size_t lab = pl.upto; lab < end; ++lab) {
            if (lab >= pl.alive_len || !pl.alive[lab]) continue;
            if (pl.allow != nullptr && !allowed(*pl.allow, static_cast<int64_t>(lab))) continue;
            const float* row = pl.rows + lab * static_cast<size_t>(d);
            const float dot = g.k_.f32(fq, row, d);
            const float score = g.l2_ ? -(qn + g.k_.f32(row, row, d) - 2.f * dot) : dot;
            if (tail.size() < cap) {
                tail.emplace_back(score, static_cast<int64_t>(lab));
                std::push_heap(tail.begin(), tail.end(), worse);
            } else if (score > tail.front().first) {
                std::pop_heap(tail.begin(), tail.end(), worse);
                tail.back() = Scored(score, static_cast<int64_t>(lab));
                std::push_heap(tail.begin(), tail.end(), worse);
            }
        }
        std::sort(tail.begin(), tail.end(), [](const Scored& a, const Scored& b) {
            return a.first > b.first || (a.first == b.first && a.second < b.second);
        });
    }

    // Per thread, reused across calls: the query's scratch, so a call allocates nothing per query.
    struct Scratch {
        int dim = 0;
        std::unique_ptr<Graph::QueryBuf> qbuf;
        std::vector<Pair> res;
        std::vector<Scored> tail;
        Graph::QueryBuf& buf(int d) {
            if (!qbuf || dim != d) qbuf = std::make_unique<Graph::QueryBuf>(d), dim = d;
            return *qbuf;
        }
    };

    static Scratch& scratch() {
        thread_local Scratch s;
        return s;
    }

    // queries [nq, graph dim]; rerank_queries [nq, rows dim] or None (the queries themselves); rows the
    // float32 rows by label or None (then no rescore and no tail); alive the liveness bytes by label;
    // allowed a serialised roaring bitmap (bytes), an array of labels, or None. Returns per query
    // (labels, scores), best first.
    static py::list run(Graph& g, py::array_t<float, py::array::c_style | py::array::forcecast> queries,
                        py::object rerank_queries, int k, int width, int keep, int ef, bool rescore, py::object rows,
                        py::object alive, size_t upto, size_t n, py::object allowed, int walk, int threads) {
        if (queries.ndim() != 2 || queries.shape(1) != g.dim_) throw std::invalid_argument("query dimension mismatch");
        const size_t nq = static_cast<size_t>(queries.shape(0));
        if (k < 1 || width < k || keep < width) throw std::invalid_argument("need 1 <= k <= width <= keep");
        if (walk < kPlain || walk > kPostfilter) throw std::invalid_argument("unknown walk");
        Plan pl;
        pl.k = k, pl.width = width, pl.keep = keep, pl.ef = std::max(ef, keep), pl.rescore = rescore, pl.walk = walk;
        pl.user_l2 = g.l2_;
        pl.upto = upto, pl.n = n;
        const py::buffer_info live = byte_buffer(alive, "alive");
        pl.alive = static_cast<const uint8_t*>(live.ptr), pl.alive_len = static_cast<size_t>(live.shape[0]);
        py::buffer_info row_buf;
        py::array_t<float, py::array::c_style | py::array::forcecast> fq_arr = queries;
        if (!rows.is_none()) {
            row_buf = float_rows(rows);
            pl.rows = static_cast<const float*>(row_buf.ptr);
            pl.n_rows = static_cast<size_t>(row_buf.shape[0]);
            pl.rdim = static_cast<int>(row_buf.shape[1]);
            if (!rerank_queries.is_none())
                fq_arr = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(rerank_queries);
            if (!fq_arr || fq_arr.ndim() != 2 || static_cast<size_t>(fq_arr.shape(0)) != nq || fq_arr.shape(1) != pl.rdim)
                throw std::invalid_argument("rerank queries must be [nq, rows dim]");
        } else if (rescore || n > upto) {
            throw std::invalid_argument("a rescore or an unindexed tail needs the rows");
        }
        std::vector<uint64_t> bits;
        Allow allow;
        if (!allowed.is_none()) {
            read_allowed(allowed, bits);
            allow.bits = bits.data();
            allow.len = bits.size() * 64;
            pl.allow = &allow;
        } else if (walk != kPlain) {
            throw std::invalid_argument("a filtered walk needs the allowed labels");
        }
        const float* gq = queries.data();
        const float* fq = fq_arr.data();
        const int gdim = g.dim_, rdim = pl.rows ? pl.rdim : g.dim_;
        std::vector<std::vector<Scored>> hits(nq);
        {
            py::gil_scoped_release nogil;
            ReadGuard r(g.rw_);
            allow.labels = g.labels_.data();  // read under the lock: an add may have moved the array
            const size_t n_graph = g.n_.load(std::memory_order_acquire);
            const bool tombstones = g.n_deleted_.load(std::memory_order_acquire) > 0;
            std::atomic<size_t> next{0};
            auto work = [&]() {
                std::unique_ptr<Visited> vis = g.take_visited();
                Scratch& s = scratch();
                Graph::QueryBuf& qb = s.buf(gdim);
                for (size_t i = next++; i < nq; i = next++)
                    one(g, pl, gq + i * gdim, fq + i * rdim, n_graph, tombstones, *vis, qb, s.res, s.tail, hits[i]);
                g.give_visited(std::move(vis));
            };
            run_parallel(std::max(1, std::min<int>(threads, static_cast<int>(nq))), work);
        }
        return hits_to_lists(hits);
    }
};

}  // namespace
