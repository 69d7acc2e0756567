/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ksm-sketch.c: the bottom-k (theta) sketch of ksm/ksm-fingerprint.h.
 *
 * Building: hashes at or above the current threshold are dropped with one
 * comparison (after the first k contents, almost all of them); the others
 * wait in a buffer of k, which is sorted and merged into the kept hashes
 * when full.  So the per-page cost is the hash, not the sketch.
 */
#include <stdlib.h>
#include <string.h>

#include <ksm/ksm-fingerprint.h>

#define TWO64 18446744073709551616.0

KsmSketch *ksm_sketch_new(guint k)
{
    k = CLAMP(k, 1, KSM_SKETCH_MAX_K);
    KsmSketch *s = g_new0(KsmSketch, 1);
    s->k = k;
    s->hashes = g_new(guint64, k);
    s->pending = g_new(guint64, k);
    return s;
}

void ksm_sketch_free(KsmSketch *s)
{
    if (s) {
        g_free(s->hashes);
        g_free(s->pending);
        g_free(s);
    }
}

static int compare_u64(const void *a, const void *b)
{
    guint64 x = *(const guint64 *)a, y = *(const guint64 *)b;
    return x < y ? -1 : x > y;
}

/* Merge two ascending lists into out (at most limit, distinct); returns the count. */
static gsize merge_sorted(const guint64 *a, gsize na, const guint64 *b, gsize nb, guint64 *out,
                          gsize limit)
{
    gsize i = 0, j = 0;
    gsize n = 0;
    while (n < limit && (i < na || j < nb)) {
        guint64 v;
        if (j >= nb || (i < na && a[i] < b[j])) {
            v = a[i++];
        } else if (i >= na || b[j] < a[i]) {
            v = b[j++];
        } else {
            v = a[i++];
            j++;
        }
        if (n == 0 || out[n - 1] != v) {
            out[n++] = v;
        }
    }
    return n;
}

void ksm_sketch_flush(KsmSketch *s)
{
    if (s->n_pending == 0) {
        return;
    }
    qsort(s->pending, s->n_pending, sizeof(guint64), compare_u64);
    g_autofree guint64 *merged = g_new(guint64, s->k);
    s->n = (guint)merge_sorted(s->hashes, s->n, s->pending, s->n_pending, merged, s->k);
    memcpy(s->hashes, merged, s->n * sizeof(guint64));
    s->n_pending = 0;
}

void ksm_sketch_add(KsmSketch *s, guint64 hash)
{
    s->pages++;
    if (s->n == s->k && hash >= s->hashes[s->k - 1]) {
        return;   /* above the threshold: the common case once the sketch is full */
    }
    s->pending[s->n_pending++] = hash;
    if (s->n_pending == s->k) {
        ksm_sketch_flush(s);
    }
}

gboolean ksm_sketch_is_exact(const KsmSketch *s)
{
    return s->n < s->k;
}

guint64 ksm_sketch_theta(const KsmSketch *s)
{
    return ksm_sketch_is_exact(s) ? G_MAXUINT64 : s->hashes[s->k - 1];
}

/* Hashes below theta; all of them when exact (theta = G_MAXUINT64 stands for 2^64). */
static gsize count_below(const guint64 *h, gsize n, guint64 theta)
{
    if (theta == G_MAXUINT64) {
        return n;
    }
    gsize lo = 0, hi = n;
    while (lo < hi) {
        gsize mid = lo + (hi - lo) / 2;
        if (h[mid] < theta) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

static double scale(guint64 theta)
{
    return theta == G_MAXUINT64 ? 1.0 : (double)theta / TWO64;
}

/*
 * No estimate exceeds the pages it counts: a sketch from a hostile file can
 * hold tiny hashes, whose estimate would be ~2^64 (and overflow whoever
 * rounds it to an integer).
 */
double ksm_sketch_distinct(const KsmSketch *s)
{
    g_return_val_if_fail(s->n_pending == 0, 0);
    guint64 theta = ksm_sketch_theta(s);
    return MIN((double)count_below(s->hashes, s->n, theta) / scale(theta), (double)s->pages);
}

KsmSketch *ksm_sketch_union(const KsmSketch *a, const KsmSketch *b, guint k)
{
    g_return_val_if_fail(a->n_pending == 0 && b->n_pending == 0, NULL);
    if (k == 0) {
        k = MIN(a->k, b->k);
    }
    KsmSketch *u = ksm_sketch_new(k);
    guint64 theta = MIN(ksm_sketch_theta(a), ksm_sketch_theta(b));
    gsize na = count_below(a->hashes, a->n, theta), nb = count_below(b->hashes, b->n, theta);
    /* Below the smaller threshold the union is complete; the k smallest of
     * it are the union's sketch.  If a threshold cut it, the result must
     * not look exact: it has k hashes when it has fewer than k only if
     * neither input was cut. */
    u->n = (guint)merge_sorted(a->hashes, na, b->hashes, nb, u->hashes, k);
    if (theta != G_MAXUINT64 && u->n < k) {
        /* Fewer than k below theta: keep them, with theta as the threshold
         * (stored as the last hash, which is then not counted). */
        u->hashes[u->n++] = theta;
        if (u->n < k) {
            /* a sketch of capacity n is full, and its threshold theta */
            u->k = u->n;
        }
    }
    u->pages = a->pages + b->pages;
    u->zero_pages = a->zero_pages + b->zero_pages;
    return u;
}

double ksm_sketch_intersection(const KsmSketch *a, const KsmSketch *b, guint64 *samples)
{
    g_return_val_if_fail(a->n_pending == 0 && b->n_pending == 0, 0);
    guint64 theta = MIN(ksm_sketch_theta(a), ksm_sketch_theta(b));
    gsize na = count_below(a->hashes, a->n, theta), nb = count_below(b->hashes, b->n, theta);
    gsize i = 0, j = 0;
    guint64 common = 0;
    while (i < na && j < nb) {
        if (a->hashes[i] < b->hashes[j]) {
            i++;
        } else if (b->hashes[j] < a->hashes[i]) {
            j++;
        } else {
            common++;
            i++;
            j++;
        }
    }
    if (samples) {
        *samples = common;
    }
    return MIN((double)common / scale(theta), (double)MIN(a->pages, b->pages));
}

/* ---- host sets ---------------------------------------------------------------- */

KsmHostSet *ksm_host_set_new(KsmSketch *const *guests, guint n_guests)
{
    KsmHostSet *h = g_new0(KsmHostSet, 1);
    gsize total = 0;

    h->theta = G_MAXUINT64;
    for (guint i = 0; i < n_guests; i++) {
        ksm_sketch_flush(guests[i]);
        h->pages += guests[i]->pages;
        h->theta = MIN(h->theta, ksm_sketch_theta(guests[i]));
    }
    for (guint i = 0; i < n_guests; i++) {
        total += count_below(guests[i]->hashes, guests[i]->n, h->theta);
    }
    /* The guests' lists are sorted: merge them one into the other (no sort). */
    h->hashes = g_new(guint64, MAX(total, 1));
    g_autofree guint64 *tmp = g_new(guint64, MAX(total, 1));
    for (guint i = 0; i < n_guests; i++) {
        gsize c = count_below(guests[i]->hashes, guests[i]->n, h->theta);
        gsize m = merge_sorted(h->hashes, h->n, guests[i]->hashes, c, tmp, G_MAXUINT);
        guint64 *t = h->hashes;
        h->hashes = tmp;
        tmp = t;
        h->n = m;
    }
    /* About one hash per directory slot, over [0, 2^range_bits), the
     * smallest power of two range that holds theta: a lookup reads one or
     * two hashes. */
    guint range_bits = h->theta == G_MAXUINT64 ? 64 : 64 - (guint)__builtin_clzll(h->theta | 1);
    h->dir_bits = 1;
    while (h->dir_bits < 24 && h->dir_bits < range_bits && ((gsize)1 << h->dir_bits) < h->n) {
        h->dir_bits++;
    }
    h->dir_shift = range_bits - h->dir_bits;
    gsize slots = (gsize)1 << h->dir_bits;
    h->dir = g_new(guint32, slots + 1);
    gsize pos = 0;
    for (gsize s = 0; s < slots; s++) {
        while (pos < h->n && (h->hashes[pos] >> h->dir_shift) < s) {
            pos++;
        }
        h->dir[s] = (guint32)pos;
    }
    h->dir[slots] = (guint32)h->n;
    return h;
}

void ksm_host_set_free(KsmHostSet *h)
{
    if (h) {
        g_free(h->hashes);
        g_free(h->dir);
        g_free(h);
    }
}

double ksm_host_set_distinct(const KsmHostSet *h)
{
    return MIN((double)h->n / scale(h->theta), (double)h->pages);
}

double ksm_host_set_intersection(const KsmHostSet *h, const KsmSketch *g, guint64 *samples)
{
    g_return_val_if_fail(g->n_pending == 0, 0);
    guint64 theta = MIN(h->theta, ksm_sketch_theta(g));
    gsize ng = count_below(g->hashes, g->n, theta);
    guint shift = h->dir_shift;
    guint64 common = 0;

    for (gsize i = 0; i < ng; i++) {
        guint64 v = g->hashes[i];
        gsize s = (gsize)(v >> shift);
        for (guint32 p = h->dir[s], e = h->dir[s + 1]; p < e; p++) {
            if (h->hashes[p] >= v) {
                common += h->hashes[p] == v;
                break;
            }
        }
    }
    if (samples) {
        *samples = common;
    }
    return MIN((double)common / scale(theta), (double)MIN(h->pages, g->pages));
}
