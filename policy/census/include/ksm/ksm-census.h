/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ksm-census.h: how much memory KSM could merge, counted page by page.
 *
 * The census reads the private anonymous memory of a set of processes
 * (/proc/PID/maps for where it is, /proc/PID/pagemap for which pages are in
 * RAM, /proc/PID/mem for the pages themselves), hashes
 * every page with XXH3 (libxxhash), confirms every candidate duplicate byte
 * for byte against the first page seen with that hash (a hash match is a
 * candidate, never a fact: two different pages with equal hashes are counted
 * as two contents), and says what merging could free, next to what KSM has
 * actually merged in those processes.
 *
 * What is read (documented choice, see ksm-census-areas.c):
 *   - mappings that are private ('p'), writable ('w') and anonymous (no
 *     file: inode 0), which is what KSM can merge: the nameless ones,
 *     [heap], [stack] (and [stack:TID]) and [anon:NAME].  [heap] and [stack]
 *     are included because KSM merges them too once they are registered
 *     (prctl PR_SET_MEMORY_MERGE registers every compatible area).
 *   - not [vvar], [vdso], [vsyscall] or any other kernel-named area, not
 *     shared mappings (KSM never merges them), not file-backed mappings
 *     (KSM can merge the copied-on-write pages of a MAP_PRIVATE file mapping,
 *     but those are libraries' data, small, and reading them would mostly
 *     read file pages it cannot merge).
 *   - with mergeable_only, only areas whose VmFlags (smaps) contain "mg":
 *     what ksmd actually scans now.
 *   - only pages that are in RAM now (/proc/PID/pagemap "present"): pages
 *     never touched use no memory and swapped pages are not scanned by ksmd,
 *     so neither can be freed by merging.  Reading them would also fault
 *     them in, changing the process the census is meant to observe.
 *
 * Classification of the pages read (each present page counts once):
 *   zero_pages     every byte 0.  zero_mapped_pages of them are already
 *                  backed by the kernel's shared zero page (KSM with
 *                  use_zero_pages, or never written): -1 when unknown (frame
 *                  numbers need CAP_SYS_ADMIN).  Zero pages are not part of
 *                  the figures below.
 *   distinct       distinct non-zero contents.
 *   unique_pages   pages whose content occurs once.
 *   dup_within     a page whose content occurred earlier in the same process.
 *   dup_across     a page whose content occurred before, but only in other
 *                  processes.  For a content with k copies spread over n
 *                  processes: (k - n) within, (n - 1) across; so
 *                  dup_within + dup_across + distinct = non-zero pages.
 *
 * The achievable saving ("freeable"), in pages, is what KSM would save if
 * it merged everything it could right now:
 *   non-zero content with k copies:  k - ceil(k / max_page_sharing)
 *                                    (k - 1 when max_page_sharing is 0)
 *   zero pages, per zero_mode:       TO_ZERO_PAGE (use_zero_pages=1): all of
 *                                    them; AS_CONTENT (use_zero_pages=0): as
 *                                    one content; EXCLUDE: none.
 * It counts from "every page has its own frame": sharing that already
 * exists (KSM's, or copy-on-write after fork, or the zero page) is part of
 * it.
 *
 * What KSM has merged in these processes, in pages saved (merged_pages):
 *   exact (merged_exact TRUE; needs frame numbers from pagemap and
 *   /proc/kpageflags, i.e. root): for every KSM frame (KPF_KSM) that n > 1
 *   of the pages read map, n - 1; plus, for zero pages already on the shared
 *   zero page, min(zero_mapped_pages, sum of ksm_zero_pages) when zero_mode
 *   is TO_ZERO_PAGE.  A KSM frame that one page read maps and that is shared
 *   with a process outside the census saves nothing inside it.
 *   otherwise (merged_exact FALSE, whole processes only): the sum of
 *   ksm_stat's ksm_merging_pages + ksm_zero_pages.  That counts every
 *   mapping of a KSM page, including the first one, which saves nothing: it
 *   is an upper bound (about 2x for two identical processes), said so.
 *   -1 when neither is possible (address ranges without frame numbers).
 * shared_other_pages: pages saved by sharing that is not KSM's (copy on
 *   write after fork, zero-page mappings beyond ksm_zero_pages): part of the
 *   achievable figure, never part of merged.  -1 when unknown.
 *
 * ratio = merged_pages / freeable_pages: the fraction of the achievable
 * saving that KSM has realised.  It can exceed 1 a little because the
 * process changes while it is read (and will, with the inexact upper bound).
 * -1 when either figure is unknown or freeable is 0.
 *
 * Cost: one pass of large preads (1 MiB) of /proc/PID/mem, one XXH3 per
 * non-zero page, one table slot (40 bytes, at most ~57 bytes per scanned
 * page with the load factor) per distinct content, and a re-read of the
 * first copy for every duplicate (batched and coalesced per chunk; first
 * copies of contents with 3+ copies are cached, 8 MiB).
 *
 * Side effects on the processes read: none that changes their memory.
 * Only pages present in RAM are read, and through /proc/PID/mem, which
 * takes page references without pinning: process_vm_readv would pin, and
 * a read-only pin makes the kernel unshare KSM and copy-on-write pages
 * (ksm-census-refs.c), undoing the merging being measured.
 */
#ifndef KSM_CENSUS_H
#define KSM_CENSUS_H

#include <glib.h>
#include <sys/types.h>
#include <ksm/ksm-context.h>

G_BEGIN_DECLS

/*
 * One process, or one address range [start, end) of it (start = end = 0: all).
 * Targets must not overlap: a page named twice is read twice, and counted as
 * its own duplicate.
 */
typedef struct {
    pid_t pid;
    guint64 start;
    guint64 end;
} KsmCensusTarget;

/* How zero pages enter the achievable figure (see above). */
typedef enum {
    KSM_CENSUS_ZERO_TO_ZERO_PAGE,   /* use_zero_pages=1: every zero page freeable */
    KSM_CENSUS_ZERO_AS_CONTENT,     /* use_zero_pages=0: zero is one more content */
    KSM_CENSUS_ZERO_EXCLUDE,        /* counted and reported, never freeable */
} KsmCensusZeroMode;

typedef struct {
    guint64 bytes_done;     /* present bytes read so far */
    guint64 bytes_total;    /* estimate of the bytes to read (the areas' size, at most the
                               processes' RssAnon); never below bytes_done */
    guint target_index;     /* which target is being read */
    guint n_targets;
    pid_t pid;
    gboolean finished;      /* the last call */
} KsmCensusProgress;

typedef void (*KsmCensusProgressFunc)(const KsmCensusProgress *progress, gpointer user_data);
/*
 * Visit mode (KsmCensusOptions.visit): every run of present pages read is
 * handed to the visitor instead of being classified, n_pages pages of
 * page_size bytes at pages, the first at address addr of target.  The
 * buffer is reused after the call.  Other readers of guest memory (the
 * fleet fingerprint) use it so that the census stays the one reader of
 * /proc/PID/mem.  In this mode the result has only the reading figures
 * (pages, absent, swapped, unreadable, gone, seconds) and ksm_stat: no
 * contents, nothing achievable or merged (all 0).
 */
typedef void (*KsmCensusVisitFunc)(guint target, guint64 addr, const guint8 *pages,
                                   gsize n_pages, gpointer user_data);
/* A replacement page hash, for tests that force collisions. */
typedef guint64 (*KsmCensusHashFunc)(const void *page, gsize len, gpointer user_data);

typedef struct {
    const KsmCensusTarget *targets;
    guint n_targets;
    KsmCensusZeroMode zero_mode;
    guint64 max_page_sharing;     /* 0: unlimited; samepage passes the host's knob */
    gboolean mergeable_only;      /* only areas with VmFlags "mg" */
    guint64 byte_limit;           /* stop after reading this many bytes; 0: no limit */
    gsize chunk_bytes;            /* bytes per pread; 0: the default (1 MiB) */
    KsmCensusProgressFunc progress;   /* may be NULL; called about every 64 MiB */
    gpointer progress_data;
    /* Tests only: NULL means XXH3_64bits.  A constant makes every page collide. */
    KsmCensusHashFunc hash_func;
    gpointer hash_data;
    /* Non-NULL: visit mode (see KsmCensusVisitFunc). */
    KsmCensusVisitFunc visit;
    gpointer visit_data;
} KsmCensusOptions;

/* Zero everything; zero_mode TO_ZERO_PAGE, max_page_sharing 0, no limit. */
void ksm_census_options_init(KsmCensusOptions *opts);

typedef struct {
    pid_t pid;
    guint64 start, end;             /* as given */
    gboolean gone;                  /* exited before or while it was read */
    guint areas;                    /* mappings read */
    guint64 area_bytes;             /* their size */
    guint64 pages;                  /* present pages read */
    guint64 absent_pages;           /* never touched: no memory, not read */
    guint64 swapped_pages;          /* swapped out: not read */
    guint64 unreadable_pages;       /* present, but the read failed (unmapped meanwhile) */
    guint64 zero_pages;
    gint64 zero_mapped_pages;       /* -1 unknown */
    guint64 dup_within;
    guint64 dup_across;
    /* ksm_stat of the process; -1 when the kernel has no such figure */
    gint64 ksm_merging_pages;
    gint64 ksm_zero_pages;
    gint64 ksm_process_profit;      /* bytes, may be negative: G_MININT64 when unknown */
} KsmCensusProcess;

typedef struct {
    gsize page_size;
    guint64 pages;                  /* present pages read, all targets */
    guint64 zero_pages;
    gint64 zero_mapped_pages;       /* -1 unknown */
    guint64 distinct;               /* distinct non-zero contents */
    guint64 unique_pages;
    guint64 dup_within;
    guint64 dup_across;
    guint64 unconfirmed_pages;      /* duplicates whose first copy could no longer be
                                       read: counted as new contents */
    guint64 absent_pages, swapped_pages, unreadable_pages;

    guint64 freeable_pages;         /* achievable saving (see above) */
    guint64 freeable_zero_pages;    /* of which from zero pages */
    gint64 merged_pages;            /* KSM's saving; -1 unknown */
    gboolean merged_exact;
    gint64 ksm_frame_pages;         /* pages read that share a KSM frame with another
                                       page read; -1 unknown */
    gint64 shared_other_pages;      /* -1 unknown */
    double ratio;                   /* merged / freeable; -1 unknown */

    gboolean frames_visible;        /* pagemap showed frame numbers */
    gboolean truncated;             /* stopped at byte_limit */
    KsmCensusZeroMode zero_mode;
    guint64 max_page_sharing;
    double seconds;                 /* wall time of the reading and hashing */
    guint n_processes;
    KsmCensusProcess *processes;    /* one per target, in order */
} KsmCensus;

/*
 * Run the census.  Fails (NULL) when a process cannot be read for lack of
 * permission (KSM_ERROR_PERMISSION: root is needed for other users'
 * processes) or on a bad argument; a process that exits is marked gone and
 * the census goes on.
 */
KsmCensus *ksm_census_run(const KsmContext *ctx, const KsmCensusOptions *opts, GError **error);
void ksm_census_free(KsmCensus *census);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(KsmCensus, ksm_census_free)

/* Bytes for pages (page_size multiples), for callers printing the figures. */
static inline guint64 ksm_census_bytes(const KsmCensus *census, guint64 pages)
{
    return pages * census->page_size;
}

/* ---- exposed for tests ------------------------------------------------- */

/* One mapping the census reads. */
typedef struct {
    guint64 start, end;
    gboolean mergeable;    /* VmFlags "mg" (only known from smaps text) */
    char name[24];         /* "", "[heap]", "[stack]", "[anon:…" (truncated) */
} KsmCensusArea;

/*
 * The areas of maps or smaps text that the census reads (rules above),
 * clipped to [start, end) unless both are 0.  With mergeable_only the text
 * must be smaps.  Returns a GArray of KsmCensusArea.
 */
GArray *ksm_census_parse_areas(const char *text, gboolean mergeable_only,
                               guint64 start, guint64 end, GError **error);

/*
 * The confirm step: are two pages the same, byte for byte?  The census calls
 * this for every hash match before counting a duplicate.
 */
gboolean ksm_census_pages_equal(const void *a, const void *b, gsize page_size);

G_END_DECLS

#endif
