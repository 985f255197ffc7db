// The SIMD distance kernels of the graph (index/_graph.cpp): int8 codes and float32 rows, plain C++,
// AVX2+FMA and AVX-512, picked at run time for the CPU (`set_kernel` forces one for graphs made afterwards).
//
// Included by _graph.cpp before the Graph class (NESTOR_X86 and <immintrin.h> are set up there).

namespace {

// ---- distance kernels -------------------------------------------------------------------------

using DotI8 = int32_t (*)(const int16_t*, const int8_t*, int);
using DotF32 = float (*)(const float*, const float*, int);

int32_t dot_i8_plain(const int16_t* q, const int8_t* c, int d) {
    int32_t s = 0;
    for (int i = 0; i < d; ++i) s += static_cast<int32_t>(q[i]) * c[i];
    return s;
}

float dot_f32_plain(const float* q, const float* x, int d) {
    float s = 0.f;
    for (int i = 0; i < d; ++i) s += q[i] * x[i];
    return s;
}

#ifdef NESTOR_X86
// int16 query x int8 codes: madd multiplies and sums pairs into int32 lanes, twice the work per
// instruction of a float conversion. `prepare` bounds sum |q| * 128 below 2^31, so no sum overflows.
__attribute__((target("avx2"))) int32_t dot_i8_avx2(const int16_t* q, const int8_t* c, int d) {
    __m256i acc = _mm256_setzero_si256();
    int i = 0;
    for (; i + 16 <= d; i += 16) {
        __m256i cv = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(c + i)));
        __m256i qv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + i));
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(qv, cv));
    }
    __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
    s4 = _mm_hadd_epi32(s4, s4);
    s4 = _mm_hadd_epi32(s4, s4);
    int32_t s = _mm_cvtsi128_si32(s4);
    for (; i < d; ++i) s += static_cast<int32_t>(q[i]) * c[i];
    return s;
}

__attribute__((target("avx2,fma"))) float dot_f32_avx2(const float* q, const float* x, int d) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 16 <= d; i += 16) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i + 8), _mm256_loadu_ps(x + i + 8), a1);
    }
    a0 = _mm256_add_ps(a0, a1);
    __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(a0), _mm256_extractf128_ps(a0, 1));
    s4 = _mm_hadd_ps(s4, s4);
    s4 = _mm_hadd_ps(s4, s4);
    float s = _mm_cvtss_f32(s4);
    for (; i < d; ++i) s += q[i] * x[i];
    return s;
}

// 8-bit query x int8 codes on AVX2, 32 dims per step. maddubs multiplies unsigned by signed bytes and
// sums pairs into int16 with saturation, so the operands are |c| (0..128, exact as unsigned even for
// -128) and q with c's sign moved onto it (q is -127..127, so negating it cannot overflow): each pair
// sums to at most 2 * 128 * 127 = 32,512 and nothing saturates. The result is exactly q . c (no offset
// to subtract, unlike VNNI's). Two accumulators keep two chains of maddubs in flight.
__attribute__((target("avx2"))) inline __m256i q8_step_avx2(const int8_t* q, const int8_t* c, __m256i ones) {
    const __m256i cv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(c));
    const __m256i qv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q));
    return _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_abs_epi8(cv), _mm256_sign_epi8(qv, cv)), ones);
}

__attribute__((target("avx2"))) int32_t dot_q8_avx2(const int8_t* q, const int8_t* c, int d) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i a0 = _mm256_setzero_si256(), a1 = _mm256_setzero_si256();
    int i = 0;
    for (; i + 64 <= d; i += 64) {
        a0 = _mm256_add_epi32(a0, q8_step_avx2(q + i, c + i, ones));
        a1 = _mm256_add_epi32(a1, q8_step_avx2(q + i + 32, c + i + 32, ones));
    }
    if (i + 32 <= d) a0 = _mm256_add_epi32(a0, q8_step_avx2(q + i, c + i, ones)), i += 32;
    a0 = _mm256_add_epi32(a0, a1);
    __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(a0), _mm256_extracti128_si256(a0, 1));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4E));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xB1));
    int32_t s = _mm_cvtsi128_si32(s4);
    for (; i < d; ++i) s += static_cast<int32_t>(q[i]) * c[i];
    return s;
}

__attribute__((target("avx512f,avx512bw"))) int32_t dot_i8_avx512(const int16_t* q, const int8_t* c, int d) {
    __m512i a0 = _mm512_setzero_si512(), a1 = _mm512_setzero_si512();
    int i = 0;
    for (; i + 64 <= d; i += 64) {
        __m512i c0 = _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(c + i)));
        __m512i c1 = _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(c + i + 32)));
        a0 = _mm512_add_epi32(a0, _mm512_madd_epi16(_mm512_loadu_si512(q + i), c0));
        a1 = _mm512_add_epi32(a1, _mm512_madd_epi16(_mm512_loadu_si512(q + i + 32), c1));
    }
    for (; i + 32 <= d; i += 32) {
        __m512i c0 = _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(c + i)));
        a0 = _mm512_add_epi32(a0, _mm512_madd_epi16(_mm512_loadu_si512(q + i), c0));
    }
    int32_t s = _mm512_reduce_add_epi32(_mm512_add_epi32(a0, a1));
    for (; i < d; ++i) s += static_cast<int32_t>(q[i]) * c[i];
    return s;
}

__attribute__((target("avx512f"))) float dot_f32_avx512(const float* q, const float* x, int d) {
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    int i = 0;
    for (; i + 32 <= d; i += 32) {
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(q + i), _mm512_loadu_ps(x + i), a0);
        a1 = _mm512_fmadd_ps(_mm512_loadu_ps(q + i + 16), _mm512_loadu_ps(x + i + 16), a1);
    }
    for (; i + 16 <= d; i += 16) a0 = _mm512_fmadd_ps(_mm512_loadu_ps(q + i), _mm512_loadu_ps(x + i), a0);
    float s = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
    for (; i < d; ++i) s += q[i] * x[i];
    return s;
}

// 8-bit query x int8 codes with AVX-512 VNNI: dpbusd multiplies unsigned by signed bytes, so the codes
// are flipped to unsigned (c + 128) and 128 * sum(q) is subtracted afterwards (`Prepared::corr`).
// Four times the work per instruction of the int16 path; rounding the query to 8 bits changed no
// recall@10 on pypi-minilm (benchmarks/COMPRESSION.md).
__attribute__((target("avx512f,avx512bw,avx512vnni"))) int32_t dot_q8_vnni(const int8_t* q, const int8_t* c, int d) {
    const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
    __m512i a0 = _mm512_setzero_si512(), a1 = _mm512_setzero_si512();
    int i = 0;
    for (; i + 128 <= d; i += 128) {
        __m512i c0 = _mm512_xor_si512(_mm512_loadu_si512(c + i), flip);
        __m512i c1 = _mm512_xor_si512(_mm512_loadu_si512(c + i + 64), flip);
        a0 = _mm512_dpbusd_epi32(a0, c0, _mm512_loadu_si512(q + i));
        a1 = _mm512_dpbusd_epi32(a1, c1, _mm512_loadu_si512(q + i + 64));
    }
    for (; i + 64 <= d; i += 64)
        a0 = _mm512_dpbusd_epi32(a0, _mm512_xor_si512(_mm512_loadu_si512(c + i), flip), _mm512_loadu_si512(q + i));
    int32_t s = _mm512_reduce_add_epi32(_mm512_add_epi32(a0, a1));
    for (; i < d; ++i) s += (static_cast<int32_t>(c[i]) + 128) * q[i];
    return s;
}

#endif  // NESTOR_X86

using DotQ8 = int32_t (*)(const int8_t*, const int8_t*, int);

struct Kernels {
    DotI8 i8;
    DotF32 f32;
    const char* name;
    DotQ8 q8 = nullptr;  // preferred over `i8` where the CPU has it
    int32_t q8_flip = 0;  // what `q8` adds to each code (VNNI: 128), taken off again as flip * sum(q)
};

constexpr const char* kKernelNames[] = {"plain", "avx2", "avx2-q8", "avx512", "avx512-vnni"};

// The kernels this CPU runs, worst to best.
const std::vector<Kernels>& supported_kernels() {
    static const std::vector<Kernels> found = [] {
        std::vector<Kernels> k{{dot_i8_plain, dot_f32_plain, "plain"}};
#ifdef NESTOR_X86
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
            k.push_back({dot_i8_avx2, dot_f32_avx2, "avx2"});
            k.push_back({dot_i8_avx2, dot_f32_avx2, "avx2-q8", dot_q8_avx2});
        }
        if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")) {
            k.push_back({dot_i8_avx512, dot_f32_avx512, "avx512"});
            if (__builtin_cpu_supports("avx512vnni"))
                k.push_back({dot_i8_avx512, dot_f32_avx512, "avx512-vnni", dot_q8_vnni, 128});
        }
#endif
        return k;
    }();
    return found;
}

std::atomic<int> g_forced_kernel{-1};  // an index into supported_kernels(), or -1 for the best

// A graph keeps the kernels it was made with: a query prepared for one kernel cannot be scored by another.
Kernels pick_kernels() {
    const auto& k = supported_kernels();
    const int forced = g_forced_kernel.load();
    return forced < 0 ? k.back() : k[static_cast<size_t>(forced)];
}

std::vector<std::string> available_kernels() {
    std::vector<std::string> out;
    for (const Kernels& k : supported_kernels()) out.emplace_back(k.name);
    return out;
}

// Forces the kernel of graphs made or loaded from now on ("auto": the best one); returns the previous setting.
std::string set_kernel(const std::string& name) {
    const auto& k = supported_kernels();
    int pick = -2;
    if (name == "auto") pick = -1;
    for (size_t i = 0; i < k.size(); ++i)
        if (name == k[i].name) pick = static_cast<int>(i);
    if (pick == -2) {
        for (const char* known : kKernelNames)
            if (name == known) throw std::invalid_argument("this CPU cannot run the '" + name + "' kernel");
        throw std::invalid_argument("unknown kernel '" + name + "' (plain, avx2, avx2-q8, avx512, avx512-vnni or auto)");
    }
    const int prev = g_forced_kernel.exchange(pick);
    return prev < 0 ? std::string("auto") : std::string(k[static_cast<size_t>(prev)].name);
}

}  // namespace
