/*
 * samepage: the differences between the QEMU versions the KSM backend is
 * grafted into (Debian's 7.2 and 10.0). Every version check of the graft's
 * C code lives in this header; include it right after "qemu/osdep.h"
 * (which brings QEMU_VERSION_MAJOR from config-host.h).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef SAMEPAGE_KSM_COMPAT_H
#define SAMEPAGE_KSM_COMPAT_H

#if QEMU_VERSION_MAJOR >= 10
/* include/sysemu/ was renamed include/system/ in 10.0 */
#include "system/hostmem.h"
#else
#include "sysemu/hostmem.h"
#endif
/*
 * hostmem.h brings the MemoryRegion API: exec/memory.h up to 10.0,
 * system/memory.h from 10.1 on.
 */
#include "qapi/error.h"
#include "qemu/main-loop.h"
#include "block/aio.h"

/* RAM_PRIVATE (explicitly not shared) is new in 10.0; 7.2 implies it */
#ifndef RAM_PRIVATE
#define RAM_PRIVATE 0
#endif

/*
 * The class data a TypeInfo's class_init receives is const from 10.1 on:
 * "static void fn(ObjectClass *oc, KSM_COMPAT_CLASS_DATA *data)".
 */
#if QEMU_VERSION_MAJOR > 10 || \
    (QEMU_VERSION_MAJOR == 10 && QEMU_VERSION_MINOR >= 1)
#define KSM_COMPAT_CLASS_DATA const void
#else
#define KSM_COMPAT_CLASS_DATA void
#endif

/*
 * memory_region_init_ram_flags_nomigrate() returns bool (success) in 10.0,
 * void in 7.2. This wrapper returns bool in both.
 */
static inline bool ksm_compat_init_ram(HostMemoryBackend *backend,
                                       const char *name, uint32_t ram_flags,
                                       Error **errp)
{
#if QEMU_VERSION_MAJOR >= 10
    return memory_region_init_ram_flags_nomigrate(&backend->mr,
                                                  OBJECT(backend), name,
                                                  backend->size, ram_flags,
                                                  errp);
#else
    Error *local_err = NULL;

    memory_region_init_ram_flags_nomigrate(&backend->mr, OBJECT(backend), name,
                                           backend->size, ram_flags,
                                           &local_err);
    if (local_err) {
        error_propagate(errp, local_err);
        return false;
    }
    return true;
#endif
}

/*
 * HostMemoryBackendClass::alloc returns bool (success) in 10.0, void in
 * 7.2. KSM_COMPAT_ALLOC_CB(fn) names a callback of the right type for
 * "bool fn(HostMemoryBackend *, Error **)", defined by
 * KSM_COMPAT_DEFINE_ALLOC_CB(fn).
 */
#if QEMU_VERSION_MAJOR >= 10
#define KSM_COMPAT_DEFINE_ALLOC_CB(fn)
#define KSM_COMPAT_ALLOC_CB(fn) (fn)
#else
#define KSM_COMPAT_DEFINE_ALLOC_CB(fn)                                  \
    static void fn##_cb(HostMemoryBackend *backend, Error **errp)       \
    {                                                                   \
        fn(backend, errp);                                              \
    }
#define KSM_COMPAT_ALLOC_CB(fn) (fn##_cb)
#endif

/*
 * QAPI dropped the has_ flags of optional pointer members and parameters
 * in 8.0: an absent string is NULL.
 */
#if QEMU_VERSION_MAJOR >= 10
#define KSM_COMPAT_OPT_STR(name) const char *name
#define KSM_COMPAT_SET_OPTIONAL_PTR(obj, member, value) \
    ((obj)->member = (value))
#else
#define KSM_COMPAT_OPT_STR(name) bool has_##name, const char *name
#define KSM_COMPAT_SET_OPTIONAL_PTR(obj, member, value) \
    ((obj)->has_##member = true, (obj)->member = (value))
#endif

#endif /* SAMEPAGE_KSM_COMPAT_H */
