/*
 * memcpy, memmove, memset, memcmp and bcmp for the static musl build
 * (build.rs compiles this only for x86_64 musl targets), linked ahead of
 * musl's own.
 *
 * Why: musl's x86_64 memcpy starts `rep movsq` even for a few bytes and its
 * memcmp compares a byte at a time. Rust calls them for every short string
 * it copies or compares, and a 100,000-series push spent 42% of its time in
 * memcpy and 7% in memcmp, twice glibc's time in all (measured 2026-12-06).
 * glibc is not the answer for the packaged binary: its start-up asks the
 * CPU about its caches with dozens of CPUID instructions, each a trap to the
 * hypervisor in a virtual machine, about 0.4 ms of every `promdrop run` or
 * `push` that musl does not spend.
 *
 * Short lengths are copied with overlapping unaligned loads, all loads
 * before any store, so the same code serves memmove; long forward copies use
 * `rep movsb`, which CPUs since Ivy Bridge (ERMS) run at full speed.
 * Compiled with -ffreestanding -fno-builtin, so that the compiler does not
 * turn these loops back into calls to the functions they define.
 */

#include <stddef.h>
#include <stdint.h>

typedef uint64_t u64u __attribute__((may_alias, aligned(1)));
typedef uint32_t u32u __attribute__((may_alias, aligned(1)));
typedef uint16_t u16u __attribute__((may_alias, aligned(1)));
typedef long long v16u __attribute__((vector_size(16), may_alias, aligned(1)));

/* n <= 32; every byte is loaded before the first store. */
static inline void move_short(unsigned char *d, const unsigned char *s, size_t n) {
    if (n >= 16) {
        v16u a = *(const v16u *)s, b = *(const v16u *)(s + n - 16);
        *(v16u *)d = a;
        *(v16u *)(d + n - 16) = b;
    } else if (n >= 8) {
        uint64_t a = *(const u64u *)s, b = *(const u64u *)(s + n - 8);
        *(u64u *)d = a;
        *(u64u *)(d + n - 8) = b;
    } else if (n >= 4) {
        uint32_t a = *(const u32u *)s, b = *(const u32u *)(s + n - 4);
        *(u32u *)d = a;
        *(u32u *)(d + n - 4) = b;
    } else if (n >= 2) {
        uint16_t a = *(const u16u *)s, b = *(const u16u *)(s + n - 2);
        *(u16u *)d = a;
        *(u16u *)(d + n - 2) = b;
    } else if (n == 1) {
        *d = *s;
    }
}

/* n > 32, copying forwards 16 bytes at a time: safe when d <= s. */
static inline void move_forward(unsigned char *d, const unsigned char *s, size_t n) {
    v16u last = *(const v16u *)(s + n - 16);
    unsigned char *end = d + n - 16;
    while (d < end) {
        *(v16u *)d = *(const v16u *)s;
        d += 16;
        s += 16;
    }
    *(v16u *)end = last;
}

/* n > 32, copying backwards 16 bytes at a time: safe when d >= s. */
static inline void move_backward(unsigned char *d, const unsigned char *s, size_t n) {
    v16u first = *(const v16u *)s;
    size_t i = n;
    while (i > 16) {
        i -= 16;
        *(v16u *)(d + i) = *(const v16u *)(s + i);
    }
    *(v16u *)d = first;
}

void *memcpy(void *restrict dst, const void *restrict src, size_t n) {
    unsigned char *d = dst;
    const unsigned char *s = src;
    if (n <= 32) {
        move_short(d, s, n);
    } else if (n <= 512) {
        move_forward(d, s, n);
    } else {
        __asm__ volatile("rep movsb" : "+D"(d), "+S"(s), "+c"(n) : : "memory");
    }
    return dst;
}

void *memmove(void *dst, const void *src, size_t n) {
    unsigned char *d = dst;
    const unsigned char *s = src;
    if (n <= 32) {
        move_short(d, s, n);
    } else if ((uintptr_t)d - (uintptr_t)s >= n) {
        /* d is below s, or at least n bytes above it: a forward copy never
         * overwrites a byte it has yet to read. */
        move_forward(d, s, n);
    } else {
        move_backward(d, s, n);
    }
    return dst;
}

void *memset(void *dst, int c, size_t n) {
    unsigned char *d = dst;
    uint64_t v = (uint64_t)(unsigned char)c * 0x0101010101010101ull;
    if (n >= 16) {
        v16u w = {(long long)v, (long long)v};
        unsigned char *end = d + n - 16;
        while (d < end) {
            *(v16u *)d = w;
            d += 16;
        }
        *(v16u *)end = w;
    } else if (n >= 8) {
        *(u64u *)d = v;
        *(u64u *)(d + n - 8) = v;
    } else if (n >= 4) {
        *(u32u *)d = (uint32_t)v;
        *(u32u *)(d + n - 4) = (uint32_t)v;
    } else {
        for (size_t i = 0; i < n; i++) {
            d[i] = (unsigned char)c;
        }
    }
    return dst;
}

int memcmp(const void *left, const void *right, size_t n) {
    const unsigned char *a = left, *b = right;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t x = *(const u64u *)(a + i), y = *(const u64u *)(b + i);
        if (x != y) {
            /* Big-endian order makes the first differing byte decide. */
            x = __builtin_bswap64(x);
            y = __builtin_bswap64(y);
            return x < y ? -1 : 1;
        }
    }
    for (; i < n; i++) {
        if (a[i] != b[i]) {
            return a[i] < b[i] ? -1 : 1;
        }
    }
    return 0;
}

int bcmp(const void *left, const void *right, size_t n) {
    return memcmp(left, right, n);
}
