// One unfiltered IVF-PQ query in one call: faiss's list scan for a shortlist, then Nestor's exact rerank of
// it (index/ivf_search.py).
//
// Included by _graph.cpp after _graph_exact.h (it reuses `RowScorer`, `float_rows`, `byte_buffer`). Through
// faiss's Python API the shortlist cost about 10 us of Python a query (numpy outputs, `swig_ptr`, the OpenMP
// setter), then a second call to rerank: about as much as faiss's own IndexRefineFlat pipeline spends on its
// whole refine. Here faiss's C++ search writes into per-thread buffers and the rerank reads them, with the
// GIL released throughout.
//
// Nestor is not compiled against faiss (the wheel ships no headers): the search is the one exported by the
// libfaiss.so already loaded, called through its mangled name, and only when the index object's own vtable
// holds that very function, so a faiss whose class or signature differs is refused here (and Python keeps
// its path through faiss's API) instead of being called wrongly.

#include <dlfcn.h>
#include <link.h>

namespace {

// faiss::Index::search(idx_t n, const float* x, idx_t k, float* distances, idx_t* labels,
//                      const SearchParameters* params) const, as a plain function of `this` (Itanium ABI)
using FaissSearch = void (*)(const void*, int64_t, const float*, int64_t, float*, int64_t*, const void*);
using OmpSetThreads = void (*)(int);

// The IVF searches an IVF-PQ index may run: the fast-scan (4-bit) one, and the plain IVF one (8-bit PQ).
const char* const kIvfSearches[] = {
    "_ZNK5faiss16IndexIVFFastScan6searchElPKflPfPlPKNS_16SearchParametersE",
    "_ZNK5faiss8IndexIVF6searchElPKflPfPlPKNS_16SearchParametersE",
};

const void* swig_this(const py::object& obj) {
    return reinterpret_cast<const void*>(static_cast<uintptr_t>(py::int_(obj.attr("this"))));
}

// The search in the vtable of the object at `self`, among `kIvfSearches`; nullptr if none. The scan stays
// within the vtable's own symbol, so it reads no memory past it.
FaissSearch find_search(void* lib, const void* self) {
    void* const* vptr = *static_cast<void* const* const*>(self);
    Dl_info info{};
    void* entry = nullptr;  // the vtable's ElfW(Sym)
    if (!dladdr1(vptr, &info, &entry, RTLD_DL_SYMENT) || entry == nullptr ||
        info.dli_sname == nullptr || std::strncmp(info.dli_sname, "_ZTV", 4) != 0)
        return nullptr;
    const auto* end = static_cast<const char*>(info.dli_saddr) + static_cast<const ElfW(Sym)*>(entry)->st_size;
    for (const char* name : kIvfSearches) {
        void* fn = dlsym(lib, name);
        if (fn == nullptr) continue;
        for (void* const* slot = vptr; reinterpret_cast<const char*>(slot + 1) <= end; ++slot)
            if (*slot == fn) return reinterpret_cast<FaissSearch>(fn);
    }
    return nullptr;
}

// _graph.cpp's `RWLock` as a Python object (index/rwlock.py `NativeRWLock`) that Python and native code
// share: `FaissIvf` takes its read side without the GIL, where the Python lock's `with` cost ~1.5 us a
// query; faiss's `add` and `remove_ids` take the write side from Python. Blocking waits release the GIL (a
// writer that needs the GIL to finish would otherwise deadlock a reader holding it). Like the Python lock,
// a thread must not take the read side twice: a writer waiting between the two would deadlock it.
class NativeRWLock : public RWLock {
  public:
    void acquire_read() {
        if (try_lock_shared()) return;
        py::gil_scoped_release nogil;
        lock_shared();
    }
    void acquire_write() {
        if (try_lock()) return;
        py::gil_scoped_release nogil;
        lock();
    }
    void release() { unlock(); }  // either side: one pthread_rwlock_unlock
};

// The class of a search hit (index/contract.py `Hit`, a slots dataclass) and its slot descriptors, set once
// by index/ivf_search.py. `FaissIvf.hits` makes them without calling the dataclass's `__init__`, a Python
// function that cost ~0.5 us a hit (5 us of a ~200 us query): it allocates the object and stores each slot
// through its member descriptor, the fields after id and score set to None (their defaults; ivf_search
// checks that, and that the class has no `__post_init__`).
struct HitClass {
    py::object cls;
    std::vector<py::object> slots;  // member descriptors: id, score, then fields defaulting to None
};
HitClass g_hit;

void set_hit_class(py::object cls, const std::vector<std::string>& fields) {
    if (!PyType_Check(cls.ptr()) || reinterpret_cast<PyTypeObject*>(cls.ptr())->tp_new != PyBaseObject_Type.tp_new)
        throw std::invalid_argument("need a class with object's __new__");
    if (fields.size() < 2) throw std::invalid_argument("need the id and score fields first");
    std::vector<py::object> slots;
    for (const std::string& f : fields) {
        py::object d = cls.attr(f.c_str());
        if (Py_TYPE(d.ptr()) != &PyMemberDescr_Type) throw std::invalid_argument("field " + f + " is not a slot");
        slots.push_back(std::move(d));
    }
    g_hit = HitClass{std::move(cls), std::move(slots)};
}

// A `Hit(id, score)` (the other fields None) by `g_hit`'s descriptors, the score object stored as given; a
// new reference.
PyObject* make_hit_obj(PyObject* id, PyObject* score) {
    auto* tp = reinterpret_cast<PyTypeObject*>(g_hit.cls.ptr());
    PyObject* h = tp->tp_alloc(tp, 0);
    if (h == nullptr) throw py::error_already_set();
    for (size_t i = 0; i < g_hit.slots.size(); ++i) {
        PyObject* d = g_hit.slots[i].ptr();
        if (Py_TYPE(d)->tp_descr_set(d, h, i == 0 ? id : i == 1 ? score : Py_None) != 0) {
            Py_DECREF(h);
            throw py::error_already_set();
        }
    }
    return h;
}

PyObject* make_hit(PyObject* id, double score) {
    const py::object sc = py::reinterpret_steal<py::object>(PyFloat_FromDouble(score));
    if (!sc) throw py::error_already_set();
    return make_hit_obj(id, sc.ptr());
}

// `[Hit(ids[i], scores[i]) ...]` (index/hits.py's hot path): each score object is stored as given, as
// `Hit(id, score)` would.
py::list make_hits(const py::list& ids, const py::list& scores) {
    if (!g_hit.cls) throw std::runtime_error("set_hit_class first");
    const Py_ssize_t n = PyList_GET_SIZE(ids.ptr());
    if (n != PyList_GET_SIZE(scores.ptr())) throw std::invalid_argument("ids and scores differ in length");
    py::list out(n);
    for (Py_ssize_t i = 0; i < n; ++i)
        PyList_SET_ITEM(out.ptr(), i, make_hit_obj(PyList_GET_ITEM(ids.ptr(), i), PyList_GET_ITEM(scores.ptr(), i)));
    return out;
}

// `DenseField.prepare_one`'s checks of a user's query [d] on the one-call paths: finite, and of unit norm
// within 1e-6 when `cosine` (a vector to normalise takes the general path, as does one that fails).
bool plain_query_ok(const float* q, int d, bool cosine) {
    const double sq = RowScorer().dot(q, q, d);  // float32, as numpy's v.dot(v)
    return std::isfinite(sq) && !(cosine && std::abs(sq - 1.0) > 1e-6);
}

// (score, label) hits as `Hit(ids[label], score)`, best first; a label with no id (past the list, or None:
// deleted since the walk) is dropped, as index/hits.py does.
py::list hits_by_id(const std::vector<std::pair<float, int64_t>>& hits, const py::list& ids) {
    py::list out(0);
    const auto known = static_cast<uint64_t>(PyList_GET_SIZE(ids.ptr()));
    for (const auto& s : hits) {
        if (static_cast<uint64_t>(s.second) >= known) continue;
        PyObject* id = PyList_GET_ITEM(ids.ptr(), s.second);
        if (id == Py_None) continue;
        out.append(py::reinterpret_steal<py::object>(make_hit(id, static_cast<double>(s.first))));
    }
    return out;
}

class FaissIvf {
  public:
    // `index`: a faiss IVF index (a SWIG proxy, kept alive here); `lib`: the path of the libfaiss.so it runs on;
    // `lock`: a `NativeRWLock` whose read side each search holds (None: the caller holds one).
    FaissIvf(py::object index, const std::string& lib, py::object lock) : index_(std::move(index)) {
        self_ = swig_this(index_);
        void* h = dlopen(lib.c_str(), RTLD_LAZY | RTLD_NOLOAD);  // faiss's own copy, already loaded
        if (h == nullptr) throw std::runtime_error("libfaiss is not loaded from " + lib);
        search_ = find_search(h, self_);
        // faiss's OpenMP runtime (a dependency of libfaiss.so): its thread count is per calling thread
        omp_ = reinterpret_cast<OmpSetThreads>(dlsym(h, "omp_set_num_threads"));
        dlclose(h);  // drops the reference dlopen added; the faiss module keeps the library loaded
        if (search_ == nullptr) throw std::runtime_error("this faiss index has no IVF search Nestor can call");
        if (omp_ == nullptr) throw std::runtime_error("libfaiss has no omp_set_num_threads");
        if (!lock.is_none()) {
            lock_ = lock.cast<NativeRWLock*>();
            lock_obj_ = std::move(lock);
        }
    }

    // query [1, dim]; `params` faiss SearchParameters (a SWIG proxy); k_ann the shortlist's length; rows,
    // alive, upto, n, k, l2 as `exact_scan` (labels upto..n are not in faiss yet and join the shortlist).
    // The k best live candidates as (labels, scores), or None when faiss found fewer than k_ann or fewer
    // than k are live: the planner's wider plan.
    py::object run(py::array_t<float, py::array::c_style | py::array::forcecast> query, const py::object& params,
                   int64_t k_ann, py::object rows, py::object alive, size_t upto, size_t n, int k, bool l2) const {
        const py::buffer_info row_buf = float_rows(rows);
        if (query.ndim() != 2 || query.shape(0) != 1 || query.shape(1) != row_buf.shape[1])
            throw std::invalid_argument("need one query of the rows' dimension");
        std::vector<Scored>& hits = scored(query.data(), params, k_ann, row_buf, alive, upto, n, k, l2);
        if (hits.size() < static_cast<size_t>(k)) return py::none();
        return hits_to_lists({hits})[0];
    }

    // `run` for a user's query vector [dim] as given (`DenseField.prepare_one`'s checks here: finite, and of
    // unit norm when `cosine`), straight to hits: the k best live as `Hit(ids[label], score)` (a label whose
    // id is None, deleted since, is dropped, as index/hits.py does). None: not that query (the wrong shape,
    // a NaN, a cosine vector to normalise) or too few candidates: the caller's general path then.
    py::object hits(py::array_t<float, py::array::c_style | py::array::forcecast> vec, const py::object& params,
                    int64_t k_ann, py::object rows, py::object alive, size_t upto, size_t n, int k, bool l2,
                    bool cosine, const py::list& ids) const {
        if (!g_hit.cls) throw std::runtime_error("set_hit_class first");
        const py::buffer_info row_buf = float_rows(rows);
        if (vec.ndim() != 1 || vec.shape(0) != row_buf.shape[1]) return py::none();
        const float* q = vec.data();
        if (!plain_query_ok(q, static_cast<int>(vec.shape(0)), cosine)) return py::none();
        std::vector<Scored>& hits = scored(q, params, k_ann, row_buf, alive, upto, n, k, l2);
        if (hits.size() < static_cast<size_t>(k)) return py::none();
        return hits_by_id(hits, ids);
    }

  private:
    // The shared part of `run` and `hits`, without the GIL: the k best live candidates, in a per-thread buffer
    // (empty when faiss found fewer than k_ann).
    std::vector<Scored>& scored(const float* q, const py::object& params, int64_t k_ann,
                                const py::buffer_info& row_buf, const py::object& alive, size_t upto, size_t n,
                                int k, bool l2) const {
        if (k < 1 || k_ann < 1) throw std::invalid_argument("need k >= 1 and k_ann >= 1");
        const int d = static_cast<int>(row_buf.shape[1]);
        const py::buffer_info live = byte_buffer(alive, "alive");
        const void* sp = swig_this(params);
        const auto* base = static_cast<const float*>(row_buf.ptr);
        const auto* alive_p = static_cast<const uint8_t*>(live.ptr);
        const size_t end = std::min({n, static_cast<size_t>(row_buf.shape[0]), static_cast<size_t>(live.shape[0])});
        const auto want = static_cast<size_t>(k_ann);

        thread_local std::vector<float> dist;
        thread_local std::vector<int64_t> labels;
        thread_local std::vector<uint32_t> cand;
        thread_local std::vector<Scored> hits;
        dist.resize(want);
        labels.resize(want);
        py::gil_scoped_release nogil;
        maybe_fail();
        omp_(1);  // one query: faiss parallelises over queries (index/backends/ivfpq.py)
        if (lock_ != nullptr) lock_->lock_shared();
        try {
            search_(self_, 1, q, k_ann, dist.data(), labels.data(), sp);
        } catch (...) {
            if (lock_ != nullptr) lock_->unlock_shared();
            throw;
        }
        if (lock_ != nullptr) lock_->unlock_shared();  // the rerank reads Nestor's rows, not faiss's lists
        hits.clear();
        if (labels[want - 1] >= 0) {  // faiss pads with -1: fewer than k_ann in the probed lists
            cand.clear();
            for (const int64_t lab : labels)
                if (static_cast<uint64_t>(lab) < end && alive_p[lab]) cand.push_back(static_cast<uint32_t>(lab));
            for (size_t lab = upto; lab < end; ++lab)
                if (alive_p[lab]) cand.push_back(static_cast<uint32_t>(lab));
            RowScorer().top(q, base, d, cand.data(), cand.size(), k, l2, hits);
        }
        return hits;
    }

    py::object index_;
    py::object lock_obj_;  // keeps `lock_` alive
    NativeRWLock* lock_ = nullptr;
    const void* self_ = nullptr;
    FaissSearch search_ = nullptr;
    OmpSetThreads omp_ = nullptr;
};

}  // namespace
