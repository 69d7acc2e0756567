/*
 * samepage: what the KSM files grafted into QEMU share.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef SAMEPAGE_KSM_BACKEND_H
#define SAMEPAGE_KSM_BACKEND_H

#include "ksm-compat.h"

#include <ksm/ksm.h>

#define TYPE_MEMORY_BACKEND_KSM "memory-backend-ksm"

/* One memory backend and where its RAM is in this process. */
typedef struct KsmBackendRange {
    HostMemoryBackend *backend;
    char *id;
    void *host;             /* NULL while the backend has no memory yet */
    uint64_t size;
} KsmBackendRange;

/*
 * Every memory backend object (of any type, memory-backend-ksm or not),
 * sorted by id.  Free with ksm_backend_ranges_free().
 */
GArray *ksm_backend_ranges(void);
void ksm_backend_ranges_free(GArray *ranges);

/*
 * The memory backend with this id, with its memory; an error that says
 * what is wrong (no such object, not a memory backend, no memory yet).
 */
bool ksm_backend_range_find(const char *id, KsmBackendRange *range,
                            Error **errp);

/* Take or drop a reference on every backend of ranges (under the BQL). */
void ksm_backend_ranges_ref(GArray *ranges);
void ksm_backend_ranges_unref(GArray *ranges);

/* What QEMU knows of a backend's KSM registration without a kernel read. */
typedef enum KsmRegistration {
    KSM_REGISTRATION_NO,
    KSM_REGISTRATION_YES,
    KSM_REGISTRATION_UNKNOWN,
} KsmRegistration;

KsmRegistration ksm_backend_registration(HostMemoryBackend *backend);

/*
 * The one range that is all the memory of this process QEMU may have
 * registered with KSM, or NULL when there are several, none, or other
 * RAM blocks may be registered (the machine's mem-merge is on).  The
 * caller checks that the process did not ask KSM to merge everything.
 */
const KsmBackendRange *ksm_backend_sole_mergeable(GArray *ranges);

/* Whether a ksm-unmerge job is working on the backend now. */
bool ksm_unmerge_busy(HostMemoryBackend *backend);

/*
 * A thread of samepage's own (ksm-thread.c): started before the work, so
 * that a thread QEMU cannot have is an error, not an abort.  One call at
 * a time; free it only between calls.
 */
typedef struct KsmThread KsmThread;
typedef int KsmThreadFunc(void *arg);

KsmThread *ksm_thread_new(const char *what, Error **errp);
/* Run func(arg) in the thread; the coroutine waits, the main loop runs. */
int coroutine_fn ksm_thread_run_co(KsmThread *t, KsmThreadFunc *func,
                                   void *arg);
void ksm_thread_free(KsmThread *t);

/*
 * The page counts of a walk (ksm-count.c).  Walks run in a thread
 * with their backends referenced; the main loop only starts them and
 * reads the result of the latest one that finished.
 */
typedef struct KsmCountEntry {
    KsmBackendRange range;      /* backend referenced while counted */
    bool counted;
    KsmRangeCount count;
    char *error;                /* why not counted */
    bool smaps_read;
    KsmRangeSmaps smaps;
    bool removed;               /* deleted while the walk ran */
} KsmCountEntry;

typedef struct KsmCount {
    KsmThread *thread;          /* while the walk runs */
    GArray *entries;            /* KsmCountEntry */
    int64_t started_ms, finished_ms;    /* QEMU_CLOCK_REALTIME */
} KsmCount;

/*
 * Start a walk of every backend with memory, unless one is running or the
 * latest started at most max_age_ms ago.  Under the BQL.  False, with
 * errp set, when the walk's thread cannot be started.
 */
bool ksm_count_request(int64_t max_age_ms, Error **errp);
bool ksm_count_running(void);
int64_t ksm_count_walks(void);
const KsmCount *ksm_count_latest(void);
const KsmCountEntry *ksm_count_find(const KsmCount *count,
                                    const KsmBackendRange *range);

#endif
