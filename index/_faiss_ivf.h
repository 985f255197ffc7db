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

class FaissIvf {
  public:
    // `index`: a faiss IVF index (a SWIG proxy, kept alive here); `lib`: the path of the libfaiss.so it runs on.
    FaissIvf(py::object index, const std::string& lib) : index_(std::move(index)) {
        self_ = swig_this(index_);
        void* h = dlopen(lib.c_str(), RTLD_LAZY | RTLD_NOLOAD);  // faiss's own copy, already loaded
        if (h == nullptr) throw std::runtime_error("libfaiss is not loaded from " + lib);
        search_ = find_search(h, self_);
        // faiss's OpenMP runtime (a dependency of libfaiss.so): its thread count is per calling thread
        omp_ = reinterpret_cast<OmpSetThreads>(dlsym(h, "omp_set_num_threads"));
        dlclose(h);  // drops the reference dlopen added; the faiss module keeps the library loaded
        if (search_ == nullptr) throw std::runtime_error("this faiss index has no IVF search Nestor can call");
        if (omp_ == nullptr) throw std::runtime_error("libfaiss has no omp_set_num_threads");
    }

    // query [1, dim]; `params` faiss SearchParameters (a SWIG proxy); k_ann the shortlist's length; rows,
    // alive, upto, n, k, l2 as `exact_scan` (labels upto..n are not in faiss yet and join the shortlist).
    // The k best live candidates as (labels, scores), or None when faiss found fewer than k_ann or fewer
    // than k are live: the planner's wider plan.
    py::object run(py::array_t<float, py::array::c_style | py::array::forcecast> query, const py::object& params,
                   int64_t k_ann, py::object rows, py::object alive, size_t upto, size_t n, int k, bool l2) const {
        if (k < 1 || k_ann < 1) throw std::invalid_argument("need k >= 1 and k_ann >= 1");
        const py::buffer_info row_buf = float_rows(rows);
        const int d = static_cast<int>(row_buf.shape[1]);
        if (query.ndim() != 2 || query.shape(0) != 1 || query.shape(1) != d)
            throw std::invalid_argument("need one query of the rows' dimension");
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
        {
            py::gil_scoped_release nogil;
            maybe_fail();
            omp_(1);  // one query: faiss parallelises over queries (index/backends/ivfpq.py)
            search_(self_, 1, query.data(), k_ann, dist.data(), labels.data(), sp);
            if (labels[want - 1] < 0) {  // faiss pads with -1: fewer than k_ann in the probed lists
                hits.clear();
            } else {
                cand.clear();
                for (const int64_t lab : labels)
                    if (static_cast<uint64_t>(lab) < end && alive_p[lab]) cand.push_back(static_cast<uint32_t>(lab));
                for (size_t lab = upto; lab < end; ++lab)
                    if (alive_p[lab]) cand.push_back(static_cast<uint32_t>(lab));
                RowScorer().top(query.data(), base, d, cand.data(), cand.size(), k, l2, hits);
            }
        }
        if (hits.size() < static_cast<size_t>(k)) return py::none();
        return hits_to_lists({hits})[0];
    }

  private:
    py::object index_;
    const void* self_ = nullptr;
    FaissSearch search_ = nullptr;
    OmpSetThreads omp_ = nullptr;
};

}  // namespace
