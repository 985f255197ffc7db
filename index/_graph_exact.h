// The exact filtered scan: a filter's few matching rows scored in one call (index/native.py's exact plan).
//
// Included by _graph.cpp after _graph_query.h (it reuses `float_rows`, `byte_buffer` and the kernels).
// A selective filter (a tenant, a tag: a few hundred of 100k points) is answered by scoring exactly the
// rows it matches. With numpy that is a label array, faiss's by-index kernel, an argpartition and a sort,
// ~60-200 us of Python around ~10 us of arithmetic; here the payload index's roaring bitmap (its portable
// serialisation, ~1 us to write) is read in place, each live matching row scored against the float32 rows
// with the GIL released, the best k kept in a heap, and the hits returned as lists.

namespace {

// Calls `fn(label)` for every label of a serialised 32-bit roaring bitmap (index/_roaring.h), ascending,
// without making a bitset (a few hundred labels in a 100k range would otherwise zero and scan 16 KB).
template <class F>
void for_each_roaring(const uint8_t* p, size_t len, F&& fn) {
    for_each_container(
        p, len,
        [&](uint32_t base, uint32_t start, uint32_t end) {
            for (uint32_t v = start; v <= end; ++v) fn(base | v);
        },
        [&](uint32_t base, const uint8_t* raw) {
            for (uint32_t w = 0; w < 1024; ++w) {
                uint64_t word;
                std::memcpy(&word, raw + 8 * w, 8);  // little-endian words, as the format stores them
                for (; word; word &= word - 1) fn(base | (w << 6) | static_cast<uint32_t>(__builtin_ctzll(word)));
            }
        },
        [&](uint32_t base, const uint8_t* raw, uint32_t card) {
            for (uint32_t j = 0; j < card; ++j) fn(base | static_cast<uint32_t>(raw[2 * j] | (raw[2 * j + 1] << 8)));
        });
}

float l2sqr_plain(const float* a, const float* b, int d) {
    float s = 0.f;
    for (int i = 0; i < d; ++i) {
        const float t = a[i] - b[i];
        s += t * t;
    }
    return s;
}

#ifdef NESTOR_X86
__attribute__((target("avx2,fma"))) float l2sqr_avx2(const float* a, const float* b, int d) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 16 <= d; i += 16) {
        const __m256 t0 = _mm256_sub_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i));
        const __m256 t1 = _mm256_sub_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8));
        a0 = _mm256_fmadd_ps(t0, t0, a0);
        a1 = _mm256_fmadd_ps(t1, t1, a1);
    }
    a0 = _mm256_add_ps(a0, a1);
    __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(a0), _mm256_extractf128_ps(a0, 1));
    s4 = _mm_hadd_ps(s4, s4);
    s4 = _mm_hadd_ps(s4, s4);
    float s = _mm_cvtss_f32(s4);
    for (; i < d; ++i) s += (a[i] - b[i]) * (a[i] - b[i]);
    return s;
}
#endif

using L2F32 = float (*)(const float*, const float*, int);

// Four rows against one query at once: four independent FMA chains instead of one, so the scan runs at the
// rate the core issues FMAs rather than at one FMA chain's latency (a tenant's ~100 rows, in cache: ~45 ns a
// row one at a time). `out[j]` is row j's dot product; summed in another order than `DotF32`, so scores may
// differ from a walk's in the last bits.
using Dot4F32 = void (*)(const float*, const float* const*, int, float*);

void dot4_plain(const float* q, const float* const* r, int d, float* out) {
    for (int j = 0; j < 4; ++j) out[j] = dot_f32_plain(q, r[j], d);
}

#ifdef NESTOR_X86
__attribute__((target("avx2,fma"))) void dot4_avx2(const float* q, const float* const* r, int d, float* out) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= d; i += 8) {
        const __m256 qv = _mm256_loadu_ps(q + i);
        a0 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(r[0] + i), a0);
        a1 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(r[1] + i), a1);
        a2 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(r[2] + i), a2);
        a3 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(r[3] + i), a3);
    }
    const __m256 acc[4] = {a0, a1, a2, a3};
    for (int j = 0; j < 4; ++j) {
        __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(acc[j]), _mm256_extractf128_ps(acc[j], 1));
        s4 = _mm_hadd_ps(s4, s4);
        s4 = _mm_hadd_ps(s4, s4);
        float s = _mm_cvtss_f32(s4);
        for (int t = i; t < d; ++t) s += q[t] * r[j][t];
        out[j] = s;
    }
}

__attribute__((target("avx512f"))) void dot4_avx512(const float* q, const float* const* r, int d, float* out) {
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
    int i = 0;
    for (; i + 16 <= d; i += 16) {
        const __m512 qv = _mm512_loadu_ps(q + i);
        a0 = _mm512_fmadd_ps(qv, _mm512_loadu_ps(r[0] + i), a0);
        a1 = _mm512_fmadd_ps(qv, _mm512_loadu_ps(r[1] + i), a1);
        a2 = _mm512_fmadd_ps(qv, _mm512_loadu_ps(r[2] + i), a2);
        a3 = _mm512_fmadd_ps(qv, _mm512_loadu_ps(r[3] + i), a3);
    }
    const __m512 acc[4] = {a0, a1, a2, a3};
    for (int j = 0; j < 4; ++j) {
        float s = _mm512_reduce_add_ps(acc[j]);
        for (int t = i; t < d; ++t) s += q[t] * r[j][t];
        out[j] = s;
    }
}
#endif

// The four-row dot kernel of the picked kernel set, by its name's prefix ("avx2-q8" is AVX2 too: an exact
// match on "avx2" once sent every exact scan to the scalar loop, 4x slower). Its name: `exact_kernel`.
const char* dot4_name() {
#ifdef NESTOR_X86
    const std::string name = pick_kernels().name;
    if (name.rfind("avx512", 0) == 0) return "avx512";
    if (name.rfind("avx2", 0) == 0) return "avx2";
#endif
    return "plain";
}

Dot4F32 pick_dot4() {
#ifdef NESTOR_X86
    const std::string name = dot4_name();
    if (name == "avx512") return dot4_avx512;
    if (name == "avx2") return dot4_avx2;
#endif
    return dot4_plain;
}

constexpr size_t kAhead = 4;  // rows prefetched ahead of the one scored

inline void prefetch_row(const float* row, int d) {
    const char* p = reinterpret_cast<const char*>(row);
    for (size_t off = 0; off < static_cast<size_t>(d) * sizeof(float); off += 64) __builtin_prefetch(p + off);
}

L2F32 pick_l2() {
#ifdef NESTOR_X86
    if (std::string(pick_kernels().name) != "plain") return l2sqr_avx2;  // every non-plain kernel has AVX2
#endif
    return l2sqr_plain;
}

using Scored = std::pair<float, int64_t>;

// The k best of a few scattered float32 rows against one query (a filter's matches, an IVF shortlist), the
// kernels picked once. Without the GIL: it reads only raw pointers.
struct RowScorer {
    DotF32 dot = pick_kernels().f32;
    Dot4F32 dot4 = pick_dot4();
    L2F32 dist = pick_l2();

    // `h`: the k best of rows `cand[0..m)` of `base`, best first, ties by label; scores higher-is-better
    // (dot), or L2 distances when `l2`.
    void top(const float* q, const float* base, int d, const uint32_t* cand, size_t m, int k, bool l2,
             std::vector<Scored>& h) const {
        // min-heap on (score, then larger label worse): the top of the heap is the worst kept
        auto better = [](const Scored& a, const Scored& b) {
            return a.first > b.first || (a.first == b.first && a.second < b.second);
        };
        const size_t cap = static_cast<size_t>(k);
        h.clear();
        h.reserve(std::min(cap, m));
        // rows are far apart (a filter's matches are scattered): fetch the whole row ahead of its turn
        for (size_t i = 0; i < std::min(m, kAhead); ++i) prefetch_row(base + static_cast<size_t>(cand[i]) * d, d);
        auto offer = [&](float s, uint32_t lab) {
            const Scored e(s, lab);
            if (h.size() < cap) {
                h.push_back(e);
                std::push_heap(h.begin(), h.end(), better);
            } else if (better(e, h.front())) {
                std::pop_heap(h.begin(), h.end(), better);
                h.back() = e;
                std::push_heap(h.begin(), h.end(), better);
            }
        };
        size_t i = 0;
        if (!l2) {  // four rows a step (the dot product: cosine and inner product)
            for (; i + 4 <= m; i += 4) {
                for (size_t j = i + kAhead; j < std::min(m, i + kAhead + 4); ++j)
                    prefetch_row(base + static_cast<size_t>(cand[j]) * d, d);
                const float* r[4];
                for (size_t j = 0; j < 4; ++j) r[j] = base + static_cast<size_t>(cand[i + j]) * d;
                float s[4];
                dot4(q, r, d, s);
                for (size_t j = 0; j < 4; ++j) offer(s[j], cand[i + j]);
            }
        }
        for (; i < m; ++i) {
            if (i + kAhead < m) prefetch_row(base + static_cast<size_t>(cand[i + kAhead]) * d, d);
            const float* row = base + static_cast<size_t>(cand[i]) * d;
            offer(l2 ? -dist(q, row, d) : dot(q, row, d), cand[i]);
        }
        std::sort(h.begin(), h.end(), better);
        if (l2)
            for (Scored& s : h) s.first = std::sqrt(std::max(-s.first, 0.f));
    }
};

// The live labels below `end` of `allowed` (see `exact_scan`), read under the GIL (bytes and arrays are
// Python objects), into `cand`.
void read_candidates(const py::object& allowed, size_t end, const uint8_t* alive_p, std::vector<uint32_t>& cand) {
    cand.clear();
    auto keep = [&](uint64_t lab) {
        if (lab < end && alive_p[lab]) cand.push_back(static_cast<uint32_t>(lab));
    };
    if (allowed.is_none()) {
        for (size_t lab = 0; lab < end; ++lab) keep(lab);
    } else if (PyBytes_Check(allowed.ptr())) {
        char* raw = nullptr;
        Py_ssize_t len = 0;
        if (PyBytes_AsStringAndSize(allowed.ptr(), &raw, &len) != 0) throw py::error_already_set();
        for_each_roaring(reinterpret_cast<const uint8_t*>(raw), static_cast<size_t>(len), keep);
    } else {
        auto lst = py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(allowed);
        if (!lst || lst.ndim() != 1) throw std::invalid_argument("allowed must be bytes or a 1-d array of labels");
        const int64_t* lp = lst.data();
        for (py::ssize_t i = 0; i < lst.size(); ++i)
            if (lp[i] >= 0) keep(static_cast<uint64_t>(lp[i]));
    }
}

// queries [nq, dim]; rows the float32 rows by label; alive the liveness bytes by label; labels from `n` on
// are not this reader's (committed after it read `n`); allowed a serialised roaring bitmap (bytes), an
// int64 array of labels, or None (every label below `n`). Per query, the k best live allowed rows as
// (labels, scores), best first, ties by label; scores higher-is-better (dot), or L2 distances when `l2`.
py::list exact_scan(py::array_t<float, py::array::c_style | py::array::forcecast> queries, py::object rows,
                    py::object alive, size_t n, py::object allowed, int k, bool l2) {
    if (k < 1) throw std::invalid_argument("need k >= 1");
    const py::buffer_info row_buf = float_rows(rows);
    const int d = static_cast<int>(row_buf.shape[1]);
    if (queries.ndim() != 2 || queries.shape(1) != d) throw std::invalid_argument("query dimension mismatch");
    const py::buffer_info live = byte_buffer(alive, "alive");
    const auto* base = static_cast<const float*>(row_buf.ptr);
    const size_t end = std::min({n, static_cast<size_t>(row_buf.shape[0]), static_cast<size_t>(live.shape[0])});
    const size_t nq = static_cast<size_t>(queries.shape(0));
    thread_local std::vector<uint32_t> cand;
    read_candidates(allowed, end, static_cast<const uint8_t*>(live.ptr), cand);

    std::vector<std::vector<Scored>> hits(nq);
    const float* qp = queries.data();
    {
        py::gil_scoped_release nogil;
        maybe_fail();
        const RowScorer scorer;
        for (size_t qi = 0; qi < nq; ++qi)
            scorer.top(qp + qi * static_cast<size_t>(d), base, d, cand.data(), cand.size(), k, l2, hits[qi]);
    }
    return hits_to_lists(hits);
}

// A C-contiguous numpy array of T (bools for uint8_t) read from the array object, without the buffer
// protocol's request (`float_rows`, `byte_buffer`): two requests were ~0.5 us of a small scan's ~2 us of
// fixed cost. `read` is false for anything else, which the caller then asks through the buffer protocol.
template <class T>
struct InPlace {
    const T* p = nullptr;
    size_t rows = 0, cols = 0;

    bool read(const py::object& obj, int ndim) {
        if (!py::isinstance<py::array>(obj)) return false;
        const auto a = py::reinterpret_borrow<py::array>(obj);
        const bool fits = py::isinstance<py::array_t<T>>(obj) ||
                          (std::is_same_v<T, uint8_t> && py::isinstance<py::array_t<bool>>(obj));
        if (!fits || a.ndim() != ndim || !(a.flags() & py::array::c_style)) return false;
        p = static_cast<const T*>(a.data());
        rows = static_cast<size_t>(a.shape(0));
        cols = ndim == 2 ? static_cast<size_t>(a.shape(1)) : 1;
        return true;
    }
};

// Fewer rows than this are scored holding the GIL: a few microseconds, less than a waiting thread could keep
// it once given (it need not hand it back before the switch interval).
constexpr size_t kKeepGil = 256;

// What a filtered search of a few rows needs, in one call: `vector` (one query, as the user gave it)
// checked and normalised as `DenseField.prepare_one` does, then `exact_scan`'s work for it. metric: 0
// inner product, 1 cosine (a vector off unit length is scaled to it), 2 L2. Returns (labels, scores), or
// None when the vector is not one float row of the rows' dimension, is not finite, or is all zeros under
// cosine: the caller's Python check then says which (its error messages stay in one place).
py::object exact_vector(py::object vector, py::object rows, py::object alive, size_t n, py::object allowed, int k,
                        int metric) {
    if (k < 1) throw std::invalid_argument("need k >= 1");
    if (metric < 0 || metric > 2) throw std::invalid_argument("metric must be 0 (ip), 1 (cosine) or 2 (l2)");
    const auto v = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(vector);
    if (!v) {
        PyErr_Clear();
        return py::none();
    }
    InPlace<float> rv;
    if (!rv.read(rows, 2)) {
        const py::buffer_info b = float_rows(rows);  // not numpy's: the buffer protocol checks it
        rv = {static_cast<const float*>(b.ptr), static_cast<size_t>(b.shape[0]), static_cast<size_t>(b.shape[1])};
    }
    const int d = static_cast<int>(rv.cols);
    if (v.ndim() != 1 || v.shape(0) != d) return py::none();
    const RowScorer scorer;
    thread_local std::vector<float> q;
    q.assign(v.data(), v.data() + d);
    const double sq = static_cast<double>(scorer.dot(q.data(), q.data(), d));  // float32, as numpy's v.dot(v)
    if (!std::isfinite(sq)) return py::none();
    if (metric == 1 && std::fabs(sq - 1.0) > 1e-6) {  // prepare_one's rule and its float32 scale
        if (sq == 0.0) return py::none();
        const float s = static_cast<float>(1.0 / std::sqrt(sq));
        for (float& x : q) x *= s;
    }
    InPlace<uint8_t> lv;
    if (!lv.read(alive, 1)) {
        const py::buffer_info b = byte_buffer(alive, "alive");
        lv = {static_cast<const uint8_t*>(b.ptr), static_cast<size_t>(b.shape[0]), 1};
    }
    const size_t end = std::min({n, rv.rows, lv.rows});
    thread_local std::vector<uint32_t> cand;
    read_candidates(allowed, end, lv.p, cand);
    thread_local std::vector<Scored> h;
    maybe_fail();
    if (cand.size() < kKeepGil) {
        scorer.top(q.data(), rv.p, d, cand.data(), cand.size(), k, metric == 2, h);
    } else {
        py::gil_scoped_release nogil;
        scorer.top(q.data(), rv.p, d, cand.data(), cand.size(), k, metric == 2, h);
    }
    return hit_lists(h);
}

}  // namespace
