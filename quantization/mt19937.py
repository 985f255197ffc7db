"""`std::mt19937` and the libstdc++ (GCC >= 11) distributions MUVERA's reference draws from, in numpy.

NumPy's legacy `RandomState` seeds MT19937 with the same `init_genrand` as `std::mt19937(seed)`, so the raw
32-bit stream is identical. On top of it: `uniform_int_distribution` (Lemire's method) with
`bernoulli_distribution(0.5)` match bit for bit; `normal_distribution<float>` (Marsaglia polar) uses the
correctly rounded `log` where glibc's `logf` is not correctly rounded, so about 0.5% of its draws differ by
one ulp. Builds with libc++ or GCC <= 10 draw other numbers altogether.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from quantization.base import FloatArray

__all__ = ["index_sign_draws", "mt19937_uint32", "normal_f32"]

IntArray = npt.NDArray[np.int64]
_U64 = npt.NDArray[np.uint64]
_TWO32 = 1 << 32


class _RawStream:
    """The raw 32-bit outputs of `std::mt19937(seed)`, buffered so callers can look ahead and then consume."""

    def __init__(self, seed: int) -> None:
        # RandomState seeds MT19937 with init_genrand(seed), exactly like std::mt19937(seed).
        self._rs = np.random.RandomState(seed & 0xFFFFFFFF)
        self._buf: _U64 = np.empty(0, dtype=np.uint64)
        self.pos = 0

    def window(self, n: int) -> _U64:
        short = self.pos + n - self._buf.size
        if short > 0:
            # randint over the full uint32 range returns the generator's outputs untouched.
            more = self._rs.randint(0, _TWO32, size=max(short, 4096), dtype=np.uint32)
            self._buf = np.concatenate([self._buf[self.pos :], more.astype(np.uint64)])
            self.pos = 0
        return self._buf[self.pos : self.pos + n]

    def take(self, n: int) -> _U64:
        out = self.window(n)
        self.pos += n
        return out


def mt19937_uint32(seed: int, n: int) -> npt.NDArray[np.uint32]:
    """The first `n` outputs of `std::mt19937(seed)`."""
    return _RawStream(seed).take(n).astype(np.uint32)


def _canonical_f32(u: _U64) -> FloatArray:
    # generate_canonical<float>: one draw, float(u) / 2^32, clamped below 1.
    r: FloatArray = u.astype(np.float32) / np.float32(_TWO32)
    return np.minimum(r, np.float32(np.nextafter(np.float32(1), np.float32(0))))


def normal_f32(seed: int, n: int) -> FloatArray:
    """The first `n` draws of `std::normal_distribution<float>(0, 1)` over a fresh `std::mt19937(seed)`.

    libstdc++'s Marsaglia polar method: each accepted pair yields two values (y*m now, x*m cached).
    """
    stream = _RawStream(seed)
    chunks: list[FloatArray] = [np.empty(0, dtype=np.float32)]
    have = 0
    while have < n:
        # pi/4 of the pairs are accepted.
        pairs = max(16, int((n - have) / 2 / 0.78) + 16)
        u = stream.take(2 * pairs).reshape(pairs, 2)
        x = np.float32(2) * _canonical_f32(u[:, 0]) - np.float32(1)
        y = np.float32(2) * _canonical_f32(u[:, 1]) - np.float32(1)
        r2 = x * x + y * y
        ok = (r2 > 0) & (r2 <= 1)
        x, y, r2 = x[ok], y[ok], r2[ok]
        log_r2 = np.log(r2.astype(np.float64)).astype(np.float32)
        mult = np.sqrt(np.float32(-2) * log_r2 / r2)
        vals = np.stack([y * mult, x * mult], axis=1).reshape(-1)
        chunks.append(vals.astype(np.float32))
        have += vals.size
    return np.concatenate(chunks)[:n]


def _bernoulli_half(lo: _U64, hi: _U64) -> npt.NDArray[np.bool_]:
    # bernoulli_distribution(0.5) uses generate_canonical<double>: two draws, low word first.
    r = (lo.astype(np.float64) + hi.astype(np.float64) * 4294967296.0) / 18446744073709551616.0
    return r < 0.5


def index_sign_draws(seed: int, count: int, n: int) -> tuple[IntArray, FloatArray]:
    """`count` x (`uniform_int_distribution(0, n-1)`, `bernoulli(0.5)`) from a fresh `std::mt19937(seed)`.

    Lemire's method draws once unless the low word falls under `2^32 mod n`, then redraws; the common path is
    vectorised and a rejection (probability < n / 2^32 per item) is replayed item by item.
    """
    stream = _RawStream(seed)
    threshold = (_TWO32 - n) % n
    index = np.empty(count, dtype=np.int64)
    sign = np.empty(count, dtype=np.float32)
    done = 0
    while done < count:
        m = count - done
        u = stream.window(3 * m).reshape(m, 3)
        low = (u[:, 0] * np.uint64(n)) & np.uint64(0xFFFFFFFF)
        bad = np.flatnonzero(low < threshold)
        ok = int(bad[0]) if bad.size else m
        index[done : done + ok] = ((u[:ok, 0] * np.uint64(n)) >> np.uint64(32)).astype(np.int64)
        sign[done : done + ok] = np.where(_bernoulli_half(u[:ok, 1], u[:ok, 2]), 1.0, -1.0)
        stream.pos += 3 * ok
        done += ok
        if done < count:
            product = int(stream.take(1)[0]) * n
            while (product & 0xFFFFFFFF) < threshold:
                product = int(stream.take(1)[0]) * n
            index[done] = product >> 32
            lo_hi = stream.take(2)
            sign[done] = 1.0 if _bernoulli_half(lo_hi[:1], lo_hi[1:])[0] else -1.0
            done += 1
    return index, sign
