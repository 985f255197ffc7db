// Exact MaxSim (late interaction) over stored token vectors, in place: `score(Q, D) = sum_i max_j <q_i, d_j>`.
//
// Included by _graph.cpp (one extension module, so the kernels picked at run time are shared). The
// numpy path (quantization/maxsim.py) gathers the candidates' token rows, widens them to float32 and
// multiplies: at 400 MUVERA candidates of 14 int8 tokens that was 3.7 of a search's 5 ms, almost all of
// it copies. Here each document token is read where it is stored, widened once into a small buffer, and
// scored against every query token, eight query tokens per pass over it; nothing is allocated per document.
//
// Scores are exact for the stored values, as numpy's: an int8 row is `code * scale` (one float32 scale
// per token row), float16 rows are widened, and a document without tokens scores -inf.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

namespace maxsim {

namespace py = pybind11;

inline float half_to_float(uint16_t h) {
    const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13);  // inf, nan
    } else if (exp != 0) {
        bits = sign | ((exp + 112u) << 23) | (man << 13);
    } else if (man == 0) {
        bits = sign;
    } else {  // subnormal: shift the mantissa up to a normal float
        exp = 113;
        while (!(man & 0x400u)) {
            man <<= 1;
            --exp;
        }
        bits = sign | (exp << 23) | ((man & 0x3ffu) << 13);
    }
    float out;
    std::memcpy(&out, &bits, sizeof out);
    return out;
}

#ifdef NESTOR_X86
__attribute__((target("avx2,f16c"))) inline void widen_f16_f16c(const uint16_t* src, float* dst, int d) {
    int i = 0;
    for (; i + 8 <= d; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))));
    for (; i < d; ++i) dst[i] = half_to_float(src[i]);
}

__attribute__((target("avx2"))) inline void widen_i8_avx2(const int8_t* src, float* dst, int d) {
    int i = 0;
    for (; i + 8 <= d; i += 8) {
        const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(src + i));
        _mm256_storeu_ps(dst + i, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b)));
    }
    for (; i < d; ++i) dst[i] = static_cast<float>(src[i]);
}
#endif

// `B` query rows (`stride` apart) against one float32 row `x`: B independent FMA chains, so a short
// dot product is not bound by the FMA latency of one or two accumulators (4x slower, measured).
template <int B>
inline void dots_plain(const float* q, int64_t stride, const float* x, int d, float* out) {
    for (int j = 0; j < B; ++j) {
        float s = 0.f;
        for (int i = 0; i < d; ++i) s += q[j * stride + i] * x[i];
        out[j] = s;
    }
}

#ifdef NESTOR_X86
template <int B>
__attribute__((target("avx2,fma"))) inline void dots_avx2(const float* q, int64_t stride, const float* x, int d,
                                                          float* out) {
    __m256 acc[B];
    for (int j = 0; j < B; ++j) acc[j] = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= d; i += 8) {
        const __m256 xv = _mm256_loadu_ps(x + i);
        for (int j = 0; j < B; ++j) acc[j] = _mm256_fmadd_ps(_mm256_loadu_ps(q + j * stride + i), xv, acc[j]);
    }
    for (int j = 0; j < B; ++j) {
        __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(acc[j]), _mm256_extractf128_ps(acc[j], 1));
        s4 = _mm_hadd_ps(s4, s4);
        s4 = _mm_hadd_ps(s4, s4);
        float s = _mm_cvtss_f32(s4);
        for (int k = i; k < d; ++k) s += q[j * stride + k] * x[k];
        out[j] = s;
    }
}

template <int B>
__attribute__((target("avx512f"))) inline void dots_avx512(const float* q, int64_t stride, const float* x, int d,
                                                           float* out) {
    __m512 acc[B];
    for (int j = 0; j < B; ++j) acc[j] = _mm512_setzero_ps();
    int i = 0;
    for (; i + 16 <= d; i += 16) {
        const __m512 xv = _mm512_loadu_ps(x + i);
        for (int j = 0; j < B; ++j) acc[j] = _mm512_fmadd_ps(_mm512_loadu_ps(q + j * stride + i), xv, acc[j]);
    }
    for (int j = 0; j < B; ++j) {
        float s = _mm512_reduce_add_ps(acc[j]);
        for (int k = i; k < d; ++k) s += q[j * stride + k] * x[k];
        out[j] = s;
    }
}
#endif

enum class Simd { plain, avx2, avx512 };

inline Simd best_simd() {
#ifdef NESTOR_X86
    static const Simd pick = [] {
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx512f")) return Simd::avx512;
        if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Simd::avx2;
        return Simd::plain;
    }();
    return pick;
#else
    return Simd::plain;
#endif
}

template <int B>
inline void dots(Simd simd, const float* q, int64_t stride, const float* x, int d, float* out) {
#ifdef NESTOR_X86
    if (simd == Simd::avx512) return dots_avx512<B>(q, stride, x, d, out);
    if (simd == Simd::avx2) return dots_avx2<B>(q, stride, x, d, out);
#endif
    (void)simd;
    dots_plain<B>(q, stride, x, d, out);
}

// Every query row against `x`, eight at a time.
inline void all_dots(Simd simd, const float* q, int t, int d, const float* x, float* out) {
    int i = 0;
    for (; i + 8 <= t; i += 8) dots<8>(simd, q + static_cast<int64_t>(i) * d, d, x, d, out + i);
    if (i + 4 <= t) {
        dots<4>(simd, q + static_cast<int64_t>(i) * d, d, x, d, out + i);
        i += 4;
    }
    for (; i < t; ++i) dots<1>(simd, q + static_cast<int64_t>(i) * d, d, x, d, out + i);
}

enum class Codes { f32, f16, i8 };

struct Store {
    Codes kind;
    const char* data;
    int64_t rows;
    int dim;
    const float* scale;  // int8 only
};

inline bool has_f16c() {
#ifdef NESTOR_X86
    static const bool yes = [] {
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c");
    }();
    return yes;
#else
    return false;
#endif
}

// Token row `r` as float32: a pointer into the store (float32) or into `buf` (widened).
inline const float* row(const Store& s, int64_t r, float* buf) {
    const int d = s.dim;
    switch (s.kind) {
        case Codes::f32:
            return reinterpret_cast<const float*>(s.data) + r * d;
        case Codes::f16: {
            const auto* src = reinterpret_cast<const uint16_t*>(s.data) + r * d;
#ifdef NESTOR_X86
            if (has_f16c()) {
                widen_f16_f16c(src, buf, d);
                return buf;
            }
#endif
            for (int i = 0; i < d; ++i) buf[i] = half_to_float(src[i]);
            return buf;
        }
        case Codes::i8: {
            const auto* src = reinterpret_cast<const int8_t*>(s.data) + r * d;
#ifdef NESTOR_X86
            if (has_f16c()) {  // AVX2 and more: the same CPUs
                widen_i8_avx2(src, buf, d);
                return buf;
            }
#endif
            for (int i = 0; i < d; ++i) buf[i] = static_cast<float>(src[i]);
            return buf;
        }
    }
    return buf;
}

// Scores of the documents `docs[0..n)` (labels into `offsets`) against the query `q` [t, dim].
inline void score_docs(const Store& s, const float* q, int t, const int64_t* offsets, const int64_t* docs, int64_t n,
                       float* out) {
    const Simd simd = best_simd();
    std::vector<float> buf(static_cast<size_t>(s.dim)), best(static_cast<size_t>(t)), sims(static_cast<size_t>(t));
    const float neg_inf = -std::numeric_limits<float>::infinity();
    for (int64_t k = 0; k < n; ++k) {
        const int64_t doc = docs == nullptr ? k : docs[k];
        const int64_t a = offsets[doc], b = offsets[doc + 1];
        if (a == b) {
            out[k] = neg_inf;
            continue;
        }
        std::fill(best.begin(), best.end(), neg_inf);
        for (int64_t r = a; r < b; ++r) {
            const float* x = row(s, r, buf.data());
            const float sc = s.kind == Codes::i8 ? s.scale[r] : 1.0f;
            all_dots(simd, q, t, s.dim, x, sims.data());
            for (int i = 0; i < t; ++i) {
                const float v = sims[static_cast<size_t>(i)] * sc;
                if (v > best[static_cast<size_t>(i)]) best[static_cast<size_t>(i)] = v;
            }
        }
        float total = 0.f;
        for (float v : best) total += v;
        out[k] = t == 0 ? 0.f : total;
    }
}

// The Python entry point: `maxsim(query, codes, scale, offsets, docs, n_docs)`.
// `codes` [rows, dim] float32, float16 or int8 (with `scale` [rows] float32), C-contiguous, perhaps with
// spare rows; `offsets` [>= n_docs + 1]; `docs` the labels to score, in order, or None for 0..n_docs.
inline py::array_t<float> scores(const py::array_t<float, py::array::c_style | py::array::forcecast>& query,
                                 const py::array& codes, const py::object& scale,
                                 const py::array_t<int64_t, py::array::c_style | py::array::forcecast>& offsets,
                                 const py::object& docs, int64_t n_docs) {
    if (query.ndim() != 2 || codes.ndim() != 2) throw py::value_error("query and codes must be 2-D");
    if (!(codes.flags() & py::array::c_style)) throw py::value_error("codes must be C-contiguous");
    Store s{Codes::f32, static_cast<const char*>(codes.data()), codes.shape(0), static_cast<int>(codes.shape(1)),
            nullptr};
    if (query.shape(1) != s.dim) throw py::value_error("query and codes differ in dimension");
    const py::dtype dt = codes.dtype();
    py::array_t<float, py::array::c_style | py::array::forcecast> scale_arr;
    if (dt.kind() == 'f' && dt.itemsize() == 4) {
        s.kind = Codes::f32;
    } else if (dt.kind() == 'f' && dt.itemsize() == 2) {
        s.kind = Codes::f16;
    } else if (dt.kind() == 'i' && dt.itemsize() == 1) {
        s.kind = Codes::i8;
        if (scale.is_none()) throw py::value_error("int8 codes need their scale");
        scale_arr = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(scale);
        if (!scale_arr || scale_arr.ndim() != 1 || scale_arr.shape(0) < s.rows)
            throw py::value_error("scale must be float32 [rows]");
        s.scale = scale_arr.data();
    } else {
        throw py::value_error("codes must be float32, float16 or int8");
    }
    if (n_docs < 0 || offsets.ndim() != 1 || offsets.shape(0) < n_docs + 1)
        throw py::value_error("offsets must hold n_docs + 1 entries");
    const int64_t* off = offsets.data();
    py::array_t<int64_t, py::array::c_style | py::array::forcecast> doc_arr;
    const int64_t* doc_ptr = nullptr;
    int64_t n = n_docs;
    if (!docs.is_none()) {
        doc_arr = py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(docs);
        if (!doc_arr || doc_arr.ndim() != 1) throw py::value_error("docs must be a 1-D integer array");
        doc_ptr = doc_arr.data();
        n = doc_arr.shape(0);
    }
    // The offsets of every document read are checked first, so no read leaves the codes (only the
    // candidates' when there are candidates: a search must not pay for the whole collection).
    for (int64_t k = 0; k < n; ++k) {
        const int64_t doc = doc_ptr == nullptr ? k : doc_ptr[k];
        if (doc < 0 || doc >= n_docs) throw py::value_error("docs must be labels below n_docs");
        if (off[doc] < 0 || off[doc + 1] < off[doc] || off[doc + 1] > s.rows)
            throw py::value_error("offsets must rise within the codes");
    }
    py::array_t<float> out(n);
    float* dst = out.mutable_data();
    const float* q = query.data();
    const int t = static_cast<int>(query.shape(0));
    {
        py::gil_scoped_release release;
        score_docs(s, q, t, off, doc_ptr, n, dst);
    }
    return out;
}

}  // namespace maxsim
