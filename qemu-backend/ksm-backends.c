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
