/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ksm-census-refs.c: the first copies that duplicates are confirmed against.
 *
 * A page whose hash is already in the table is a duplicate only if its bytes
 * equal those of the first page seen with that hash.  That first copy is
 * usually not in the chunk at hand, so it is read again from its process.
 * Three things keep that cheap:
 *   - per chunk, the first copies needed are read together: sorted, each
 *     once, adjacent ones in one pread (pages duplicated in the same order,
 *     as in two guests with the same layout, cost one read per run);
 *   - a cache of first copies whose content already has three or more
 *     copies: those are the ones asked for again and again (common pages
 *     in every chunk, or the 3rd..Nth guest of the same image);
 *     a content with two copies is never asked for again, so it does not
 *     displace them;
 *   - everything through /proc/PID/mem.  Not process_vm_readv, though it
 *     copies a scattered page in about half the time: it pins the pages
 *     (FOLL_PIN), and a read-only pin of an anonymous page that is not
 *     exclusive makes the kernel unshare it first (gup_must_unshare): it
 *     breaks KSM pages and copy-on-write sharing apart, so the census would
 *     undo the very merging it measures (seen here: 64 merged pages, none
 *     after a census).  /proc/PID/mem uses FOLL_GET, which shares.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ksm-census-private.h"

/* 2048 pages: 8 MiB, a bounded cost next to the table's for any real census. */
#define REF_CACHE_SLOTS 2048

void census_refs_alloc(Census *c)
{
    c->cache_keys = g_new0(RefCacheKey, REF_CACHE_SLOTS);
    c->cache_pages = aligned_alloc(c->page, REF_CACHE_SLOTS * c->page);
    if (!c->cache_pages) {
        g_error("ksm census: out of memory for the first-copy cache");
    }
}

void census_refs_free(Census *c)
{
    g_free(c->cache_keys);
    free(c->cache_pages);
    c->cache_keys = NULL;
    c->cache_pages = NULL;
}

static gboolean ref_in_chunk(const CensusEntry *e, guint target, guint64 addr, gsize len)
{
    return e->ref_target == target && e->vaddr >= addr && e->vaddr < addr + len;
}

/* Direct-mapped: the slot of a first copy is a function of where it is. */
static guint cache_slot(guint32 target, guint64 vaddr)
{
    guint64 key = (vaddr >> 12) ^ ((guint64)target << 52);
    key *= G_GUINT64_CONSTANT(0x9E3779B97F4A7C15);
    return (guint)(key >> 53) % REF_CACHE_SLOTS;
}

static const guint8 *cache_lookup(Census *c, const CensusEntry *e)
{
    guint s = cache_slot(e->ref_target, e->vaddr);
    const RefCacheKey *k = &c->cache_keys[s];

    if (k->used && k->target == e->ref_target && k->vaddr == e->vaddr) {
        return c->cache_pages + (gsize)s * c->page;
    }
    return NULL;
}

void census_refs_remember(Census *c, const CensusEntry *e, const guint8 *bytes)
{
    guint s = cache_slot(e->ref_target, e->vaddr);
    RefCacheKey *k = &c->cache_keys[s];

    if (k->used && k->target == e->ref_target && k->vaddr == e->vaddr) {
        return;
    }
    *k = (RefCacheKey){ e->vaddr, e->ref_target, 1 };
    memcpy(c->cache_pages + (gsize)s * c->page, bytes, c->page);
}

void census_refs_plan(Census *c, const CensusEntry *e, guint target, guint64 addr, gsize n)
{
    if (!ref_in_chunk(e, target, addr, n * c->page) && !cache_lookup(c, e)) {
        c->fetch[c->n_fetch++] = (RefFetch){ e->ref_target, e->vaddr, -1 };
    }
}

static int compare_fetch(const void *a, const void *b)
{
    const RefFetch *x = a, *y = b;
    if (x->target != y->target) {
        return x->target < y->target ? -1 : 1;
    }
    return x->vaddr < y->vaddr ? -1 : x->vaddr > y->vaddr;
}

void census_refs_fetch(Census *c)
{
    guint n = 0;

    qsort(c->fetch, c->n_fetch, sizeof(RefFetch), compare_fetch);
    for (guint i = 0; i < c->n_fetch; i++) {
        if (n == 0 || compare_fetch(&c->fetch[i], &c->fetch[n - 1]) != 0) {
            c->fetch[n++] = c->fetch[i];
        }
    }
    c->n_fetch = n;
    for (guint i = 0; i < n;) {
        guint j = i + 1;
        while (j < n && c->fetch[j].target == c->fetch[i].target &&
               c->fetch[j].vaddr == c->fetch[j - 1].vaddr + c->page) {
            j++;
        }
        int fd = c->targets[c->fetch[i].target].mem_fd;
        gsize want = (gsize)(j - i) * c->page;
        gsize got = fd < 0 ? 0 : ksm_pread_full(fd, c->fetch_buf + (gsize)i * c->page, want,
                                              c->fetch[i].vaddr);
        /* Pages after a hole stay -1: census_ref_bytes says so. */
        for (guint k = i; k < i + got / c->page; k++) {
            c->fetch[k].offset = (gssize)k * (gssize)c->page;
        }
        i = j;
    }
}

const guint8 *census_ref_bytes(Census *c, const CensusEntry *e, guint target, guint64 addr,
                               gsize n)
{
    if (ref_in_chunk(e, target, addr, n * c->page)) {
        return c->buf + (e->vaddr - addr);
    }
    const guint8 *cached = cache_lookup(c, e);
    if (cached) {
        return cached;
    }
    RefFetch key = { e->ref_target, e->vaddr, -1 };
    const RefFetch *f = bsearch(&key, c->fetch, c->n_fetch, sizeof(RefFetch), compare_fetch);
    if (f) {
        return f->offset >= 0 ? c->fetch_buf + f->offset : NULL;
    }
    /* Not planned: a second entry with the same hash (a collision), rare. */
    int fd = c->targets[e->ref_target].mem_fd;
    if (fd >= 0 && ksm_pread_full(fd, c->tmp_page, c->page, e->vaddr) == c->page) {
        return c->tmp_page;
    }
    return NULL;
}
