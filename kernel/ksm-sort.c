/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ksm-sort.c: sorting page frame numbers.
 *
 * Both exact counters (ksm-pagemap.c) and the census (ksm-census-frames.c)
 * sort one frame number per page of guest memory before reading kpageflags
 * in frame order; a radix sort does that in a few linear passes where
 * qsort's comparisons dominated the profile.
 */
#include <string.h>

#include "ksm-private.h"

/* LSD radix sort, 11 bits a pass, as many passes as the largest value needs. */
void ksm_sort_u64(guint64 *v, gsize n, guint64 *tmp)
{
    enum { BITS = 11, BUCKETS = 1 << BITS };
    gsize count[BUCKETS];
    guint64 max = 0;

    for (gsize i = 0; i < n; i++) {
        max = MAX(max, v[i]);
    }
    guint64 *from = v, *to = tmp;
    for (guint shift = 0; shift < 64 && (max >> shift) != 0; shift += BITS) {
        memset(count, 0, sizeof(count));
        for (gsize i = 0; i < n; i++) {
            count[(from[i] >> shift) & (BUCKETS - 1)]++;
        }
        gsize sum = 0;
        for (gsize b = 0; b < BUCKETS; b++) {
            gsize k = count[b];
            count[b] = sum;
            sum += k;
        }
        for (gsize i = 0; i < n; i++) {
            to[count[(from[i] >> shift) & (BUCKETS - 1)]++] = from[i];
        }
        guint64 *swap = from;
        from = to;
        to = swap;
    }
    if (from != v) {
        memcpy(v, from, n * sizeof(guint64));
    }
}
