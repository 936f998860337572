/*
 * Checks src/musl_mem.c against byte-at-a-time definitions: every length up
 * to 1100 bytes (across the short, loop and `rep movsb` paths), every
 * alignment of source and destination within 16 bytes, and for memmove
 * every overlap in both directions. Built by the packaging test with the
 * functions renamed (-Dmemcpy=pd_memcpy and so on), so that it runs beside
 * the host's own C library. Prints "ok" and exits 0, or names the first
 * mismatch and exits 1.
 */
#include <stdio.h>
#include <stdlib.h>

#include "../../src/musl_mem.c"

#define MAX 1100
static unsigned char a[MAX + 64], b[MAX + 64], want[MAX + 64], got[MAX + 64];

static void fill(unsigned char *p, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        p[i] = (unsigned char)(seed >> 16);
    }
}

static int same(const unsigned char *x, const unsigned char *y, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (x[i] != y[i]) return 0;
    }
    return 1;
}

static int sign(int v) { return (v > 0) - (v < 0); }

#define FAIL(...) do { printf(__VA_ARGS__); printf("\n"); return 1; } while (0)

int main(void) {
    size_t total = sizeof a;
    for (size_t n = 0; n <= MAX; n++) {
        for (size_t da = 0; da < 16; da++) {
            for (size_t sa = 0; sa < 16; sa++) {
                /* memcpy: only [da, da+n) of the destination changes. */
                fill(a, total, (unsigned)(n * 31 + sa));
                fill(got, total, 7);
                for (size_t i = 0; i < total; i++) want[i] = got[i];
                for (size_t i = 0; i < n; i++) want[da + i] = a[sa + i];
                if (memcpy(got + da, a + sa, n) != got + da) FAIL("memcpy: wrong return");
                if (!same(got, want, total)) FAIL("memcpy: n=%zu dst+%zu src+%zu", n, da, sa);

                /* memcmp and bcmp: equal, then one byte changed anywhere. */
                for (size_t i = 0; i < n; i++) b[da + i] = a[sa + i];
                if (memcmp(a + sa, b + da, n) != 0 || bcmp(a + sa, b + da, n) != 0)
                    FAIL("memcmp: equal n=%zu", n);
                if (n && da == sa) {
                    for (size_t at = 0; at < n; at += (n > 64 ? 7 : 1)) {
                        unsigned char old = b[da + at];
                        b[da + at] = (unsigned char)(old + 1 + (at & 1) * 253);
                        int want_sign = a[sa + at] < b[da + at] ? -1 : 1;
                        if (sign(memcmp(a + sa, b + da, n)) != want_sign)
                            FAIL("memcmp: n=%zu differs at %zu", n, at);
                        if (bcmp(a + sa, b + da, n) == 0) FAIL("bcmp: n=%zu differs at %zu", n, at);
                        b[da + at] = old;
                    }
                }
            }
            /* memset. */
            fill(got, total, (unsigned)n);
            for (size_t i = 0; i < total; i++) want[i] = got[i];
            for (size_t i = 0; i < n; i++) want[da + i] = 0xA5;
            if (memset(got + da, 0xA5, n) != got + da) FAIL("memset: wrong return");
            if (!same(got, want, total)) FAIL("memset: n=%zu dst+%zu", n, da);
        }
        /* memmove within one buffer: every shift either way, up to 40. */
        for (size_t shift = 0; shift <= 40; shift++) {
            for (int back = 0; back < 2; back++) {
                size_t src = back ? shift : 8, dst = back ? 8 : shift;
                if (n + 48 > total) continue;
                fill(got, total, (unsigned)(n + shift));
                for (size_t i = 0; i < total; i++) want[i] = got[i];
                unsigned char tmp[MAX];
                for (size_t i = 0; i < n; i++) tmp[i] = want[src + i];
                for (size_t i = 0; i < n; i++) want[dst + i] = tmp[i];
                if (memmove(got + dst, got + src, n) != got + dst) FAIL("memmove: wrong return");
                if (!same(got, want, total)) FAIL("memmove: n=%zu src=%zu dst=%zu", n, src, dst);
            }
        }
    }
    printf("ok\n");
    return 0;
}
