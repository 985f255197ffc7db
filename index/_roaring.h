// A reader of 32-bit roaring bitmaps in their portable serialisation (RoaringFormatSpec; pyroaring's
// BitMap.serialize()), container by container, in ascending order. The filter paths consume it two ways:
// as a bitset for a walk (index/_graph_query.h) and label by label for the exact scan (index/_graph_exact.h).
// Every read is bounds-checked: bad bytes are a ValueError (std::invalid_argument).
//
// Included by _graph_query.h, before anything that uses it.
#pragma once

namespace {

// Calls, for each container of the bitmap at `p` (`len` bytes), with `base` = its key << 16:
//   on_run(base, start, end)        a run of values start..end (inclusive) within the container;
//   on_bitmap(base, words)          a bitmap container: 1,024 little-endian 64-bit words (8 KiB, unaligned);
//   on_array(base, values, card)    an array container: `card` little-endian uint16 values, ascending.
template <class Run, class Bitmap, class Array>
void for_each_container(const uint8_t* p, size_t len, Run&& on_run, Bitmap&& on_bitmap, Array&& on_array) {
    constexpr uint32_t kCookie = 12347, kCookieNoRun = 12346;
    size_t at = 0;
    auto need = [&](size_t bytes) {
        if (at > len || len - at < bytes) throw std::invalid_argument("a malformed roaring bitmap");
    };
    auto u16 = [&](size_t pos) { return static_cast<uint32_t>(p[pos] | (p[pos + 1] << 8)); };
    auto u32 = [&](size_t pos) { return u16(pos) | (u16(pos + 2) << 16); };
    need(4);
    const uint32_t cookie = u32(0);
    at = 4;
    size_t count = 0;
    const uint8_t* runs = nullptr;
    if ((cookie & 0xFFFF) == kCookie) {
        count = (cookie >> 16) + 1;
        need((count + 7) / 8);
        runs = p + at;
        at += (count + 7) / 8;
    } else if (cookie == kCookieNoRun) {
        need(4);
        count = u32(at);
        at += 4;
    } else {
        throw std::invalid_argument("not a roaring bitmap (unknown cookie)");
    }
    if (count > 65536) throw std::invalid_argument("a malformed roaring bitmap (too many containers)");
    need(4 * count);
    const size_t header = at;
    at += 4 * count;
    if (runs == nullptr || count >= 4) at += 4 * count;  // the offset header, not needed reading in order
    for (size_t c = 0; c < count; ++c) {
        const uint32_t key = u16(header + 4 * c), card = u16(header + 4 * c + 2) + 1;
        const uint32_t base = key << 16;
        if (runs != nullptr && ((runs[c >> 3] >> (c & 7)) & 1)) {
            need(2);
            const uint32_t n_runs = u16(at);
            at += 2;
            need(4 * static_cast<size_t>(n_runs));
            for (uint32_t r = 0; r < n_runs; ++r, at += 4) {
                const uint32_t start = u16(at), end = start + u16(at + 2);  // inclusive
                if (end > 65535) throw std::invalid_argument("a malformed roaring bitmap (run past its container)");
                on_run(base, start, end);
            }
        } else if (card > 4096) {
            need(8192);
            on_bitmap(base, p + at);
            at += 8192;
        } else {
            need(2 * static_cast<size_t>(card));
            on_array(base, p + at, card);
            at += 2 * static_cast<size_t>(card);
        }
    }
}

}  // namespace
