/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ksm-census-private.h: the parts of the census shared by its files.
 *
 *   ksm-census.c         the driver: targets, pagemap, reads, classification
 *   ksm-census-areas.c   which mappings are read (maps/smaps parsing)
 *   ksm-census-table.c   the content table (open addressing, by hand: why there)
 *   ksm-census-refs.c    first copies for the byte-for-byte confirmation
 *   ksm-census-frames.c  frame numbers: the zero page, KSM frames (kpageflags)
 *   ksm-census-results.c the totals, the achievable and the merged figures
 */
#ifndef KSM_CENSUS_PRIVATE_H
#define KSM_CENSUS_PRIVATE_H

#include <ksm/ksm.h>
#include <ksm/ksm-io.h>
#include <ksm/ksm-maps.h>
#include <ksm/ksm-pagemap.h>
#include <ksm/ksm-census.h>

/* ---- content table ------------------------------------------------------ */

/*
 * One distinct non-zero content: where its first copy is (so a later copy
 * can be compared byte for byte), how many copies, and the last process it
 * was seen in (within or across).  40 bytes.
 */
typedef struct {
    guint64 hash;
    guint64 vaddr;         /* first copy: address in target ref_target */
    guint64 pfn;           /* first copy's frame (0 unknown) */
    guint32 ref_target;
    gint32 last_pid;
    guint32 count;         /* 0: empty slot */
    guint32 pfn_listed;    /* first copy's frame already in the duplicate frame list */
} CensusEntry;

typedef struct {
    CensusEntry *slots;
    guint64 capacity;
    guint64 used;
} CensusTable;

void census_table_init(CensusTable *t, guint64 expected);
void census_table_clear(CensusTable *t);
/* Slot index of the first entry with this hash at or after probe position
 * *pos (start with *pos = census_table_home(t, hash)), or NULL at an empty
 * slot; *pos is left after the entry so the next call continues the probe. */
guint64 census_table_home(const CensusTable *t, guint64 hash);
CensusEntry *census_table_next(CensusTable *t, guint64 hash, guint64 *pos);
/* Insert a new entry for hash (there may be others with the same hash).
 * Grows the table first when it is too full: pointers from before are stale. */
CensusEntry *census_table_insert(CensusTable *t, guint64 hash);

/* ---- frames ----------------------------------------------------------- */

typedef struct {
    gboolean visible;        /* this process sees frame numbers in pagemap */
    guint64 zero_pfn;        /* the shared zero page, 0 unknown */
    guint64 huge_zero_pfn;   /* first frame of the huge zero page, 0 unknown */
    guint64 huge_zero_frames;
} CensusFrames;

/* Learn the zero page's frame from this process's own pagemap. */
void census_frames_probe(const KsmContext *ctx, CensusFrames *frames);
gboolean census_frames_is_zero(const CensusFrames *frames, guint64 pfn);

/*
 * dup_pfns: the frames of every page read whose content occurs more than
 * once.  Sorts it, and for each frame that several of those pages map looks
 * up /proc/kpageflags: KSM frames add (n - 1) to *ksm_saved and n to
 * *ksm_mapped, others add (n - 1) to *other_saved.  FALSE (and nothing set)
 * when kpageflags cannot be read.
 */
gboolean census_frames_account(const KsmContext *ctx, GArray *dup_pfns, guint64 *ksm_saved,
                               guint64 *ksm_mapped, guint64 *other_saved);

/* ---- the census in progress --------------------------------------------- */

#define ENTRY_PFN_LISTED 1u   /* CensusEntry.pfn_listed bits */
#define ENTRY_STALE      2u   /* its first copy can no longer be read: skipped */

typedef struct {
    pid_t pid;
    int mem_fd;
    int pm_fd;
    GArray *areas;       /* KsmCensusArea */
} Target;

/* A first copy to fetch for pass 2. */
typedef struct {
    guint32 target;
    guint64 vaddr;
    gssize offset;       /* in fetch_buf, -1 if it could not be read */
} RefFetch;

/* A copy of a first copy kept in the ref cache (ksm-census-refs.c). */
typedef struct {
    guint64 vaddr;
    guint32 target;
    guint32 used;
} RefCacheKey;

typedef struct {
    const KsmContext *ctx;
    const KsmCensusOptions *opts;
    KsmCensus *out;
    gsize page;
    gsize chunk_pages;
    Target *targets;
    CensusTable table;
    CensusFrames frames;
    GArray *dup_pfns;          /* guint64: frames of pages whose content repeats */

    guint8 *buf;               /* chunk_pages pages */
    guint8 *fetch_buf;         /* chunk_pages pages: first copies for pass 2 */
    guint8 *tmp_page;
    guint8 *zero_page;
    guint64 *hashes;           /* per page of the chunk */
    guint8 *is_zero;
    RefFetch *fetch;
    guint n_fetch;
    guint64 *pagemap;          /* PAGEMAP_WINDOW entries */
    RefCacheKey *cache_keys;   /* REF_CACHE_SLOTS */
    guint8 *cache_pages;

    guint64 bytes_done, bytes_total, next_progress;
    guint current;             /* index of the target being read */
    gboolean stop;             /* byte_limit reached */
} Census;

/* ---- first copies (ksm-census-refs.c) ------------------------------------ */

void census_refs_alloc(Census *c);
void census_refs_free(Census *c);
/* Pass 1: e's first copy will be needed for the chunk [addr, addr + n pages)
 * of target: note it, unless it is in the chunk or in the cache. */
void census_refs_plan(Census *c, const CensusEntry *e, guint target, guint64 addr, gsize n);
/* Read every noted first copy (sorted, de-duplicated, runs together). */
void census_refs_fetch(Census *c);
/* The bytes of e's first copy, or NULL if they cannot be read any more. */
const guint8 *census_ref_bytes(Census *c, const CensusEntry *e, guint target, guint64 addr,
                               gsize n);
/* e's content proved to have several copies: keep its bytes at hand. */
void census_refs_remember(Census *c, const CensusEntry *e, const guint8 *bytes);

/* ---- results (ksm-census-results.c) -------------------------------------- */

/* ksm_stat of every process, then the totals and the merged figures. */
void census_results(Census *c);

#endif
