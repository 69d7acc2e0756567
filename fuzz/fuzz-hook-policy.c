/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fuzz-hook-policy.c: the domain XML libvirt gives the hook on stdin, with
 * the <ksm:policy> in its metadata (libvirt-hooks/policy.c).  A domain's
 * XML is written by whoever may define domains.
 *
 * Input: the XML, handed over with its length like the hook's read_stdin.
 * What the parse accepts must be a valid UUID and trust group; a memory size
 * read for an incoming migration (libvirt-hooks/memory.c, the same reader)
 * must be a whole, non-zero number of KiB within libvirt's 8 EiB.
 */
#include <string.h>

#include "fuzz-common.h"
#include "hook.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_init();
    /* NUL-terminated like the hook's buffer (a GString), length passed too. */
    g_autofree char *xml = fuzz_text(data, size);
    g_autoptr(GError) error = NULL;
    g_auto(HookPolicy) p;

    hook_policy_init(&p);
    if (hook_policy_parse(xml, size, &p, &error)) {
        char uuid[37];
        g_assert(p.uuid && hook_uuid_normalize(p.uuid, uuid) && strcmp(uuid, p.uuid) == 0);
        g_assert(p.group && hook_group_valid(p.group));
        g_assert(p.merge >= -1 && p.merge <= 1);
        g_assert(!(p.mergeable && p.nosharepages));
    } else {
        g_assert(error && error->message);
    }
    g_clear_error(&error);
    hook_policy_clear(&p);

    hook_policy_init(&p);
    if (hook_policy_identify(xml, size, &p, &error)) {
        g_assert(p.uuid && strlen(p.uuid) == 36);
    } else {
        g_assert(error && error->message);
    }
    g_clear_error(&error);
    hook_policy_clear(&p);

    HookGuestMemory mem;
    hook_policy_init(&p);
    if (hook_guest_memory_read(xml, size, &p, &mem, &error)) {
        g_assert(p.uuid && strlen(p.uuid) == 36);
        g_assert(mem.memory_bytes > 0 && mem.memory_bytes % 1024 == 0);
        g_assert(mem.memory_bytes <= (guint64)G_MAXINT64 / 1024 * 1024 + 1024);
        g_assert(mem.current_bytes > 0 && mem.current_bytes <= mem.memory_bytes);
    } else {
        g_assert(error && error->message);
    }
    return 0;
}
