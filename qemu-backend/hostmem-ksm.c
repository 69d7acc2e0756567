/*
 * samepage: memory-backend-ksm, private anonymous guest RAM whose "merge"
 * property is the truth.
 *
 * Stock QEMU marks every RAM block mergeable when the machine's mem-merge
 * is on (the default): ram_block_add() -> memory_try_enable_merging().  The
 * backend's own complete() only ever adds MADV_MERGEABLE for merge=on, so
 * merge=off under mem-merge=on leaves the memory mergeable while
 * query-memdev reports merge=false.  This backend applies its property to
 * the kernel in both directions once the RAM exists, so /proc/PID/smaps
 * ("mg" in VmFlags) always agrees with it.  qom-set of merge later goes
 * through hostmem.c's setter, which madvises whenever the value changes:
 * starting from an honest state, it stays honest.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "ksm-backend.h"
#include "qemu/module.h"
#include "qom/object_interfaces.h"

#include <ksm/ksm.h>

#define KSM_BACKEND_MAX_SIZE (UINT64_C(1) << 47)

static bool ksm_backend_alloc(HostMemoryBackend *backend, Error **errp)
{
    g_autofree char *name = host_memory_backend_get_name(backend);
    const char *id = object_get_canonical_path_component(OBJECT(backend));
    g_autoptr(GError) err = NULL;
    uint32_t ram_flags = RAM_PRIVATE;
    void *ptr;
    uint64_t size;
    bool ok;

    if (!backend->size) {
        error_setg(errp, "memory-backend-ksm '%s': size must be more than 0",
                   id);
        return false;
    }
    /*
     * QAPI reads size=-1 as 2^64 - 1, which page rounding turns into 0 and
     * an assertion in the RAM block code (stock backends abort there).
     * Nothing above the x86-64 user address space (2^47) can be mapped.
     */
    if (backend->size > KSM_BACKEND_MAX_SIZE) {
        error_setg(errp, "memory-backend-ksm '%s': size %" PRIu64 " is more "
                   "than a process can map (%" PRIu64 " at most)", id,
                   backend->size, (uint64_t)KSM_BACKEND_MAX_SIZE);
        error_append_hint(errp, "A negative size reads as a huge one; give "
                          "the size in bytes or with a suffix (512M, 4G).\n");
        return false;
    }
    if (backend->share) {
        error_setg(errp, "memory-backend-ksm '%s' cannot have share=on: KSM "
                   "merges only private anonymous memory", id);
        error_append_hint(errp, "Leave share off; memory that must be shared "
                          "belongs in memory-backend-memfd or "
                          "memory-backend-file, where it will not merge.\n");
        return false;
    }

    ram_flags |= backend->reserve ? 0 : RAM_NORESERVE;
    if (!ksm_compat_init_ram(backend, name, ram_flags, errp)) {
        return false;
    }

    ptr = memory_region_get_ram_ptr(&backend->mr);
    size = memory_region_size(&backend->mr);
    ok = backend->merge ? ksm_advise_mergeable(ptr, size, &err)
                        : ksm_advise_unmergeable(ptr, size, &err);
    if (!ok) {
        error_setg(errp, "memory-backend-ksm '%s': cannot apply merge=%s: %s",
                   id, backend->merge ? "on" : "off", err->message);
        return false;
    }
    return true;
}

KSM_COMPAT_DEFINE_ALLOC_CB(ksm_backend_alloc)

static void ksm_backend_instance_init(Object *obj)
{
    /*
     * The parent defaults merge to the machine's mem-merge; this backend
     * exists to merge, so it defaults to on and means it.
     */
    MEMORY_BACKEND(obj)->merge = true;
}

static void ksm_backend_class_init(ObjectClass *oc,
                                   KSM_COMPAT_CLASS_DATA *data)
{
    HostMemoryBackendClass *bc = MEMORY_BACKEND_CLASS(oc);

    bc->alloc = KSM_COMPAT_ALLOC_CB(ksm_backend_alloc);
}

static const TypeInfo ksm_backend_info = {
    .name = TYPE_MEMORY_BACKEND_KSM,
    .parent = TYPE_MEMORY_BACKEND,
    .instance_init = ksm_backend_instance_init,
    .class_init = ksm_backend_class_init,
};

static void ksm_backend_register_types(void)
{
    type_register_static(&ksm_backend_info);
}

type_init(ksm_backend_register_types);
