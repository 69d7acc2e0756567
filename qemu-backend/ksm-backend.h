/*
 * samepage: what the KSM files grafted into QEMU share.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef SAMEPAGE_KSM_BACKEND_H
#define SAMEPAGE_KSM_BACKEND_H

#include "ksm-compat.h"

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

#endif
