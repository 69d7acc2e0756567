/*
 * samepage: finding QEMU's memory backends and their RAM.
 *
 * Backends are children of /objects: those created with -object or
 * object-add, and the machine's own "pc.ram" that -m and libvirt's
 * memory-backend=pc.ram give.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "ksm-backend.h"
#include "qom/object.h"
#include "hw/boards.h"

static bool range_from_backend(HostMemoryBackend *backend,
                               KsmBackendRange *range)
{
    Object *obj = OBJECT(backend);

    range->backend = backend;
    range->id = g_strdup(object_get_canonical_path_component(obj));
    range->host = NULL;
    range->size = backend->size;
    if (host_memory_backend_mr_inited(backend) &&
        memory_region_get_ram_ptr(&backend->mr)) {
        range->host = memory_region_get_ram_ptr(&backend->mr);
        range->size = memory_region_size(&backend->mr);
    }
    return range->host != NULL;
}

static int collect_backend(Object *obj, void *opaque)
{
    GArray *ranges = opaque;
    KsmBackendRange range;

    if (object_dynamic_cast(obj, TYPE_MEMORY_BACKEND)) {
        range_from_backend(MEMORY_BACKEND(obj), &range);
        g_array_append_val(ranges, range);
    }
    return 0;
}

static gint compare_id(gconstpointer a, gconstpointer b)
{
    return strcmp(((const KsmBackendRange *)a)->id,
                  ((const KsmBackendRange *)b)->id);
}

GArray *ksm_backend_ranges(void)
{
    GArray *ranges = g_array_new(false, true, sizeof(KsmBackendRange));

    object_child_foreach(object_get_objects_root(), collect_backend, ranges);
    g_array_sort(ranges, compare_id);
    return ranges;
}

void ksm_backend_ranges_free(GArray *ranges)
{
    for (guint i = 0; i < ranges->len; i++) {
        g_free(g_array_index(ranges, KsmBackendRange, i).id);
    }
    g_array_free(ranges, true);
}

bool ksm_backend_range_find(const char *id, KsmBackendRange *range,
                            Error **errp)
{
    Object *obj = object_resolve_path_component(object_get_objects_root(),
                                                id);

    if (!obj) {
        error_setg(errp, "there is no object with id '%s'", id);
        error_append_hint(errp, "query-ksm-stats lists the memory backends\n");
        return false;
    }
    if (!object_dynamic_cast(obj, TYPE_MEMORY_BACKEND)) {
        error_setg(errp, "'%s' is a %s, not a memory backend", id,
                   object_get_typename(obj));
        return false;
    }
    if (!range_from_backend(MEMORY_BACKEND(obj), range)) {
        error_setg(errp, "memory backend '%s' has no memory yet", id);
        g_free(range->id);
        range->id = NULL;
        return false;
    }
    return true;
}

void ksm_backend_ranges_ref(GArray *ranges)
{
    for (guint i = 0; i < ranges->len; i++) {
        object_ref(OBJECT(g_array_index(ranges, KsmBackendRange, i).backend));
    }
}

void ksm_backend_ranges_unref(GArray *ranges)
{
    for (guint i = 0; i < ranges->len; i++) {
        object_unref(OBJECT(g_array_index(ranges, KsmBackendRange, i).backend));
    }
}

/*
 * memory-backend-ksm applies merge to the kernel in both directions.  A
 * stock backend madvises MERGEABLE when merge is on, and when merge
 * changes; but under the machine's mem-merge=on, ram_block_add() has
 * registered its memory whatever merge says, so merge=off proves nothing
 * there until it is read back.  The kernel never registers shared
 * mappings, nor hugetlbfs ones.  While an unmerge job works on a backend,
 * part of it is registered and part not.
 */
KsmRegistration ksm_backend_registration(HostMemoryBackend *backend)
{
    Object *obj = OBJECT(backend);

    if (backend->share) {
        return KSM_REGISTRATION_NO;     /* the kernel never registers it */
    }
    if (ksm_unmerge_busy(backend)) {
        return KSM_REGISTRATION_UNKNOWN;
    }
    if (object_dynamic_cast(obj, TYPE_MEMORY_BACKEND_KSM)) {
        return backend->merge ? KSM_REGISTRATION_YES : KSM_REGISTRATION_NO;
    }
    if (!current_machine || machine_mem_merge(current_machine)) {
        /* merge=off proves nothing (see above); file mappings may refuse */
        return backend->merge &&
            object_dynamic_cast(obj, TYPE_MEMORY_BACKEND_RAM)
            ? KSM_REGISTRATION_YES : KSM_REGISTRATION_UNKNOWN;
    }
    if (!backend->merge) {
        return KSM_REGISTRATION_NO;
    }
    /* Private anonymous memory is registered; hugetlbfs, DAX may not be. */
    return object_dynamic_cast(obj, TYPE_MEMORY_BACKEND_RAM)
        ? KSM_REGISTRATION_YES : KSM_REGISTRATION_UNKNOWN;
}

const KsmBackendRange *ksm_backend_sole_mergeable(GArray *ranges)
{
    const KsmBackendRange *sole = NULL;

    /* Under mem-merge=on every RAM block (ROMs, video RAM) is registered. */
    if (!current_machine || machine_mem_merge(current_machine)) {
        return NULL;
    }
    for (guint i = 0; i < ranges->len; i++) {
        const KsmBackendRange *r = &g_array_index(ranges, KsmBackendRange, i);

        if (!r->host ||
            ksm_backend_registration(r->backend) == KSM_REGISTRATION_NO) {
            continue;
        }
        if (sole) {
            return NULL;
        }
        sole = r;
    }
    return sole;
}
