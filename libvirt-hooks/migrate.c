/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * migrate.c: an incoming migration (libvirt's "migrate begin -" on the
 * destination, before it starts the guest's QEMU there).
 *
 * KSM merges a guest's pages only on the host it runs on: the guest leaves
 * the source merged and arrives here unmerged, every page its own.  Its full
 * RAM (<memory>) comes out of this host's MemAvailable as the pages arrive
 * and as the guest touches the rest, before ksmd here merges anything again.
 * A guest that does not fit means the OOM killer on this host, mid-
 * migration, possibly for another tenant's guest.  So with
 * migrate_headroom_check=on the hook refuses it the way the safe unmerge
 * refuses an unmerge: what is needed (<memory> plus migrate_margin_mib for
 * QEMU's own memory) against MemAvailable minus reserve_mib
 * (ksm_unmerge_room).  libvirt cancels the migration on a non-zero exit and
 * puts our stderr in the error the client sees; the guest keeps running on
 * the source.
 *
 * libvirt runs this op as a filter: printing nothing keeps the XML as it
 * is, and the hook never prints anything on stdout.  It reads the XML and
 * /proc/meminfo and nothing else: no KSM knob, no state file, no lock (the
 * prepare and start that follow do the guest's usual KSM work).
 *
 * Not covered: <hugepages/> guests (their RAM is the hugetlb pool, which
 * MemAvailable does not count; QEMU fails on a short pool by itself), and
 * two guests arriving at once that each fit alone (the check is a snapshot;
 * reserve_mib is the slack for that).
 */
#include <stdarg.h>

#include "hook.h"

#define MIB (G_GUINT64_CONSTANT(1) << 20)

static guint64 mib_up(guint64 bytes)
{
    return bytes / MIB + (bytes % MIB != 0);
}

static int refuse(const char *format, ...) G_GNUC_PRINTF(1, 2);
static int refuse(const char *format, ...)
{
    va_list args;
    va_start(args, format);
    g_autofree char *message = g_strdup_vprintf(format, args);
    va_end(args);
    /* One line on stderr: libvirt puts it in the error virsh prints. */
    hook_log(HOOK_LOG_ERROR, "incoming migration refused: %s", message);
    return HOOK_EXIT_REFUSE;
}

int hook_migrate_check(const HookConfig *cfg, const KsmContext *ctx, const char *xml,
                       gsize len)
{
    g_auto(HookPolicy) id;
    g_autoptr(GError) error = NULL;
    HookGuestMemory mem;
    KsmHeadroom room;

    hook_policy_init(&id);
    if (!cfg->migrate_check) {
        hook_log(HOOK_LOG_INFO, "incoming migration allowed without a headroom check "
                 "(migrate_headroom_check=off in %s)", cfg->path);
        return HOOK_EXIT_OK;
    }
    if (!hook_guest_memory_read(xml, len, &id, &mem, &error)) {
        if (id.name) {
            hook_log_set_domain(id.name, id.uuid);
        }
        return refuse("cannot tell how much memory the guest needs: %s; fix the domain "
                      "XML, or set migrate_headroom_check=off in %s", error->message,
                      cfg->path);
    }
    hook_log_set_domain(id.name, id.uuid);
    if (mem.hugepages) {
        hook_log(HOOK_LOG_INFO, "incoming migration: the guest's %" G_GUINT64_FORMAT " MiB "
                 "are hugetlb pages (<hugepages/>), from the hugepage pool, not from "
                 "MemAvailable: no headroom check", mib_up(mem.memory_bytes));
        return HOOK_EXIT_OK;
    }
    if (!ksm_headroom_read(ctx, 0, &room, &error)) {
        return refuse("cannot read this host's free memory, so cannot check that the guest "
                      "fits: %s; set migrate_headroom_check=off in %s to migrate without "
                      "the check", error->message, cfg->path);
    }

    guint64 reserve = cfg->reserve_mib * MIB;
    guint64 margin = cfg->migrate_margin_mib * MIB;
    /* <memory> is at most 2^63 bytes and the margin 2^51: no overflow. */
    guint64 needed = mem.memory_bytes + margin;
    guint64 headroom = ksm_unmerge_room(&room, reserve);
    if (needed > headroom) {
        return refuse("the guest has %" G_GUINT64_FORMAT " MiB of memory (<memory>) and "
                      "arrives unmerged, so it needs %" G_GUINT64_FORMAT " MiB with the "
                      "%" G_GUINT64_FORMAT " MiB margin for QEMU; this host's headroom is "
                      "%" G_GUINT64_FORMAT " MiB (MemAvailable %" G_GUINT64_FORMAT " MiB "
                      "minus reserve_mib %" G_GUINT64_FORMAT " MiB). Migrate it to a host "
                      "with more free memory, or free memory here and retry; "
                      "migrate_headroom_check=off in %s allows it anyway",
                      mib_up(mem.memory_bytes), mib_up(needed), cfg->migrate_margin_mib,
                      headroom / MIB, room.mem_available / MIB, cfg->reserve_mib, cfg->path);
    }
    hook_log(HOOK_LOG_INFO, "incoming migration: the guest's %" G_GUINT64_FORMAT " MiB "
             "(+ %" G_GUINT64_FORMAT " MiB margin) fit the headroom of %" G_GUINT64_FORMAT
             " MiB (MemAvailable %" G_GUINT64_FORMAT " MiB minus reserve_mib %"
             G_GUINT64_FORMAT " MiB)", mib_up(mem.memory_bytes), cfg->migrate_margin_mib,
             headroom / MIB, room.mem_available / MIB, cfg->reserve_mib);
    return HOOK_EXIT_OK;
}
