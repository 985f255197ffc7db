// An HNSW graph over compact codes: int8 (per-dimension affine) or float32 vectors.
//
// Why not hnswlib: hnswlib stores float32 only, interleaved with the links. Here the codes live in their
// own array (384 B per MiniLM vector as int8, a quarter of float32), the query is scored against them
// asymmetrically (float query, int8 codes, the per-dimension step folded into the query once), and the
// SIMD kernels are picked at run time for the CPU (AVX-512, AVX2+FMA or plain C++; `set_kernel` forces
// one for graphs made afterwards).
//
// Concurrency: `add` inserts with several threads and per-node locks, as hnswlib does. The graph's own
// read-write lock lets searches run together and keeps them apart from any mutation, all with the GIL
// released. The counters Python reads without the lock (`size`, `deleted`, `capacity`) are atomics. An
// exception in a worker thread is carried to the caller (`run_parallel`), never std::terminate.
//
// One copy of each vector: a float32 graph over the collection's own rows reads them in place (`set_rows`:
// a buffer of float32 rows, where a node's row is its label) instead of keeping a copy, so the vectors
// are held once in RAM and once on disk (a saved state is then links only). The graph keeps the buffer
// (a Py_buffer, so its owner stays alive) and is re-pointed under the write lock when the row store grows
// or is remapped. Graphs over vectors nobody else holds (reduced ones, int8 codes) keep their own.
//
// A loaded state is checked whole (dtypes, shapes, link counts and targets, levels, entry point) before
// any of it is used, so a damaged file is a ValueError, not a wild read.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <pthread.h>
#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <limits>
#include <memory>
#include <mutex>
#include <queue>
#include <random>
#include <shared_mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

// The SIMD kernels are x86 only; elsewhere (or with NESTOR_GRAPH_NO_SIMD) the plain one is all there is.
#if (defined(__x86_64__) || defined(__i386__)) && !defined(NESTOR_GRAPH_NO_SIMD)
#define NESTOR_X86 1
#include <immintrin.h>
#endif

namespace py = pybind11;

#include "_graph_kernels.h"
#include "_graph_support.h"

namespace {

class Graph {
    friend struct GraphQuery;  // the native query path, index/_graph_query.h
    friend struct GraphHits;   // its plain query straight to hits, index/_graph_hits.h

  public:
    Graph(int dim, const std::string& metric, const std::string& codec, int m, int ef_construction, uint64_t seed)
        : dim_(dim), m_(m), m0_(2 * m), efc_(ef_construction), seed_(seed), rng_(seed) {
        if (dim < 1) throw std::invalid_argument("dim must be at least 1");
        if (m < 2 || m > kMaxM) throw std::invalid_argument("m must be between 2 and " + std::to_string(kMaxM));
        if (ef_construction < 1) throw std::invalid_argument("ef_construction must be at least 1");
        if (metric != "ip" && metric != "l2") throw std::invalid_argument("metric must be 'ip' or 'l2'");
        if (codec != "int8" && codec != "float32") throw std::invalid_argument("codec must be 'int8' or 'float32'");
        l2_ = metric == "l2";
        int8_ = codec == "int8";
        mult_ = 1.0 / std::log(static_cast<double>(m));
        ahead_ = std::max(1, kLinesAhead * 64 / (dim * (int8_ ? 1 : 4)));
        k_ = pick_kernels();
        offset_.assign(dim, 0.f);
        delta_.assign(dim, 1.f);
    }

    // -- configuration ------------------------------------------------------------------------

    void set_int8_params(py::array_t<float, py::array::c_style | py::array::forcecast> offset,
                         py::array_t<float, py::array::c_style | py::array::forcecast> delta) {
        if (offset.size() != dim_ || delta.size() != dim_) throw std::invalid_argument("offset/delta must have dim entries");
        for (int i = 0; i < dim_; ++i)
            if (!std::isfinite(offset.data()[i]) || !std::isfinite(delta.data()[i]))
                throw std::invalid_argument("offset/delta must be finite");
        py::gil_scoped_release nogil;
        WriteGuard w(rw_);
        std::memcpy(offset_.data(), offset.data(), sizeof(float) * dim_);
        std::memcpy(delta_.data(), delta.data(), sizeof(float) * dim_);
    }

    size_t size() const { return n_.load(std::memory_order_acquire); }
    size_t capacity() const { return cap_.load(std::memory_order_acquire); }
    size_t deleted_count() const { return n_deleted_.load(std::memory_order_acquire); }
    uint64_t widened() const { return widened_.load(std::memory_order_relaxed); }
    int max_level() const { return max_level_; }
    std::string kernel() const { return k_.name; }
    bool external() const { return external_; }

    // Reads the vectors from `rows` (label == row) from now on instead of keeping them: allowed on an
    // empty graph, or on one that reads rows already (the store grew or was remapped). The rows must
    // cover every label the graph holds.
    void set_rows(const py::object& rows) {
        if (int8_) throw std::invalid_argument("an int8 graph keeps its own codes");
        std::unique_ptr<RowBuf> incoming = take_rows(rows, dim_);  // then the old one: freed with the GIL
        py::gil_scoped_release nogil;
        WriteGuard w(rw_);
        swap_rows(incoming);
    }

    // -- writes -------------------------------------------------------------------------------

    // Callers hold the write lock.
    void grow(size_t cap) {
        if (cap < n_.load(std::memory_order_relaxed)) throw std::invalid_argument("capacity below the current size");
        links0_.resize(cap * (m0_ + 1));
        if (int8_) c8_.resize(cap * dim_);
        else if (!external_) f32_.resize(cap * dim_), fbase_ = f32_.data();
        if (l2_) norm2_.resize(cap);
        level_.resize(cap);
        upper_.resize(cap);
        labels_.resize(cap);
        deleted_.resize(cap);
        cap_.store(cap, std::memory_order_release);
    }


    // Inserts rows; `vectors` are the float vectors the codes encode (the insertion queries).
    // `rows`, for a graph that reads rows: the store's current buffer, swapped in under the same lock.
    void add(py::array_t<float, py::array::c_style | py::array::forcecast> vectors,
             py::object codes_in, py::array_t<int64_t, py::array::c_style | py::array::forcecast> labels, int threads,
             py::object rows) {
        auto v = vectors.unchecked<2>();
        const size_t n = static_cast<size_t>(v.shape(0));
        if (v.shape(1) != dim_ || static_cast<size_t>(labels.size()) != n) throw std::invalid_argument("shape mismatch");
        py::array_t<int8_t, py::array::c_style | py::array::forcecast> codes;
        if (int8_) {
            codes = py::array_t<int8_t, py::array::c_style | py::array::forcecast>::ensure(codes_in);
            if (!codes || codes.ndim() != 2 || static_cast<size_t>(codes.shape(0)) != n || codes.shape(1) != dim_)
                throw std::invalid_argument("int8 codes must be [n, dim]");
        }
        for (size_t i = 1; i < n; ++i)
            if (labels.data()[i] <= labels.data()[i - 1]) throw std::invalid_argument("labels must increase");
        std::unique_ptr<RowBuf> incoming;
        if (!rows.is_none()) {
            if (int8_) throw std::invalid_argument("an int8 graph keeps its own codes");
            incoming = take_rows(rows, dim_);
        }
        // `incoming` is declared before the GIL is released, so it is destroyed (the old buffer released)
        // after the GIL is taken back
        py::gil_scoped_release nogil;
        WriteGuard w(rw_);
        ++gen_;
        if (incoming) swap_rows(incoming);
        if (external_) {
            const size_t have = rows_->rows();
            for (size_t i = 0; i < n; ++i)
                if (labels.data()[i] < 0 || static_cast<size_t>(labels.data()[i]) >= have)
                    throw std::invalid_argument("label " + std::to_string(labels.data()[i]) + " has no row (the rows hold " +
                                                std::to_string(have) + ")");
        }
        const size_t first = n_.load(std::memory_order_relaxed);  // writers are serialised by rw_
        if (n > 0 && first > 0 && labels.data()[0] <= labels_[by_label_.empty() ? first - 1 : by_label_.back()])
            throw std::invalid_argument("labels must increase");
        if (first + n > static_cast<size_t>(std::numeric_limits<int32_t>::max()))
            throw std::invalid_argument("a graph holds at most 2^31 - 1 nodes");
        const size_t cap = cap_.load(std::memory_order_relaxed);
        if (first + n > cap) grow(std::max(first + n, 2 * cap));
        const size_t total = first + n;
        const float* vp = vectors.data();
        const int64_t* lp = labels.data();
        for (size_t i = 0; i < n; ++i) {  // codes and labels first: a searched neighbour is always complete
            size_t id = first + i;
            labels_[id] = lp[i];
            if (lp[i] != static_cast<int64_t>(id)) identity_ = false;
            if (!by_label_.empty()) by_label_.push_back(static_cast<int32_t>(id));  // above every label so far
            deleted_[id] = 0;
            level_[id] = draw_level();
            if (level_[id] > 0) upper_[id].assign(static_cast<size_t>(level_[id]) * (m_ + 1), 0);
            else upper_[id].clear();
            links0_[id * (m0_ + 1)] = 0;
            if (int8_) {
                std::memcpy(&c8_[id * dim_], codes.data() + i * dim_, dim_);
            } else if (!external_) {
                std::memcpy(&f32_[id * dim_], vp + i * dim_, sizeof(float) * dim_);
            }
            if (l2_) norm2_[id] = self_dot(static_cast<int32_t>(id));
        }
        // Published before the inserts: a node not yet linked is complete, only unreachable. If an insert
        // fails, the graph stays valid and the error reaches the caller; rows of that batch may be unreachable.
        n_.store(total, std::memory_order_release);
        std::atomic<size_t> next{0};
        if (entry_ < 0 && n > 0) {  // the first node becomes the entry point before threads start
            Visited vis;
            QueryBuf qbuf(dim_);
            insert(static_cast<int32_t>(first), vp, total, vis, qbuf);
            next = 1;
        }
        const int t = std::max(1, std::min<int>(threads, static_cast<int>(n / 64) + 1));
        run_parallel(t, [&]() {
            Visited vis;
            QueryBuf qbuf(dim_);
            for (size_t i = next++; i < n; i = next++)
                insert(static_cast<int32_t>(first + i), vp + i * dim_, total, vis, qbuf);
        });
    }

    // Renumbers the nodes in breadth-first order from the entry point (Coleman et al., NeurIPS 2022,
    // "Graph reordering for cache-efficient near neighbor search"): a node's neighbours then sit near it
    // in memory, so a walk's codes come from fewer pages and DRAM rows. Only a graph with its own codes
    // (int8, or float32 it keeps): a graph over the store's rows follows their order. Returns whether
    // it reordered. Labels no longer follow positions afterwards; `by_label_` keeps them findable.
    // The copy is built under the read lock (searches go on, unless a delete waits for the write lock)
    // and swapped in under the write lock; it needs the graph's links and codes twice meanwhile.
    bool reorder() {
        py::gil_scoped_release nogil;
        Renumbered r;
        uint64_t gen = 0;
        {
            // the copy is built beside the graph under the read lock, so searches go on meanwhile
            ReadGuard read(rw_);
            const size_t n = n_.load(std::memory_order_relaxed);
            if (external_ || n < 2 || entry_ < 0) return false;
            gen = gen_;
            std::vector<int32_t> order;  // new position -> old
            order.reserve(n);
            r.where.assign(n, -1);  // old position -> new
            auto place = [&](int32_t v) {
                if (r.where[v] < 0) r.where[v] = static_cast<int32_t>(order.size()), order.push_back(v);
            };
            place(entry_);
            size_t unplaced = 0;
            for (size_t h = 0; order.size() < n || h < order.size(); ++h) {
                if (h == order.size()) {  // the rest of the graph is not reachable from here: take the next node
                    while (r.where[unplaced] >= 0) ++unplaced;
                    place(static_cast<int32_t>(unplaced));
                }
                const int32_t* ll = &links0_[static_cast<size_t>(order[h]) * (m0_ + 1)];
                for (int j = 1; j <= ll[0]; ++j) place(ll[j]);
            }
            renumber(order, r);
        }
        // only the swap stops searches: a few pointer swaps and the deleted flags (which a delete may
        // have changed meanwhile, so they are copied here)
        WriteGuard w(rw_);
        if (gen_ != gen) return false;  // an add or a load came in between: the next add reorders
        install(r);
        return true;
    }

    // Re-selects every node's level-0 links once the graph is built: `rounds` times, the heuristic picks
    // up to m0 links from the `pool` nodes closest to it among its links and their links (plus a few of
    // its far links, `refine_round`), then each node links back from those that chose it where its list
    // has room, and a node left with no way in takes a place in one of its own links' lists. Measured
    // on pypi-minilm 100k (int8, m16 efc200; benchmarks/NATIVE.md): the walk reaches recall@10 0.95
    // with ~11 % fewer distance computations. Each round reads one set of lists and writes the next
    // (the back links in node order), so the result depends on the graph only, never on `threads`.
    // Built beside the graph under the read lock, as `reorder` is, and swapped in unless an add or a
    // load came in between. Returns whether it changed the graph.
    bool refine(int rounds, int pool, int threads) {
        if (rounds < 1 || pool < 1) throw std::invalid_argument("rounds and pool must be at least 1");
        py::gil_scoped_release nogil;
        HugeVec<int32_t> cur;
        uint64_t gen = 0;
        {
            ReadGuard read(rw_);
            const size_t n = n_.load(std::memory_order_relaxed);
            if (n < 2 || entry_ < 0) return false;
            gen = gen_;
            cur.assign(links0_.begin(), links0_.begin() + static_cast<std::ptrdiff_t>(n * (m0_ + 1)));
            for (int r = 0; r < rounds; ++r) refine_round(cur, n, pool, threads);
        }
        WriteGuard w(rw_);
        if (gen_ != gen) return false;
        std::copy(cur.begin(), cur.end(), links0_.begin());
        return true;
    }

    // Positions of labels (-1 where absent), by binary search over labels (or `by_label_`, reordered).
    py::array_t<int64_t> positions(py::array_t<int64_t, py::array::c_style | py::array::forcecast> labels) const {
        py::array_t<int64_t> out(labels.size());
        const int64_t* lp = labels.data();
        int64_t* op = out.mutable_data();
        py::gil_scoped_release nogil;
        ReadGuard r(rw_);
        for (py::ssize_t i = 0; i < labels.size(); ++i) op[i] = position_of(lp[i]);
        return out;
    }

    // Tombstones the nodes of these labels (unknown ones are ignored); returns how many were newly
    // deleted. The lookup and the marks are under one write lock: positions looked up apart from the
    // marks could be stale by then (a reorder moves nodes).
    size_t delete_labels(py::array_t<int64_t, py::array::c_style | py::array::forcecast> labels) {
        const int64_t* lp = labels.data();
        const py::ssize_t cnt = labels.size();
        py::gil_scoped_release nogil;
        WriteGuard w(rw_);
        size_t newly = 0;
        for (py::ssize_t i = 0; i < cnt; ++i) {
            const int64_t p = position_of(lp[i]);
            if (p >= 0 && !deleted_[p]) deleted_[p] = 1, ++newly;
        }
        n_deleted_.fetch_add(newly, std::memory_order_release);
        return newly;
    }

    // Tombstones internal positions: still traversed, never returned.
    size_t mark_deleted(py::array_t<int64_t, py::array::c_style | py::array::forcecast> positions) {
        py::gil_scoped_release nogil;
        WriteGuard w(rw_);
        const size_t n = n_.load(std::memory_order_relaxed);
        size_t newly = 0;
        for (py::ssize_t i = 0; i < positions.size(); ++i) {
            int64_t p = positions.data()[i];
            if (p < 0 || static_cast<size_t>(p) >= n) continue;
            if (!deleted_[p]) deleted_[p] = 1, ++newly;
        }
        n_deleted_.fetch_add(newly, std::memory_order_release);
        return newly;
    }

    // -- reads --------------------------------------------------------------------------------

    // Top k per query as (labels, scores), higher score is better (ip: the inner product, l2: minus the
    // squared distance), padded with -1 / -inf. `allowed` is an optional byte mask over positions.
    //
    // With `rerank` (float32 rows indexed by label, e.g. the collection's vector file, memory-mapped or
    // not) the walk keeps `candidates` nodes and they are rescored exactly against `rerank_queries` (the
    // full-length queries when the graph holds reduced vectors); the scores returned are then exact.
    using F32Arr = py::array_t<float, py::array::c_style | py::array::forcecast>;

    std::pair<py::array_t<int64_t>, py::array_t<float>> search(F32Arr queries, int k, int ef, py::object allowed,
                                                               int threads, py::object rerank, py::object rerank_queries,
                                                               int candidates, py::object allowed_labels, bool acorn,
                                                               py::object allowed_list) {
        auto q = queries.unchecked<2>();
        if (q.shape(1) != dim_) throw std::invalid_argument("query dimension mismatch");
        const size_t nq = static_cast<size_t>(q.shape(0));
        if (k < 1) throw std::invalid_argument("k must be >= 1");
        const uint8_t* mask = nullptr;
        py::array_t<uint8_t, py::array::c_style | py::array::forcecast> mask_arr;
        if (!allowed.is_none() + !allowed_labels.is_none() + !allowed_list.is_none() > 1)
            throw std::invalid_argument("give one of allowed (by position), allowed_labels or allowed_list");
        // allowed_list: the allowed labels themselves (uint32, any order), made into a bitset here, which
        // costs a quarter of what numpy takes to scatter them into a byte mask and stays in cache; or a
        // roaring bitmap's serialisation (a per-value graph's filter: listing 100k labels a query cost more
        // than the walk at 1M points)
        std::vector<uint64_t> bitset;
        if (!allowed_list.is_none() && PyBytes_Check(allowed_list.ptr())) {
            read_allowed(allowed_list, bitset);
        } else if (!allowed_list.is_none()) {
            auto lst = py::array_t<uint32_t, py::array::c_style | py::array::forcecast>::ensure(allowed_list);
            if (!lst || lst.ndim() != 1) throw std::invalid_argument("allowed_list must be a 1-d array of labels");
            const uint32_t* lp0 = lst.data();
            const size_t cnt = static_cast<size_t>(lst.size());
            py::gil_scoped_release nogil;
            uint32_t top = 0;
            for (size_t i = 0; i < cnt; ++i) top = std::max(top, lp0[i]);
            bitset.assign(cnt ? (static_cast<size_t>(top) >> 6) + 1 : 1, 0);
            for (size_t i = 0; i < cnt; ++i) bitset[lp0[i] >> 6] |= uint64_t{1} << (lp0[i] & 63);
        }
        const bool by_label = !allowed_labels.is_none() || !allowed_list.is_none();
        if (!allowed.is_none() || !allowed_labels.is_none()) {
            mask_arr = py::array_t<uint8_t, py::array::c_style | py::array::forcecast>::ensure(
                allowed.is_none() ? allowed_labels : allowed);
            if (!mask_arr || mask_arr.ndim() != 1) throw std::invalid_argument("allowed must be a 1-d byte mask");
            mask = mask_arr.data();
        }
        // the rerank rows are only read: a read-only buffer (a memory map opened "r") is fine
        py::buffer_info rows;
        const float* rq = nullptr;
        int rdim = 0;
        F32Arr rq_arr;
        if (!rerank.is_none()) {
            rows = py::reinterpret_borrow<py::buffer>(rerank).request();
            if (rows.ndim != 2 || rows.itemsize != 4 || rows.format != py::format_descriptor<float>::format() ||
                rows.strides[1] != 4 || rows.strides[0] != rows.shape[1] * 4)
                throw std::invalid_argument("rerank rows must be a C-contiguous float32 [rows, dim] array");
            rdim = static_cast<int>(rows.shape[1]);
            rq_arr = rerank_queries.is_none() ? queries : F32Arr::ensure(rerank_queries);
            if (!rq_arr || rq_arr.ndim() != 2 || static_cast<size_t>(rq_arr.shape(0)) != nq || rq_arr.shape(1) != rdim)
                throw std::invalid_argument("rerank queries must be [nq, rerank dim]");
            rq = rq_arr.data();
        }
        py::array_t<int64_t> out_l({nq, static_cast<size_t>(k)});
        py::array_t<float> out_s({nq, static_cast<size_t>(k)});
        int64_t* lp = out_l.mutable_data();
        float* sp = out_s.mutable_data();
        const float* qp = queries.data();
        const int keep = rq ? std::max(k, candidates) : k;
        ef = std::max(ef, keep);
        {
            py::gil_scoped_release nogil;
            ReadGuard r(rw_);
            // read once per call: fixed while the read lock is held
            const size_t n = n_.load(std::memory_order_acquire);
            const bool tombstones = n_deleted_.load(std::memory_order_acquire) > 0;
            std::vector<uint8_t> padded;  // nodes added after the caller built its mask are not allowed
            if (mask && !by_label && static_cast<size_t>(mask_arr.size()) < n) {
                padded.assign(n, 0);
                std::memcpy(padded.data(), mask, mask_arr.size());
                mask = padded.data();
            }
            Allow allow;
            allow.mask = mask;
            allow.len = mask ? static_cast<size_t>(mask_arr.size()) : bitset.size() * 64;
            allow.labels = by_label ? labels_.data() : nullptr;
            allow.bits = bitset.empty() ? nullptr : bitset.data();
            const Allow* allow_p = (mask || allow.bits) ? &allow : nullptr;
            std::atomic<size_t> next{0};
            auto work = [&]() {
                std::unique_ptr<Visited> vis = take_visited();
                QueryBuf qbuf(dim_);
                std::vector<Pair> res;
                for (size_t i = next++; i < nq; i = next++) {
                    maybe_fail();
                    int got;
                    if (rq) {
                        got = walk_rescored(qp + i * dim_, rq + i * rdim, static_cast<const float*>(rows.ptr),
                                            rows.shape[0], rdim, keep, ef, k, allow_p, acorn, n, tombstones, *vis, qbuf,
                                            res);
                        for (int j = 0; j < got; ++j) {
                            lp[i * k + j] = labels_[res[j].second];
                            sp[i * k + j] = -res[j].first;
                        }
                    } else {
                        search_one(qp + i * dim_, keep, ef, allow_p, acorn, n, tombstones, *vis, qbuf, res);
                        got = static_cast<int>(res.size());
                        for (int j = 0; j < got; ++j) {
                            lp[i * k + j] = labels_[res[j].second];
                            sp[i * k + j] = score_of(res[j].first);
                        }
                    }
                    for (int j = got; j < k; ++j) {
                        lp[i * k + j] = -1;
                        sp[i * k + j] = -std::numeric_limits<float>::infinity();
                    }
                }
                give_visited(std::move(vis));
            };
            run_parallel(std::max(1, std::min<int>(threads, static_cast<int>(nq))), work);
        }
        return {out_l, out_s};
    }

    // -- persistence --------------------------------------------------------------------------

    py::dict get_state() {
        ReadGuard r(rw_);
        py::dict st;
        const size_t n = n_.load(std::memory_order_relaxed);
        auto arr = [](auto* src, std::vector<py::ssize_t> shape) {
            using T = std::remove_const_t<std::remove_pointer_t<decltype(src)>>;
            py::array_t<T> a(shape);
            size_t count = 1;
            for (auto s : shape) count *= static_cast<size_t>(s);
            if (count) std::memcpy(a.mutable_data(), src, sizeof(T) * count);
            return a;
        };
        st["links0"] = arr(links0_.data(), {static_cast<py::ssize_t>(n), m0_ + 1});
        st["levels"] = arr(level_.data(), {static_cast<py::ssize_t>(n)});
        st["labels"] = arr(labels_.data(), {static_cast<py::ssize_t>(n)});
        st["deleted"] = arr(deleted_.data(), {static_cast<py::ssize_t>(n)});
        std::vector<int32_t> flat;
        for (size_t i = 0; i < n; ++i) flat.insert(flat.end(), upper_[i].begin(), upper_[i].end());
        st["upper"] = arr(flat.data(), {static_cast<py::ssize_t>(flat.size())});
        if (int8_) st["codes"] = arr(c8_.data(), {static_cast<py::ssize_t>(n), dim_});
        else if (!external_) st["codes"] = arr(f32_.data(), {static_cast<py::ssize_t>(n), dim_});
        // a graph that reads rows saves links only: the vectors are the store's
        st["entry"] = entry_.load();
        st["max_level"] = max_level_.load();
        return st;
    }

    // Replaces the graph with a saved state. Everything is checked before anything is used or changed,
    // so a damaged or hostile state raises ValueError and leaves the graph as it was. A graph that reads
    // rows ignores saved codes (a state saved before it did): the rows are the same vectors.
    void set_state(const py::dict& st) {
        const auto links0 = state_array<int32_t>(st, "links0", 2);
        const auto levels = state_array<uint8_t>(st, "levels", 1);
        const auto labels = state_array<int64_t>(st, "labels", 1);
        const auto deleted = state_array<uint8_t>(st, "deleted", 1);
        const auto upper = state_array<int32_t>(st, "upper", 1);
        py::array codes;
        const bool have_codes = int8_ || !external_;
        if (int8_) codes = state_array<int8_t>(st, "codes", 2);
        else if (!external_) codes = state_array<float>(st, "codes", 2);
        const int64_t entry = state_int(st, "entry");
        const int64_t top = state_int(st, "max_level");
        const size_t n = static_cast<size_t>(labels.shape(0));
        if (n > static_cast<size_t>(std::numeric_limits<int32_t>::max()))
            throw std::invalid_argument("a graph holds at most 2^31 - 1 nodes");
        expect_shape("links0", links0, {n, static_cast<size_t>(m0_ + 1)});
        expect_shape("levels", levels, {n});
        expect_shape("deleted", deleted, {n});
        if (have_codes) expect_shape("codes", codes, {n, static_cast<size_t>(dim_)});
        const int32_t* l0 = links0.data();
        const uint8_t* lv = levels.data();
        const int64_t* lab = labels.data();
        const uint8_t* del = deleted.data();
        const int32_t* up = upper.data();
        const size_t up_len = static_cast<size_t>(upper.shape(0));
        const void* cp = have_codes ? codes.data() : nullptr;

        py::gil_scoped_release nogil;
        check_state(n, l0, lv, lab, del, up, up_len, cp, entry, top);
        WriteGuard w(rw_);
        if (external_ && n > 0 && (lab[0] < 0 || static_cast<size_t>(lab[n - 1]) >= rows_->rows()))
            throw std::invalid_argument("labels " + std::to_string(lab[0]) + " to " + std::to_string(lab[n - 1]) +
                                        " are not all rows (the rows hold " + std::to_string(rows_->rows()) + ")");
        ++gen_;
        n_.store(0, std::memory_order_relaxed);
        grow(std::max<size_t>(n, 1024));
        std::memcpy(links0_.data(), l0, sizeof(int32_t) * n * (m0_ + 1));
        std::memcpy(labels_.data(), lab, sizeof(int64_t) * n);
        index_labels(n);
        std::memcpy(level_.data(), lv, n);
        std::memcpy(deleted_.data(), del, n);
        if (int8_) std::memcpy(c8_.data(), cp, n * dim_);
        else if (!external_) std::memcpy(f32_.data(), cp, sizeof(float) * n * dim_);
        size_t pos = 0, dead = 0;
        for (size_t i = 0; i < n; ++i) {
            const size_t len = static_cast<size_t>(lv[i]) * (m_ + 1);
            upper_[i].assign(up + pos, up + pos + len);
            pos += len;
            dead += del[i];
        }
        if (l2_)
            for (size_t i = 0; i < n; ++i) norm2_[i] = self_dot(static_cast<int32_t>(i));
        n_deleted_.store(dead, std::memory_order_relaxed);
        entry_ = static_cast<int32_t>(entry);
        max_level_ = static_cast<int>(top);
        rng_.seed(seed_ + n);
        n_.store(n, std::memory_order_release);
    }

    // Bytes held, by part: links (both layers), codes, labels and flags.
    py::dict memory() {
        ReadGuard r(rw_);
        size_t upper = 0;
        for (const auto& u : upper_) upper += u.capacity() * sizeof(int32_t) + sizeof(u);
        py::dict out;
        out["graph"] = links0_.capacity() * sizeof(int32_t) + upper + level_.capacity() + sizeof(locks_);
        // rows read in place are the store's bytes, counted there
        out["codes"] = c8_.capacity() + f32_.capacity() * sizeof(float) + norm2_.capacity() * sizeof(float);
        out["ids"] = labels_.capacity() * sizeof(int64_t) + deleted_.capacity();
        return out;
    }

  private:
    // The position of a label, or -1; callers hold the lock.
    int64_t position_of(int64_t lab) const {
        if (!by_label_.empty()) {  // reordered: positions sorted by label
            auto below = [&](int32_t pos, int64_t l) { return labels_[pos] < l; };
            auto it = std::lower_bound(by_label_.begin(), by_label_.end(), lab, below);
            return it != by_label_.end() && labels_[*it] == lab ? static_cast<int64_t>(*it) : -1;
        }
        auto first = labels_.begin(), last = first + static_cast<std::ptrdiff_t>(n_.load(std::memory_order_relaxed));
        auto it = std::lower_bound(first, last, lab);
        return it != last && *it == lab ? static_cast<int64_t>(it - first) : -1;
    }

    // One round of `refine`: `links` (n lists of the level-0 stride) re-selected into a new set.
    void refine_round(HugeVec<int32_t>& links, size_t n, int pool, int threads) const {
        const size_t stride = static_cast<size_t>(m0_ + 1);
        HugeVec<int32_t> next(links.size());
        std::atomic<size_t> at{0};
        constexpr size_t kBlock = 64;  // nodes a thread takes at once
        run_parallel(threads, [&]() {
            Visited vis;
            QueryBuf qb(dim_), qb2(dim_);
            std::vector<float> vec(dim_), tmp(dim_);
            std::vector<Pair> cands, far;
            for (size_t b = at.fetch_add(kBlock); b < n; b = at.fetch_add(kBlock)) {
                for (size_t id = b; id < std::min(b + kBlock, n); ++id) {
                    vis.begin(n);
                    vis.test_and_set(static_cast<int32_t>(id));
                    decode(static_cast<int32_t>(id), vec.data());
                    Prepared p = prepare(vec.data(), qb);
                    cands.clear();
                    const int32_t* ll = &links[id * stride];
                    for (int j = 1; j <= ll[0]; ++j) {
                        const int32_t nb = ll[j];
                        if (!vis.test_and_set(nb)) cands.emplace_back(dist(p, nb), nb);
                        const int32_t* l2 = &links[static_cast<size_t>(nb) * stride];
                        for (int t = 1; t <= l2[0]; ++t)
                            if (!vis.test_and_set(l2[t])) cands.emplace_back(dist(p, l2[t]), l2[t]);
                    }
                    const size_t keep = std::min(cands.size(), static_cast<size_t>(pool));
                    std::partial_sort(cands.begin(), cands.begin() + static_cast<std::ptrdiff_t>(keep), cands.end());
                    const float edge = keep ? cands[keep - 1].first : 0.f;
                    cands.resize(keep);
                    select(cands, m0_, tmp);
                    // The closest `pool` alone would drop every long link an early insert made (between
                    // clusters: the walk's way across; on clustered data recall fell from 0.66 to 0.37
                    // without them), and all of them back costs the walk ~4 % more distances at 100k
                    // (benchmarks/NATIVE.md): up to kRefineFar current links beyond the pool are kept,
                    // closest first, where the heuristic would keep them.
                    far.clear();
                    for (int j = 1; j <= ll[0]; ++j) {
                        const float d = dist(p, ll[j]);
                        if (d > edge) far.emplace_back(d, ll[j]);
                    }
                    std::sort(far.begin(), far.end());
                    int added = 0;
                    for (const Pair& c : far) {
                        if (added >= kRefineFar || static_cast<int>(cands.size()) >= m0_) break;
                        decode(c.second, tmp.data());
                        Prepared pc = prepare(tmp.data(), qb2);
                        bool good = true;
                        for (const Pair& r : cands)
                            if (dist(pc, r.second) < c.first) {
                                good = false;
                                break;
                            }
                        if (good) cands.push_back(c), ++added;
                    }
                    int32_t* out = &next[id * stride];
                    out[0] = static_cast<int32_t>(cands.size());
                    for (size_t j = 0; j < cands.size(); ++j) out[1 + j] = cands[j].second;
                }
            }
        });
        for (size_t u = 0; u < n; ++u) {  // in node order: the same result for any thread count
            const int32_t cnt = next[u * stride];
            for (int j = 1; j <= cnt; ++j) {
                int32_t* lv = &next[static_cast<size_t>(next[u * stride + j]) * stride];
                bool present = false;
                for (int t = 1; t <= lv[0] && !present; ++t) present = lv[t] == static_cast<int32_t>(u);
                if (!present && lv[0] < m0_) lv[1 + lv[0]] = static_cast<int32_t>(u), ++lv[0];
            }
        }
        // A node no list points to any more could never be found: it takes the place of a link of one
        // it chose (closest first) whose target keeps another way in.
        std::vector<int32_t> indeg(n, 0);
        for (size_t u = 0; u < n; ++u)
            for (int j = 1; j <= next[u * stride]; ++j) ++indeg[static_cast<size_t>(next[u * stride + j])];
        for (size_t u = 0; u < n; ++u) {
            const int32_t* out = &next[u * stride];
            for (int j = 1; j <= out[0] && indeg[u] == 0; ++j) {
                int32_t* lv = &next[static_cast<size_t>(out[j]) * stride];
                if (lv[0] < m0_) {
                    lv[1 + lv[0]] = static_cast<int32_t>(u), ++lv[0], ++indeg[u];
                    break;
                }
                for (int t = lv[0]; t >= 1; --t)
                    if (indeg[static_cast<size_t>(lv[t])] > 1) {
                        --indeg[static_cast<size_t>(lv[t])];
                        lv[t] = static_cast<int32_t>(u), ++indeg[u];
                        break;
                    }
            }
        }
        links.swap(next);
    }

    // A renumbered copy of the graph (node `order[i]` at position i), built under the read lock.
    struct Renumbered {
        std::vector<int32_t> where;  // old position -> new
        HugeVec<int32_t> links;
        HugeVec<int8_t> c8;
        HugeVec<float> f32;
        std::vector<std::vector<int32_t>> upper;
        std::vector<uint8_t> level;
        std::vector<int64_t> labels;
        std::vector<float> norm2;
        std::vector<int32_t> by_label;
    };

    // Callers hold the read lock.
    void renumber(const std::vector<int32_t>& order, Renumbered& r) const {
        const size_t n = order.size(), cap = cap_.load(std::memory_order_relaxed);
        const size_t stride = static_cast<size_t>(m0_ + 1);
        r.links.resize(cap * stride);
        if (int8_) r.c8.resize(cap * dim_);
        else r.f32.resize(cap * dim_);
        r.upper.resize(cap);
        r.level.resize(cap);
        r.labels.resize(cap);
        r.norm2.resize(norm2_.size());
        auto remap = [&](const int32_t* from, int32_t* to) {
            to[0] = from[0];
            for (int j = 1; j <= from[0]; ++j) to[j] = r.where[from[j]];
        };
        for (size_t i = 0; i < n; ++i) {
            const size_t old = static_cast<size_t>(order[i]);
            remap(&links0_[old * stride], &r.links[i * stride]);
            const std::vector<int32_t>& up = upper_[old];
            r.upper[i].resize(up.size());
            for (size_t at = 0; at < up.size(); at += static_cast<size_t>(m_ + 1)) remap(&up[at], &r.upper[i][at]);
            r.level[i] = level_[old], r.labels[i] = labels_[old];
            if (int8_) std::memcpy(&r.c8[i * dim_], &c8_[old * dim_], dim_);
            else std::memcpy(&r.f32[i * dim_], &f32_[old * dim_], sizeof(float) * dim_);
            if (l2_) r.norm2[i] = norm2_[old];
        }
        r.by_label.resize(n);
        for (size_t i = 0; i < n; ++i) r.by_label[i] = static_cast<int32_t>(i);
        std::sort(r.by_label.begin(), r.by_label.end(), [&](int32_t a, int32_t b) { return r.labels[a] < r.labels[b]; });
    }

    // Callers hold the write lock, and nothing but deletes changed the graph since `r` was built.
    void install(Renumbered& r) {
        const size_t n = r.where.size();
        std::vector<uint8_t> deleted(deleted_.size(), 0);
        for (size_t old = 0; old < n; ++old) deleted[static_cast<size_t>(r.where[old])] = deleted_[old];
        links0_.swap(r.links), upper_.swap(r.upper), level_.swap(r.level), labels_.swap(r.labels);
        deleted_.swap(deleted);
        if (int8_) c8_.swap(r.c8);
        else f32_.swap(r.f32), fbase_ = f32_.data();
        if (l2_) norm2_.swap(r.norm2);
        entry_ = r.where[entry_];
        identity_ = true;
        bool ascending = true;
        for (size_t i = 0; i < n && ascending; ++i) {
            identity_ = identity_ && labels_[i] == static_cast<int64_t>(i);
            ascending = i == 0 || labels_[i] > labels_[i - 1];
        }
        identity_ = identity_ && ascending;
        by_label_.swap(r.by_label);
        if (ascending) by_label_.clear();  // the order did not change: labels follow positions again
    }

    // After the labels stop following positions: positions sorted by label, for `positions` and `add`.
    void index_labels(size_t n) {
        identity_ = true;
        bool ascending = true;
        for (size_t i = 0; i < n; ++i) {
            identity_ = identity_ && labels_[i] == static_cast<int64_t>(i);
            ascending = ascending && (i == 0 || labels_[i] > labels_[i - 1]);
        }
        by_label_.clear();
        if (ascending) return;
        by_label_.resize(n);
        for (size_t i = 0; i < n; ++i) by_label_[i] = static_cast<int32_t>(i);
        std::sort(by_label_.begin(), by_label_.end(), [&](int32_t a, int32_t b) { return labels_[a] < labels_[b]; });
    }

    // Callers hold the write lock. Swaps `rb` in as the rows read from now on; `rb` gets the old buffer,
    // which the caller releases with the GIL held.
    void swap_rows(std::unique_ptr<RowBuf>& rb) {
        const size_t n = n_.load(std::memory_order_relaxed);
        if (!external_ && n > 0)
            throw std::invalid_argument("this graph keeps its own vectors: rows can only be given to an empty graph");
        if (n > 0 && static_cast<size_t>(labels_[n - 1]) >= rb->rows())
            throw std::invalid_argument("the rows (" + std::to_string(rb->rows()) + ") do not cover label " +
                                        std::to_string(labels_[n - 1]));
        if (!external_) HugeVec<float>().swap(f32_);  // its own copy, unused from now on
        external_ = true;
        std::swap(rows_, rb);
        fbase_ = rows_->data();
    }

    // The float32 vector of node `id`: its own copy, or its label's row. While every node's label is its
    // position (a fresh load, or after a compaction), the row is the position: no label lookup, which
    // measured ~30 % of search time (benchmarks/COMPRESSION.md).
    inline const float* fvec(int32_t id) const {
        const size_t row = external_ && !identity_ ? static_cast<size_t>(labels_[id]) : static_cast<size_t>(id);
        return fbase_ + row * static_cast<size_t>(dim_);
    }

    // The invariants every search and insert relies on; called with the GIL released, so no Python here.
    void check_state(size_t n, const int32_t* l0, const uint8_t* lv, const int64_t* lab, const uint8_t* del,
                     const int32_t* up, size_t up_len, const void* codes, int64_t entry, int64_t top) const {
        using std::to_string;
        size_t need = 0;
        bool ascending = true;
        for (size_t i = 0; i < n; ++i) {
            if (lv[i] > kMaxLevel)
                throw std::invalid_argument("levels[" + to_string(i) + "] is " + to_string(lv[i]) + ", above " +
                                            to_string(kMaxLevel));
            if (del[i] > 1) throw std::invalid_argument("deleted[" + to_string(i) + "] is " + to_string(del[i]) + ", not 0 or 1");
            ascending = ascending && (i == 0 || lab[i] > lab[i - 1]);
            need += static_cast<size_t>(lv[i]) * (m_ + 1);
        }
        if (!ascending && external_)  // a graph over rows is never reordered, and its rows are checked by range
            throw std::invalid_argument("labels must increase in a graph that reads rows");
        if (!ascending) {  // a reordered graph's labels are in walk order: each must still be one node's
            std::vector<int64_t> sorted(lab, lab + n);
            std::sort(sorted.begin(), sorted.end());
            auto twice = std::adjacent_find(sorted.begin(), sorted.end());
            if (twice != sorted.end())
                throw std::invalid_argument("labels must increase (or, reordered, be distinct): label " +
                                            to_string(*twice) + " is on two nodes");
        }
        if (up_len != need)
            throw std::invalid_argument("upper has " + to_string(up_len) + " entries, the levels need " + to_string(need));
        auto check_links = [&](const int32_t* ll, size_t node, int level, int cap) {
            const std::string where = "node " + to_string(node) + " at level " + to_string(level);
            const int32_t cnt = ll[0];
            if (cnt < 0 || cnt > cap)
                throw std::invalid_argument(where + " has a link count of " + to_string(cnt) + ", not 0 to " + to_string(cap));
            for (int j = 1; j <= cnt; ++j) {
                const int32_t nb = ll[j];
                if (nb < 0 || static_cast<size_t>(nb) >= n)
                    throw std::invalid_argument(where + " links to " + to_string(nb) + ", not a node (0 to " +
                                                to_string(n) + " - 1)");
                if (static_cast<size_t>(nb) == node) throw std::invalid_argument(where + " links to itself");
                if (lv[nb] < level)
                    throw std::invalid_argument(where + " links to node " + to_string(nb) + ", whose level is " +
                                                to_string(lv[nb]));
            }
        };
        size_t pos = 0;
        for (size_t i = 0; i < n; ++i) {
            check_links(l0 + i * (m0_ + 1), i, 0, m0_);
            for (int level = 1; level <= lv[i]; ++level, pos += m_ + 1) check_links(up + pos, i, level, m_);
        }
        if (n == 0) {
            if (entry != -1 || top != -1)
                throw std::invalid_argument("an empty graph has entry point -1 and max_level -1, not " + to_string(entry) +
                                            " and " + to_string(top));
        } else {
            if (entry < 0 || static_cast<size_t>(entry) >= n)
                throw std::invalid_argument("entry point " + to_string(entry) + " is not a node (0 to " + to_string(n) +
                                            " - 1)");
            // A node above the entry point is harmless (one whose insert failed was never linked); the walk
            // down from the entry point needs its lists on every level up to max_level.
            if (lv[entry] != top)
                throw std::invalid_argument("max_level " + to_string(top) + " is not the entry point's level, " +
                                            to_string(lv[entry]));
        }
        if (!int8_ && codes != nullptr) {  // rows a graph reads were checked when the store took them
            const float* f = static_cast<const float*>(codes);
            for (size_t i = 0; i < n * static_cast<size_t>(dim_); ++i)
                if (!std::isfinite(f[i]))
                    throw std::invalid_argument("codes row " + to_string(i / dim_) + " holds a non-finite value");
        }
    }

    // A query prepared for the codec. int8 folds the per-dimension step into the query and the offset into
    // one bias, q . decode(c) = bias + (q * delta) . c, and rounds q * delta to integers so the dot product
    // runs in integers: 8 bits with VNNI, else 16 (relative error 2^-15 of its largest entry).
    struct Prepared {
        const float* q;
        const int16_t* q16 = nullptr;  // the int16 query, or ...
        const int8_t* q8 = nullptr;    // ... the 8-bit one (VNNI)
        int32_t corr = 0;
        float unscale = 1.f;
        float bias = 0.f;
        float qn = 0.f;
    };

    struct QueryBuf {
        std::vector<float> f;
        std::vector<int16_t> i;
        std::vector<int8_t> b;
        explicit QueryBuf(int d) : f(d), i(d), b(d) {}
    };

    Prepared prepare(const float* query, QueryBuf& buf) const {
        Prepared p{query};
        if (int8_) {
            float bias = 0.f, top = 0.f, total = 0.f;
            for (int i = 0; i < dim_; ++i) {
                buf.f[i] = query[i] * delta_[i];
                bias += query[i] * offset_[i];
                top = std::max(top, std::fabs(buf.f[i]));
                total += std::fabs(buf.f[i]);
            }
            float scale = 1.f;
            if (k_.q8) {
                scale = top > 0.f ? 127.f / top : 1.f;
                int32_t sum = 0;
                for (int i = 0; i < dim_; ++i) buf.b[i] = static_cast<int8_t>(std::lrint(buf.f[i] * scale)), sum += buf.b[i];
                p.q8 = buf.b.data();
                p.corr = k_.q8_flip * sum;
            } else {
                // the largest entry maps to 32767 unless sum |q16| * 128 could overflow the int32 sums
                scale = top > 0.f ? std::min(32767.f / top, 1.6e7f / total) : 1.f;
                for (int i = 0; i < dim_; ++i) buf.i[i] = static_cast<int16_t>(std::lrint(buf.f[i] * scale));
                p.q16 = buf.i.data();
            }
            p.unscale = 1.f / scale;
            p.bias = bias;
        }
        if (l2_) p.qn = k_.f32(query, query, dim_);
        return p;
    }

    inline float dot(const Prepared& p, int32_t id) const {
        if (!int8_) return k_.f32(p.q, fvec(id), dim_);
        const int8_t* c = &c8_[static_cast<size_t>(id) * dim_];
        const int32_t raw = p.q8 ? k_.q8(p.q8, c, dim_) - p.corr : k_.i8(p.q16, c, dim_);
        return p.bias + p.unscale * static_cast<float>(raw);
    }

    inline float dist(const Prepared& p, int32_t id) const {
        float d = dot(p, id);
        return l2_ ? p.qn + norm2_[id] - 2.f * d : -d;
    }

    float score_of(float distance) const { return l2_ ? -std::max(distance, 0.f) : -distance; }

    float self_dot(int32_t id) const {
        std::vector<float> buf(dim_);
        decode(id, buf.data());
        return k_.f32(buf.data(), buf.data(), dim_);
    }

    void decode(int32_t id, float* out) const {
        if (int8_) {
            const int8_t* c = &c8_[static_cast<size_t>(id) * dim_];
            for (int i = 0; i < dim_; ++i) out[i] = offset_[i] + delta_[i] * static_cast<float>(c[i]);
        } else {
            std::memcpy(out, fvec(id), sizeof(float) * dim_);
        }
    }

    inline void prefetch_codes(int32_t id) const {
        const char* p = int8_ ? reinterpret_cast<const char*>(&c8_[static_cast<size_t>(id) * dim_])
                              : reinterpret_cast<const char*>(fvec(id));
        const size_t bytes = static_cast<size_t>(dim_) * (int8_ ? 1 : 4);
        for (size_t off = 0; off < bytes; off += 64) prefetch(p + off);
    }

    inline void prefetch_links(int32_t id) const {
        const char* p = reinterpret_cast<const char*>(&links0_[static_cast<size_t>(id) * (m0_ + 1)]);
        const size_t bytes = sizeof(int32_t) * static_cast<size_t>(m0_ + 1);
        for (size_t off = 0; off < bytes; off += 64) prefetch(p + off);
        prefetch(p + bytes - 1);
    }

    int32_t* links(int32_t id, int level) {
        return level == 0 ? &links0_[static_cast<size_t>(id) * (m0_ + 1)] : &upper_[id][static_cast<size_t>(level - 1) * (m_ + 1)];
    }
    const int32_t* links(int32_t id, int level) const { return const_cast<Graph*>(this)->links(id, level); }

    uint8_t draw_level() {
        std::uniform_real_distribution<double> u(0.0, 1.0);
        double r = -std::log(std::max(u(rng_), 1e-300)) * mult_;
        return static_cast<uint8_t>(std::min(r, static_cast<double>(kMaxLevel)));
    }

    // Greedy walk down the upper layers to the closest node at layer `stop`.
    int32_t descend(const Prepared& p, int32_t cur, float& cur_d, int top, int stop, bool locked) {
        for (int level = top; level > stop; --level) {
            bool changed = true;
            while (changed) {
                changed = false;
                int32_t buf[kMaxLinks];
                int cnt = copy_links(cur, level, buf, locked);
                // as the plain walk does: a few vectors ahead of the one scored (hnswlib's upper layers
                // prefetch nothing; at ef 16 they are a large share of a query's misses)
                for (int j = 0; j < std::min(cnt, ahead_); ++j) prefetch_codes(buf[j]);
                for (int j = 0; j < cnt; ++j) {
                    if (j + ahead_ < cnt) prefetch_codes(buf[j + ahead_]);
                    float d = dist(p, buf[j]);
                    if (d < cur_d) cur_d = d, cur = buf[j], changed = true;
                }
            }
        }
        return cur;
    }

    int copy_links(int32_t id, int level, int32_t* out, bool locked) {
        std::unique_lock<std::mutex> lk;
        if (locked) lk = std::unique_lock<std::mutex>(lock_of(id));
        const int32_t* ll = links(id, level);
        int cnt = ll[0];
        std::memcpy(out, ll + 1, sizeof(int32_t) * cnt);
        return cnt;
    }

    // Beam search on one layer. Results (closest first) come from `mask`-allowed, undeleted nodes
    // when `filtered`; the walk itself goes through every node.
    // `n` is the node count, read once by the caller.
    void search_layer(const Prepared& p, int32_t ep, float ep_d, int ef, int level, const Allow* allow, bool filtered,
                      size_t n, Visited& vis, bool locked, std::vector<Pair>& out) {
        vis.begin(n);
        vis.test_and_set(ep);
        std::vector<Pair>& cand = vis.cand;  // min-heap on distance (Closer), closest first
        std::vector<Pair>& top = vis.top;    // max-heap, farthest kept result first
        auto ok = [&](int32_t id) { return !filtered || (!deleted_[id] && (allow == nullptr || (*allow)(id))); };
        if (ok(ep)) top.emplace_back(ep_d, ep);
        cand.emplace_back(ep_d, ep);
        float bound = top.empty() ? std::numeric_limits<float>::infinity() : ep_d;
        int32_t fresh[kMaxLinks];
        int32_t buf[kMaxLinks];
        const size_t uef = static_cast<size_t>(ef);
        while (!cand.empty()) {
            Pair c = cand.front();
            if (c.first > bound && top.size() >= uef) break;
            std::pop_heap(cand.begin(), cand.end(), Closer{});
            cand.pop_back();
            if (!cand.empty() && level == 0) prefetch(&links0_[static_cast<size_t>(cand.front().second) * (m0_ + 1)]);
            int cnt = copy_links(c.second, level, buf, locked);
            int nf = 0;
            for (int j = 0; j < cnt; ++j) {
                int32_t nb = buf[j];
                if (!vis.test_and_set(nb)) fresh[nf++] = nb, prefetch_codes(nb);
            }
            for (int j = 0; j < nf; ++j) {
                int32_t nb = fresh[j];
                float d = dist(p, nb);
                if (top.size() < uef || d < bound) {
                    cand.emplace_back(d, nb);
                    std::push_heap(cand.begin(), cand.end(), Closer{});
                    if (ok(nb)) {
                        top.emplace_back(d, nb);
                        std::push_heap(top.begin(), top.end());
                        if (top.size() > uef) std::pop_heap(top.begin(), top.end()), top.pop_back();
                        bound = top.front().first;
                    }
                }
            }
        }
        std::sort_heap(top.begin(), top.end());
        out.assign(top.begin(), top.end());
    }

    // What a rescore learns about the codes' error on this query: the exact-minus-code score residuals of
    // its candidates, and the lowest code score among them (`Graph::walk_rescored`).
    struct Residuals {
        double sum = 0, sq = 0;
        int n = 0;
        float lowest = std::numeric_limits<float>::infinity();
        // The k-th exact score `kth` clears the last candidate's code score by the codes' error here (mean
        // + kCertZ standard deviations of the residuals): no candidate the walk dropped, whose code score
        // was lower still, is then likely to beat it.
        bool vouch(float kth) const {
            if (n < 2) return true;
            const double mean = sum / n, var = std::max(sq / n - mean * mean, 0.0);
            return kth >= lowest + mean + kCertZ * std::sqrt(var);
        }
    };

    // Exact scores of the candidates from their float32 rows; keeps the best k, best first, as
    // (minus the score, position). Candidates whose label has no row are dropped. `seen`: their residuals.
    int rescore(const float* query, const float* rows, py::ssize_t n_rows, int d, std::vector<Pair>& res, int k,
                Residuals* seen = nullptr) const {
        for (const Pair& r : res) {
            int64_t lab = labels_[r.second];
            if (lab < 0 || lab >= n_rows) continue;
            const char* row = reinterpret_cast<const char*>(rows + static_cast<size_t>(lab) * d);
            for (int off = 0; off < d * 4; off += 64) prefetch(row + off);
        }
        const float qn = l2_ ? k_.f32(query, query, d) : 0.f;
        size_t w = 0;
        for (const Pair& r : res) {
            int64_t lab = labels_[r.second];
            if (lab < 0 || lab >= n_rows) continue;
            const float* row = rows + static_cast<size_t>(lab) * d;
            float dot = k_.f32(query, row, d);
            float score = l2_ ? -(qn + k_.f32(row, row, d) - 2.f * dot) : dot;
            if (seen != nullptr) {
                const float code = -r.first;  // read before res[w] (w <= this one) is written
                const double e = static_cast<double>(score) - code;
                seen->sum += e, seen->sq += e * e, ++seen->n, seen->lowest = std::min(seen->lowest, code);
            }
            res[w++] = Pair(-score, r.second);
        }
        res.resize(w);
        const size_t kk = std::min<size_t>(w, static_cast<size_t>(k));
        std::partial_sort(res.begin(), res.begin() + kk, res.end());
        res.resize(kk);
        return static_cast<int>(kk);
    }

    // Scores the `fresh` nodes and merges them into the sorted beam (distances `pd`, nodes `pi`, expanded
    // flags `pf`; `size` of at most `cap`), dropping what falls off its end. Returns the first position
    // that changed (`size` when none did), where the caller resumes expanding.
    // `ahead`: the caller prefetched only the first `ahead_` of `fresh`; the rest are prefetched here.
    int merge_into_beam(const Prepared& p, const int32_t* fresh, int nf, float* pd, int32_t* pi, uint8_t* pf,
                        int& size, int cap, bool ahead = false) {
        int lowest = size;
        for (int j = 0; j < nf; ++j) {
            if (ahead && j + ahead_ < nf) prefetch_codes(fresh[j + ahead_]);
            const float d = dist(p, fresh[j]);
            if (size == cap && d >= pd[size - 1]) continue;
            int pos = static_cast<int>(std::upper_bound(pd, pd + size, d) - pd);
            const int move = (size == cap ? size - 1 : size) - pos;
            if (move > 0) {
                std::memmove(pd + pos + 1, pd + pos, sizeof(float) * move);
                std::memmove(pi + pos + 1, pi + pos, sizeof(int32_t) * move);
                std::memmove(pf + pos + 1, pf + pos, move);
            }
            pd[pos] = d, pi[pos] = fresh[j], pf[pos] = 0;
            if (size < cap) ++size;
            lowest = std::min(lowest, pos);
        }
        return lowest;
    }

    // Level-0 search without filters or tombstones: one sorted array of the ef best nodes so far, each
    // flagged once expanded, instead of a candidate heap plus a result heap. It expands the same nodes
    // as `search_layer` (the closest unexpanded one, until every node in the beam is expanded) with
    // fewer branches and no heap upkeep.
    void beam_search(const Prepared& p, int32_t ep, float ep_d, int ef, size_t n, Visited& vis, std::vector<Pair>& out) {
        vis.begin(n);
        vis.test_and_set(ep);
        const int cap = ef;
        vis.pool_d.resize(cap + 1);
        vis.pool_id.resize(cap + 1);
        vis.pool_done.resize(cap + 1);
        float* pd = vis.pool_d.data();
        int32_t* pi = vis.pool_id.data();
        uint8_t* pf = vis.pool_done.data();
        int size = 1, cursor = 0;
        pd[0] = ep_d, pi[0] = ep, pf[0] = 0;
        int32_t fresh[kMaxLinks];
        while (cursor < size) {
            const int32_t node = pi[cursor];
            pf[cursor] = 1;
            // the next node to expand, unless this one's neighbours displace it: its links are a miss
            // the scoring below can hide
            for (int c = cursor + 1; c < size; ++c)
                if (!pf[c]) {
                    prefetch_links(pi[c]);
                    break;
                }
            const int32_t* ll = &links0_[static_cast<size_t>(node) * (m0_ + 1)];
            const int cnt = ll[0];
            int nf = 0;
            for (int j = 1; j <= cnt; ++j) {
                int32_t nb = ll[j];
                if (!vis.test_and_set(nb)) {
                    if (nf < ahead_) prefetch_codes(nb);  // the rest as the scoring reaches them
                    fresh[nf++] = nb;
                }
            }
            const int lowest = merge_into_beam(p, fresh, nf, pd, pi, pf, size, cap, true);
            cursor = std::min(cursor + 1, lowest);
            while (cursor < size && pf[cursor]) ++cursor;
        }
        out.resize(size);
        for (int i = 0; i < size; ++i) out[i] = Pair(pd[i], pi[i]);
    }

    // Level-0 search for a selective filter, after ACORN (Patel et al., SIGMOD 2024): only nodes the filter
    // allows enter the beam, and a neighbour it rejects is looked through, once, to its own neighbours.
    // Distances are computed for allowed nodes only, so the work follows the beam, not the share of
    // the graph the filter rejects (a plain walk that checks the filter at 1 % scores ~100x the nodes
    // it keeps). At most `2 * m0` new nodes are taken per expansion, direct neighbours first.
    void acorn_search(const Prepared& p, int32_t ep, float ep_d, int ef, const Allow& allow, size_t n, Visited& vis,
                      std::vector<Pair>& out) {
        vis.begin(n);
        vis.test_and_set(ep);
        auto ok = [&](int32_t id) { return !deleted_[id] && allow(id); };
        const int cap = ok(ep) ? ef : ef + 1;  // room for ef allowed nodes beside a rejected entry point
        vis.pool_d.resize(cap + 1);
        vis.pool_id.resize(cap + 1);
        vis.pool_done.resize(cap + 1);
        float* pd = vis.pool_d.data();
        int32_t* pi = vis.pool_id.data();
        uint8_t* pf = vis.pool_done.data();
        int size = 1, cursor = 0;
        pd[0] = ep_d, pi[0] = ep, pf[0] = 0;
        const int limit = 2 * m0_;
        int32_t fresh[2 * kMaxLinks];
        int32_t rejected[kMaxLinks];
        while (cursor < size) {
            const int32_t node = pi[cursor];
            pf[cursor] = 1;
            const int32_t* ll = &links0_[static_cast<size_t>(node) * (m0_ + 1)];
            const int cnt = ll[0];
            int nf = 0, nr = 0;
            for (int j = 1; j <= cnt; ++j) {
                const int32_t nb = ll[j];
                if (vis.test_and_set(nb)) continue;
                if (ok(nb)) fresh[nf++] = nb, prefetch_codes(nb);
                else rejected[nr++] = nb, prefetch(&links0_[static_cast<size_t>(nb) * (m0_ + 1)]);
            }
            for (int r = 0; r < nr && nf < limit; ++r) {
                const int32_t* l2 = &links0_[static_cast<size_t>(rejected[r]) * (m0_ + 1)];
                for (int j = 1; j <= l2[0] && nf < limit; ++j) {
                    const int32_t nb = l2[j];
                    if (ok(nb) && !vis.test_and_set(nb)) fresh[nf++] = nb, prefetch_codes(nb);
                }
            }
            // Under a very selective filter two hops find too few: look one hop further, through at most
            // `kThirdHop` rejected nodes (at 1 % this lifts recall@10 from 0.86 to 0.98 at ef 128).
            for (int r = 0, looked = 0; r < nr && nf < m0_ / 2 && looked < kThirdHop; ++r) {
                const int32_t* l2 = &links0_[static_cast<size_t>(rejected[r]) * (m0_ + 1)];
                for (int j = 1; j <= l2[0] && nf < limit && looked < kThirdHop; ++j) {
                    const int32_t mid = l2[j];
                    if (ok(mid) || vis.test_and_set(mid)) continue;
                    ++looked;
                    const int32_t* l3 = &links0_[static_cast<size_t>(mid) * (m0_ + 1)];
                    for (int t = 1; t <= l3[0] && nf < limit; ++t) {
                        const int32_t nb = l3[t];
                        if (ok(nb) && !vis.test_and_set(nb)) fresh[nf++] = nb, prefetch_codes(nb);
                    }
                }
            }
            const int lowest = merge_into_beam(p, fresh, nf, pd, pi, pf, size, cap);
            cursor = std::min(cursor + 1, lowest);
            while (cursor < size && pf[cursor]) ++cursor;
        }
        out.clear();
        for (int i = 0; i < size; ++i)
            if (ok(pi[i])) out.emplace_back(pd[i], pi[i]);  // the entry point may be one the filter rejects
    }

    // The walk's `keep` candidates rescored exactly from `rows` (`rescore`: the best k kept), widened until
    // the rescore vouches for them (`Residuals::vouch`). Where int8 codes cannot resolve the scores (a broad
    // filter whose matches all sit in the densest band of scores, far from the query: recall 0.18 with 20
    // candidates on pypi-minilm), twice the candidates are rescored: first more of the walk's own beam (its
    // ef best by code, already found), then, once the beam is used up, a walk with twice the beam; up to
    // kMaxWiden times the first candidates. On unfiltered pypi-minilm queries it never widens
    // (benchmarks/FILTERS.md). Only for int8 codes of the rows themselves: a reduced graph's residuals
    // hold its projection's error, which its own oversampling answers. Returns the hits kept; `widened`
    // counts the widenings. index/widen.py takes the same steps for the planner's path.
    int walk_rescored(const float* gq, const float* fq, const float* rows, py::ssize_t n_rows, int d, int keep,
                      int ef, int k, const Allow* allow, bool acorn, size_t n, bool tombstones, Visited& vis,
                      QueryBuf& qbuf, std::vector<Pair>& res) {
        if (!int8_ || d != dim_) {
            search_one(gq, keep, std::max(ef, keep), allow, acorn, n, tombstones, vis, qbuf, res);
            return rescore(fq, rows, n_rows, d, res, k);
        }
        const int cap = std::max(keep, std::min(keep * kMaxWiden, kMaxWidenKeep));
        int beam = std::max(ef, keep);
        thread_local std::vector<Pair> found;
        for (;;) {
            search_one(gq, beam, beam, allow, acorn, n, tombstones, vis, qbuf, found);  // best by code first
            size_t take = std::min(found.size(), static_cast<size_t>(keep));
            int got = 0;
            for (;;) {
                res.assign(found.begin(), found.begin() + static_cast<std::ptrdiff_t>(take));
                Residuals seen;
                got = rescore(fq, rows, n_rows, d, res, k, &seen);
                if (got < k || seen.vouch(-res[static_cast<size_t>(k) - 1].first)) return got;
                if (take >= found.size() || static_cast<int>(take) >= cap) break;
                take = std::min({take * 2, found.size(), static_cast<size_t>(cap)});
                widened_.fetch_add(1, std::memory_order_relaxed);
            }
            // the beam is used up: a wider walk, unless this one reached fewer nodes than it could hold
            if (static_cast<int>(found.size()) < beam || beam >= cap) return got;
            keep = static_cast<int>(take) * 2;
            beam = std::min(std::max(beam * 2, keep), cap);
            widened_.fetch_add(1, std::memory_order_relaxed);
        }
    }

    void search_one(const float* query, int k, int ef, const Allow* allow, bool acorn, size_t n, bool tombstones,
                    Visited& vis, QueryBuf& qbuf, std::vector<Pair>& res) {
        res.clear();
        if (entry_ < 0 || n == 0) return;
        Prepared p = prepare(query, qbuf);
        float d = dist(p, entry_);
        int32_t cur = descend(p, entry_, d, max_level_, 0, false);
        if (allow == nullptr && !tombstones) beam_search(p, cur, d, ef, n, vis, res);
        else if (allow != nullptr && acorn) acorn_search(p, cur, d, ef, *allow, n, vis, res);
        else search_layer(p, cur, d, ef, 0, allow, true, n, vis, false, res);
        if (static_cast<int>(res.size()) > k) res.resize(k);
    }

    // hnswlib's neighbour heuristic: keep a candidate only if it is closer to the base than to every
    // neighbour already kept, which spreads the links over directions.
    void select(std::vector<Pair>& cands, int m, std::vector<float>& tmp) const {
        if (static_cast<int>(cands.size()) <= m) return;
        std::sort(cands.begin(), cands.end());
        std::vector<Pair> kept;
        kept.reserve(m);
        QueryBuf qb(dim_);
        for (const Pair& c : cands) {
            if (static_cast<int>(kept.size()) >= m) break;
            decode(c.second, tmp.data());
            Prepared p = prepare(tmp.data(), qb);
            bool good = true;
            for (const Pair& r : kept)
                if (dist(p, r.second) < c.first) {
                    good = false;
                    break;
                }
            if (good) kept.push_back(c);
        }
        cands.swap(kept);
    }

    void insert(int32_t id, const float* vec, size_t n, Visited& vis, QueryBuf& qbuf) {
        maybe_fail();
        std::vector<float> tmp(dim_);
        Prepared p = prepare(vec, qbuf);
        const int level = level_[id];
        std::unique_lock<std::mutex> glob(global_);
        if (entry_ < 0) {
            entry_ = id;
            max_level_ = level;
            return;
        }
        int top = max_level_;
        int32_t cur = entry_;
        if (level <= top) glob.unlock();
        float cur_d = dist(p, cur);
        if (level < top) cur = descend(p, cur, cur_d, top, level, true);
        // Neighbours are chosen top-down, but linked bottom-up: a concurrent insert that reaches this
        // node through an upper layer then finds its level-0 links complete. Linked top-down, it could
        // stop at the still-empty level-0 list (taking this node as its only neighbour), and this
        // node's own list, written later, would drop that back link: the other node became unreachable.
        const int from = std::min(level, top);
        std::vector<std::vector<Pair>> chosen(static_cast<size_t>(from) + 1);
        for (int lc = from; lc >= 0; --lc) {
            std::vector<Pair>& w = chosen[static_cast<size_t>(lc)];
            search_layer(p, cur, cur_d, efc_, lc, nullptr, false, n, vis, true, w);
            cur = w.front().second, cur_d = w.front().first;
            select(w, m_, tmp);  // m at every level, as hnswlib: level 0 fills to m0 with back links
        }
        for (int lc = 0; lc <= from; ++lc) connect(id, lc, chosen[static_cast<size_t>(lc)], tmp);
        if (level > top) {
            entry_ = id;
            max_level_ = level;
        }
    }

    void connect(int32_t id, int level, const std::vector<Pair>& chosen, std::vector<float>& tmp) {
        const int cap = level == 0 ? m0_ : m_;
        {
            std::lock_guard<std::mutex> lk(lock_of(id));
            int32_t* ll = links(id, level);
            int cnt = 0;
            for (const Pair& c : chosen)
                if (c.second != id && cnt < cap) ll[1 + cnt++] = c.second;
            ll[0] = cnt;
        }
        QueryBuf qb(dim_);
        for (const Pair& c : chosen) {
            int32_t nb = c.second;
            if (nb == id) continue;
            std::lock_guard<std::mutex> lk(lock_of(nb));
            int32_t* ll = links(nb, level);
            int cnt = ll[0];
            bool present = false;
            for (int j = 0; j < cnt; ++j) present |= ll[1 + j] == id;
            if (present) continue;
            if (cnt < cap) {
                ll[1 + cnt] = id;
                ll[0] = cnt + 1;
                continue;
            }
            decode(nb, tmp.data());
            Prepared pn = prepare(tmp.data(), qb);
            std::vector<Pair> pool;
            pool.reserve(cnt + 1);
            pool.emplace_back(dist(pn, id), id);
            for (int j = 0; j < cnt; ++j) pool.emplace_back(dist(pn, ll[1 + j]), ll[1 + j]);
            std::vector<float> tmp2(dim_);
            select(pool, cap, tmp2);
            for (size_t j = 0; j < pool.size(); ++j) ll[1 + j] = pool[j].second;
            ll[0] = static_cast<int32_t>(pool.size());
        }
    }

    // Link lists are locked by stripe (never two at once), which costs a fixed 160 KB instead of a
    // mutex per node.
    std::mutex& lock_of(int32_t id) { return locks_[static_cast<uint32_t>(id) & (kStripes - 1)]; }

    std::unique_ptr<Visited> take_visited() {
        std::lock_guard<std::mutex> lk(pool_lock_);
        if (pool_.empty()) return std::make_unique<Visited>();
        auto v = std::move(pool_.back());
        pool_.pop_back();
        return v;
    }

    void give_visited(std::unique_ptr<Visited> v) {
        std::lock_guard<std::mutex> lk(pool_lock_);
        pool_.push_back(std::move(v));
    }

    int dim_, m_, m0_, efc_;
    int ahead_ = 1;  // neighbours whose vectors the plain walk prefetches ahead of the one it scores
    uint64_t seed_;
    bool l2_ = false, int8_ = true;
    double mult_;
    std::mt19937_64 rng_;
    Kernels k_;
    std::vector<float> offset_, delta_;
    // Atomic because Python reads them without the lock; changed only under the write lock.
    std::atomic<size_t> n_{0}, cap_{0}, n_deleted_{0};
    std::atomic<uint64_t> widened_{0};  // rescored walks run again with more candidates (`walk_rescored`)
    HugeVec<int32_t> links0_;
    std::vector<std::vector<int32_t>> upper_;
    std::vector<uint8_t> level_;
    std::vector<int64_t> labels_;
    std::vector<uint8_t> deleted_;
    HugeVec<int8_t> c8_;
    HugeVec<float> f32_;  // the vectors, when the graph keeps its own ...
    std::unique_ptr<RowBuf> rows_;  // ... or the rows it reads them from (label == row)
    bool external_ = false;
    bool identity_ = true;  // labels_[i] == i for every node so far
    uint64_t gen_ = 0;  // bumped by every add and load (under the write lock): `reorder` checks it
    // Positions in label order, once `reorder` has moved nodes (empty while labels follow positions).
    std::vector<int32_t> by_label_;
    const float* fbase_ = nullptr;  // f32_.data() or rows_->data()
    std::vector<float> norm2_;
    mutable RWLock rw_;
    static constexpr uint32_t kStripes = 4096;
    std::mutex locks_[kStripes];
    std::mutex global_;
    std::atomic<int32_t> entry_{-1};
    std::atomic<int> max_level_{-1};
    std::mutex pool_lock_;
    std::vector<std::unique_ptr<Visited>> pool_;
};

}  // namespace

#include "_graph_query.h"
#include "_graph_exact.h"
#include "_faiss_ivf.h"
#include "_graph_hits.h"
#include "_maxsim.h"

PYBIND11_MODULE(_graph, mod) {
    mod.doc() = "HNSW over int8 or float32 codes (see index/backends/graph.py)";
    // What this build can do, read by index/native.py: a module built before a feature lacks its name
    mod.attr("FEATURES") = py::make_tuple("hits", "hits_full");
    py::class_<Graph>(mod, "Graph")
        .def(py::init<int, const std::string&, const std::string&, int, int, uint64_t>(), py::arg("dim"),
             py::arg("metric"), py::arg("codec"), py::arg("m") = 16, py::arg("ef_construction") = 200,
             py::arg("seed") = 100)
        .def("set_int8_params", &Graph::set_int8_params, py::arg("offset"), py::arg("delta"))
        .def("add", &Graph::add, py::arg("vectors"), py::arg("codes"), py::arg("labels"), py::arg("threads") = 1,
             py::arg("rows") = py::none())
        .def("set_rows", &Graph::set_rows, py::arg("rows"))
        .def("mark_deleted", &Graph::mark_deleted, py::arg("positions"))
        .def("positions", &Graph::positions, py::arg("labels"))
        .def("delete_labels", &Graph::delete_labels, py::arg("labels"))
        .def("reorder", &Graph::reorder)
        .def("refine", &Graph::refine, py::arg("rounds") = 1, py::arg("pool") = 64, py::arg("threads") = 1,
             "Re-selects the level-0 links by the heuristic from each node's two-hop neighbourhood.")
        .def("search", &Graph::search, py::arg("queries"), py::arg("k"), py::arg("ef"), py::arg("allowed") = py::none(),
             py::arg("threads") = 1, py::arg("rerank") = py::none(), py::arg("rerank_queries") = py::none(),
             py::arg("candidates") = 0, py::arg("allowed_labels") = py::none(), py::arg("acorn") = false,
             py::arg("allowed_list") = py::none())
        .def("query", &GraphQuery::run, py::arg("queries"), py::arg("rerank_queries"), py::arg("k"), py::arg("width"),
             py::arg("keep"), py::arg("ef"), py::arg("rescore"), py::arg("rows"), py::arg("alive"), py::arg("upto"),
             py::arg("n"), py::arg("allowed"), py::arg("walk"), py::arg("threads"))
        .def("hits", &GraphHits::run, py::arg("vector"), py::arg("k"), py::arg("keep"), py::arg("ef"), py::arg("rescore"),
             py::arg("rows"), py::arg("alive"), py::arg("upto"), py::arg("n"), py::arg("cosine"), py::arg("ids"),
             py::arg("full") = py::none(),
             "One plain query [dim] as the user gave it, straight to Hit objects; None: the general path.")
        .def("get_state", &Graph::get_state)
        .def("set_state", &Graph::set_state, py::arg("state"))
        .def("memory", &Graph::memory)
        .def_property_readonly("size", &Graph::size)
        .def_property_readonly("capacity", &Graph::capacity)
        .def_property_readonly("deleted", &Graph::deleted_count)
        .def_property_readonly("widened", &Graph::widened)
        .def_property_readonly("max_level", &Graph::max_level)
        .def_property_readonly("kernel", &Graph::kernel)
        .def_property_readonly("external", &Graph::external);
    mod.attr("MAX_M") = kMaxM;
    // (z, times, most): how `Graph::walk_rescored` widens a rescore; index/widen.py does the same in Python
    mod.attr("WIDEN") = py::make_tuple(kCertZ, kMaxWiden, kMaxWidenKeep);
    mod.def(
        "maxsim",
        [](const py::array_t<float, py::array::c_style | py::array::forcecast>& query, const py::array& codes,
           const py::object& scale, const py::array_t<int64_t, py::array::c_style | py::array::forcecast>& offsets,
           const py::object& docs, int64_t n_docs) {
            return maxsim::scores(query, codes, scale, offsets, docs, n_docs);
        },
        py::arg("query"), py::arg("codes"), py::arg("scale"), py::arg("offsets"), py::arg("docs"), py::arg("n_docs"),
        "Exact MaxSim of a query [t, dim] against stored token rows, in place (index/_maxsim.h).");
    mod.def("available_kernels", &available_kernels, "The kernels this CPU can run, worst to best.");
    mod.def("set_kernel", &set_kernel, py::arg("name"),
            "Forces the kernel of graphs made or loaded from now on ('auto': the best); returns the previous setting.");
    mod.def(
        "_kernel_dot",
        [](const std::string& name, const py::array& query, const py::array_t<int8_t, py::array::c_style>& codes) {
            const Kernels* kern = nullptr;
            for (const Kernels& k : supported_kernels())
                if (name == k.name) kern = &k;
            if (kern == nullptr) throw std::invalid_argument("this CPU has no kernel '" + name + "'");
            if (codes.ndim() != 2 || query.ndim() != 1 || query.shape(0) != codes.shape(1))
                throw std::invalid_argument("codes must be [n, d] and the query [d]");
            const int d = static_cast<int>(codes.shape(1));
            std::vector<int64_t> out(static_cast<size_t>(codes.shape(0)));
            if (py::isinstance<py::array_t<int8_t>>(query)) {
                if (kern->q8 == nullptr) throw std::invalid_argument("kernel '" + name + "' has no 8-bit query path");
                auto q = py::array_t<int8_t, py::array::c_style>::ensure(query);
                int32_t sum = 0;
                for (int i = 0; i < d; ++i) sum += q.data()[i];
                for (size_t r = 0; r < out.size(); ++r)
                    out[r] = kern->q8(q.data(), codes.data() + r * d, d) - kern->q8_flip * sum;
            } else {
                auto q = py::array_t<int16_t, py::array::c_style | py::array::forcecast>::ensure(query);
                for (size_t r = 0; r < out.size(); ++r) out[r] = kern->i8(q.data(), codes.data() + r * d, d);
            }
            return out;
        },
        py::arg("name"), py::arg("query"), py::arg("codes"),
        "Tests only: `name`'s integer dot products of one query (int8: its 8-bit path, else int16) with each row.");
    mod.def("exact", &exact_scan, py::arg("queries"), py::arg("rows"), py::arg("alive"), py::arg("n"),
            py::arg("allowed"), py::arg("k"), py::arg("l2"),
            "The k best live rows of `allowed` (roaring bytes, labels or None: all below n) per query, exactly.");
    mod.def("exact_vector", &exact_vector, py::arg("vector"), py::arg("rows"), py::arg("alive"), py::arg("n"),
            py::arg("allowed"), py::arg("k"), py::arg("metric"),
            "One query vector checked and normalised, then its k best live rows of `allowed`: (labels, scores) or None.");
    py::class_<NativeRWLock>(mod, "RWLock")
        .def(py::init<>())
        .def("acquire_read", &NativeRWLock::acquire_read)
        .def("acquire_write", &NativeRWLock::acquire_write)
        .def("release", &NativeRWLock::release);
    mod.def("exact_kernel", [] { return std::string(dot4_name()); },
            "The four-row float32 kernel the exact scans use (plain, avx2 or avx512).");
    mod.def("make_hits", &make_hits, py::arg("ids"), py::arg("scores"),
            "`[Hit(id, score) for id, score in zip(ids, scores)]` without Hit's __init__ (set_hit_class first).");
    mod.def("set_hit_class", &set_hit_class, py::arg("cls"), py::arg("fields"),
            "The class `FaissIvf.hits` makes (index/contract.py Hit) and its slots: id, score, then None defaults.");
    py::class_<FaissIvf>(mod, "FaissIvf")
        .def(py::init<py::object, const std::string&, py::object>(), py::arg("index"), py::arg("lib"),
             py::arg("lock") = py::none())
        .def("run", &FaissIvf::run, py::arg("query"), py::arg("params"), py::arg("k_ann"), py::arg("rows"),
             py::arg("alive"), py::arg("upto"), py::arg("n"), py::arg("k"), py::arg("l2"),
             "faiss's shortlist of k_ann, reranked exactly: the k best live (labels, scores), or None.")
        .def("hits", &FaissIvf::hits, py::arg("vector"), py::arg("params"), py::arg("k_ann"), py::arg("rows"),
             py::arg("alive"), py::arg("upto"), py::arg("n"), py::arg("k"), py::arg("l2"), py::arg("cosine"),
             py::arg("ids"), "`run` for a user's vector [dim], straight to Hit objects; None: the general path.");
    mod.def("_allowed_labels", &allowed_labels, py::arg("allowed"),
            "Tests only: the labels a Graph.query `allowed` argument (roaring bytes or a label array) allows.");
    mod.def(
        "_fail_after", [](int64_t count) { g_fail_after.store(count); }, py::arg("count"),
        "Tests only: the count-th insert or query from now on raises RuntimeError (0 turns it off).");
}
