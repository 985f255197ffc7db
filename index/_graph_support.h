// What the graph is built from besides its kernels (index/_graph.cpp): worker threads, shape bounds, the
// read-write lock, huge-page arrays, per-search scratch, filter masks, saved-state checks and borrowed rows.
//
// Included by _graph.cpp after _graph_kernels.h, before the Graph class.

namespace {

// Tests only: the n-th insert or query from now on throws, to show that worker-thread errors surface.
std::atomic<int64_t> g_fail_after{0};

inline void maybe_fail() {
    if (g_fail_after.load(std::memory_order_relaxed) > 0 && g_fail_after.fetch_sub(1) == 1)
        throw std::runtime_error("injected fault");
}

// Runs `work` on `threads` threads, the caller's among them, and rethrows the first exception once all
// have joined (one escaping a std::thread would be std::terminate). If no more threads can be started,
// those running finish the work: `work` pulls items from a shared counter.
template <class F>
void run_parallel(int threads, F&& work) {
    std::exception_ptr error;
    std::mutex error_lock;
    auto guarded = [&]() {
        try {
            work();
        } catch (...) {
            std::lock_guard<std::mutex> lk(error_lock);
            if (!error) error = std::current_exception();
        }
    };
    std::vector<std::thread> pool;
    try {
        pool.reserve(static_cast<size_t>(std::max(0, threads - 1)));
        for (int i = 1; i < threads; ++i) pool.emplace_back(guarded);
    } catch (const std::exception&) {
    }
    guarded();
    for (auto& th : pool) th.join();
    if (error) std::rethrow_exception(error);
}

// Bounds of the graph's shape. MAX_M matches HnswIndexConfig.m (le=128); level 0 keeps up to 2m links,
// and the scratch buffers of a search are sized for that.
constexpr int kMaxM = 128;
constexpr int kMaxLinks = 2 * kMaxM;
constexpr int kThirdHop = 32;  // rejected nodes an ACORN expansion may look through at the third hop
constexpr int kMaxLevel = 30;  // draw_level's cap
constexpr int kRefineFar = 2;  // `refine`: current links beyond the pool a node may keep
// A rescore widens its walk (`Graph::walk_rescored`) until the k-th exact score clears the codes' error by
// this many standard deviations, up to this many times the first candidates (and at most this many).
constexpr double kCertZ = 3.0;
constexpr int kMaxWiden = 64;
constexpr int kMaxWidenKeep = 4096;

inline void prefetch(const void* p) { __builtin_prefetch(p, 0, 3); }

// The plain walk prefetches the vectors of the neighbours a few ahead of the one it scores, about this
// many cache lines in all: all of an expansion's neighbours at once (what the other walks do) asks for
// more lines than a core has in flight, and the early ones wait behind the rest. For int8 MiniLM codes
// (6 lines) that is 4 ahead, for float32 ones (24 lines) 1 ahead, which measured 5 % faster than all
// at once at ef 16 (benchmarks/NATIVE.md).
constexpr int kLinesAhead = 24;


// ---- locking -----------------------------------------------------------------------------------

// Searches share the lock, mutations take it alone; a waiting writer blocks new readers, so a stream
// of searches cannot starve the indexer. Taken with the GIL released wherever the holder could wait.
class RWLock {
  public:
    RWLock() {
        pthread_rwlockattr_t attr;
        pthread_rwlockattr_init(&attr);
#ifdef __GLIBC__  // elsewhere the platform's default preference
        pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
#endif
        pthread_rwlock_init(&lock_, &attr);
        pthread_rwlockattr_destroy(&attr);
    }
    ~RWLock() { pthread_rwlock_destroy(&lock_); }
    RWLock(const RWLock&) = delete;
    RWLock& operator=(const RWLock&) = delete;
    void lock_shared() { pthread_rwlock_rdlock(&lock_); }
    void unlock_shared() { pthread_rwlock_unlock(&lock_); }
    void lock() { pthread_rwlock_wrlock(&lock_); }
    void unlock() { pthread_rwlock_unlock(&lock_); }
    bool try_lock_shared() { return pthread_rwlock_tryrdlock(&lock_) == 0; }
    bool try_lock() { return pthread_rwlock_trywrlock(&lock_) == 0; }

  private:
    pthread_rwlock_t lock_;
};

using ReadGuard = std::shared_lock<RWLock>;
using WriteGuard = std::unique_lock<RWLock>;

// ---- memory ------------------------------------------------------------------------------------

// Large arrays go on 2 MiB pages where the kernel allows it (THP in "madvise" mode is common): a search
// touches about a thousand random codes, and with 4 KiB pages each is also a TLB miss.
template <class T>
struct HugeAlloc {
    using value_type = T;
    HugeAlloc() = default;
    template <class U>
    HugeAlloc(const HugeAlloc<U>&) {}
    static constexpr size_t kHuge = size_t{1} << 21;
    T* allocate(size_t n) {
        size_t bytes = n * sizeof(T);
        if (bytes < kHuge) {
            void* p = std::malloc(bytes ? bytes : 1);
            if (!p) throw std::bad_alloc();
            return static_cast<T*>(p);
        }
        bytes = (bytes + kHuge - 1) & ~(kHuge - 1);
        void* p = std::aligned_alloc(kHuge, bytes);
        if (!p) throw std::bad_alloc();
#ifdef MADV_HUGEPAGE
        madvise(p, bytes, MADV_HUGEPAGE);
#endif
        return static_cast<T*>(p);
    }
    void deallocate(T* p, size_t) noexcept { std::free(p); }
    template <class U>
    bool operator==(const HugeAlloc<U>&) const { return true; }
    template <class U>
    bool operator!=(const HugeAlloc<U>&) const { return false; }
};

template <class T>
using HugeVec = std::vector<T, HugeAlloc<T>>;

// ---- per-search scratch ---------------------------------------------------------------------

using Pair = std::pair<float, int32_t>;  // (distance, node); lower distance is closer
struct Closer {
    bool operator()(const Pair& a, const Pair& b) const { return a.first > b.first; }
};

// A search's visited marks (an epoch per node, so nothing is cleared between searches) and heap storage.
struct Visited {
    std::vector<uint16_t> mark;
    uint16_t epoch = 0;
    std::vector<Pair> cand, top;
    std::vector<float> pool_d;  // the sorted beam of `beam_search`
    std::vector<int32_t> pool_id;
    std::vector<uint8_t> pool_done;
    void begin(size_t n) {
        if (mark.size() < n) mark.assign(n, 0), epoch = 0;
        if (++epoch == 0) std::fill(mark.begin(), mark.end(), 0), epoch = 1;
        cand.clear();
        top.clear();
    }
    bool test_and_set(int32_t id) {
        if (mark[id] == epoch) return true;
        mark[id] = epoch;
        return false;
    }
};

// Which nodes a filtered search may return: a byte mask over node positions, or over labels (the
// collection's row numbers, so the caller need not know positions). Labels past the mask are refused:
// rows added after the caller built its mask do not match a filter it evaluated before them.
// `Graph.query`'s `allowed` as a bitset (defined in _graph_query.h): `Graph.search` reads roaring bytes too.
void read_allowed(const py::object& allowed, std::vector<uint64_t>& bits);

struct Allow {
    const uint8_t* mask = nullptr;
    size_t len = 0;
    const int64_t* labels = nullptr;  // set: `mask` (or `bits`) is by label
    const uint64_t* bits = nullptr;   // a bitset by label instead of a byte mask: `len` is in bits
    bool operator()(int32_t id) const {
        if (labels == nullptr) return mask[id] != 0;
        const int64_t lab = labels[id];
        if (lab < 0 || static_cast<size_t>(lab) >= len) return false;
        if (bits != nullptr) return (bits[lab >> 6] >> (lab & 63)) & 1u;
        return mask[lab] != 0;
    }
};

// ---- saved state -------------------------------------------------------------------------------

// One array of a saved state, of exactly the dtype T: a cast could hide a damaged or foreign file.
template <class T>
py::array_t<T, py::array::c_style> state_array(const py::dict& st, const char* key, int ndim) {
    const std::string name(key);
    if (!st.contains(key)) throw std::invalid_argument("the graph state has no '" + name + "'");
    py::object obj = st[key];
    if (!py::isinstance<py::array>(obj))
        throw std::invalid_argument(name + " must be an array, not " + Py_TYPE(obj.ptr())->tp_name);
    if (!py::array_t<T>::check_(obj)) {
        const std::string want = py::str(py::dtype::of<T>()), got = py::str(obj.attr("dtype"));
        throw std::invalid_argument(name + " must be " + want + ", not " + got);
    }
    auto arr = py::array_t<T, py::array::c_style>::ensure(obj);  // same dtype: at most a contiguous copy
    if (!arr) throw std::invalid_argument(name + ": cannot read the array");
    if (arr.ndim() != ndim)
        throw std::invalid_argument(name + " must have " + std::to_string(ndim) + " dimensions, not " +
                                    std::to_string(arr.ndim()));
    return arr;
}

void expect_shape(const char* name, const py::array& arr, std::vector<size_t> want) {
    bool same = static_cast<size_t>(arr.ndim()) == want.size();
    for (size_t i = 0; same && i < want.size(); ++i) same = static_cast<size_t>(arr.shape(i)) == want[i];
    if (same) return;
    auto text = [](auto dims) {
        std::string t = "(";
        for (size_t i = 0; i < dims.size(); ++i) t += (i ? ", " : "") + std::to_string(dims[i]);
        return t + ")";
    };
    std::vector<size_t> got(arr.shape(), arr.shape() + arr.ndim());
    throw std::invalid_argument(std::string(name) + " has shape " + text(got) + ", expected " + text(want));
}

int64_t state_int(const py::dict& st, const char* key) {
    const std::string name(key);
    if (!st.contains(key)) throw std::invalid_argument("the graph state has no '" + name + "'");
    py::object v = st[key];
    if (!py::isinstance<py::int_>(v) || py::isinstance<py::bool_>(v))
        throw std::invalid_argument(name + " must be an integer");
    try {
        return v.cast<int64_t>();
    } catch (const py::cast_error&) {
        throw std::invalid_argument(name + " is out of range");
    } catch (const py::error_already_set&) {
        throw std::invalid_argument(name + " is out of range");
    }
}

// The float32 rows a graph reads in place (label == row). The Py_buffer holds a reference to its owner
// (a numpy array or a memory map), so the rows outlive every search that reads them; it is acquired
// and released with the GIL held, and swapped only under the graph's write lock.
struct RowBuf {
    Py_buffer view{};
    bool held = false;
    RowBuf() = default;
    RowBuf(const RowBuf&) = delete;
    RowBuf& operator=(const RowBuf&) = delete;
    ~RowBuf() {  // the GIL is held wherever a RowBuf is destroyed
        if (held) PyBuffer_Release(&view);
    }
    const float* data() const { return static_cast<const float*>(view.buf); }
    size_t rows() const { return held ? static_cast<size_t>(view.shape[0]) : 0; }
};

// Takes a buffer of C-contiguous float32 [rows, dim] rows; raises ValueError for anything else.
std::unique_ptr<RowBuf> take_rows(const py::object& obj, int dim) {
    auto rb = std::make_unique<RowBuf>();
    if (PyObject_GetBuffer(obj.ptr(), &rb->view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) != 0) {
        PyErr_Clear();
        throw std::invalid_argument("rows must be a C-contiguous float32 [rows, dim] buffer");
    }
    rb->held = true;
    const std::string fmt = rb->view.format ? rb->view.format : "B";
    const bool f32 = rb->view.itemsize == 4 && (fmt == "f" || fmt == "<f" || fmt == "=f");
    if (!f32 || rb->view.ndim != 2 || rb->view.shape[1] != dim) {
        throw std::invalid_argument("rows must be a C-contiguous float32 [rows, " + std::to_string(dim) + "] buffer");
    }
    return rb;
}

}  // namespace
