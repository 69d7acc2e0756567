/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * daemon.c: the repair at libvirtd's start (libvirt's daemon hook).
 *
 * libvirtd killed or restarted while the last mergeable guest stopped runs
 * no qemu hook event for that guest when it comes back (seen with libvirt
 * 9.0: no reconnect, stopped or release), so its state file stays and ksmd
 * and the hook's samepage tune run on for nobody until another guest's next
 * event prunes it.  libvirtd runs `daemon - start - start` at every start:
 * there the hook prunes the recorded guests whose QEMU is gone (pid files
 * and /proc, never a call back into libvirt) and, when none is left but
 * the hook had KSM on for guests, does what the last guest's stop does.
 *
 * Only when the hook had KSM on: a guest recorded (now gone) or the hook's
 * samepage tune recorded.  A host where KSM runs for other reasons and the
 * hook never had a guest is left alone.  And never while libvirt runs a
 * mergeable guest the hook has no state for (state lost while libvirtd was
 * down): libvirt runs the daemon hook before it reconnects to its guests,
 * and their reconnect events rebuild the state; unmerging them first would
 * undo their merging for nothing.
 */
#include <string.h>

#include "hook.h"

/* A mergeable guest whose QEMU libvirt runs (its pid file and status XML in
 * libvirt's run directory, the QEMU confirmed by its -uuid) but that the
 * hook has no state for: its name, quoted, or NULL when there is none. */
static char *unrecorded_mergeable_guest(HookEnv *env)
{
    const char *run_dir = env->store->libvirt_dir;
    g_autoptr(GDir) dir = g_dir_open(run_dir, 0, NULL);
    const char *entry;

    while (dir && (entry = g_dir_read_name(dir))) {
        if (!g_str_has_suffix(entry, ".pid")) {
            continue;
        }
        g_autofree char *stem = g_strndup(entry, strlen(entry) - 4);
        g_autofree char *file = g_strconcat(stem, ".xml", NULL);
        g_autofree char *path = g_build_filename(run_dir, file, NULL);
        gsize len = 0;
        g_autofree char *xml = hook_read_trusted(path, 16 << 20, &len, NULL);
        g_auto(HookPolicy) p;
        hook_policy_init(&p);
        if (!xml || !hook_policy_parse(xml, len, &p, NULL) || !p.mergeable) {
            continue;   /* not a guest of ours, or not one that merges */
        }
        HookDomainState st = { 0 };
        gboolean recorded = hook_state_read(env->store, p.uuid, &st, NULL);
        hook_domain_state_clear(&st);
        if (!recorded && hook_find_qemu(env->ctx, run_dir, p.name, p.uuid, NULL) > 0) {
            return hook_quote(p.name ? p.name : "");
        }
    }
    return NULL;
}

void hook_daemon_start_repair_locked(HookEnv *env)
{
    guint recorded = hook_state_count(env->store);
    /* Prunes (and logs, one line each) the guests whose QEMU is gone. */
    g_autoptr(GPtrArray) guests = hook_state_list(env->store, TRUE);

    if (guests->len > 0) {
        /* libvirtd reconnects to them next; their events keep KSM right. */
        hook_log(HOOK_LOG_INFO, "libvirtd start: %u mergeable guest(s) still run (of %u "
                 "recorded): nothing to repair", guests->len, recorded);
        return;
    }
    gboolean tune_died = FALSE;
    gboolean tune_runs = env->cfg->scan_mode == HOOK_SCAN_TUNE &&
                         hook_tune_running(env, NULL, &tune_died);
    if (recorded == 0 && !tune_runs && !tune_died) {
        hook_log(HOOK_LOG_DEBUG, "libvirtd start: no mergeable guest recorded, KSM not the "
                 "hook's: nothing to repair");
        return;
    }
    g_autofree char *unrecorded = unrecorded_mergeable_guest(env);
    if (unrecorded) {
        hook_log_host(HOOK_LOG_WARNING, "libvirtd start: no repair: mergeable domain '%s' runs "
                      "but the hook has no state for it (lost while libvirtd was down?); "
                      "libvirtd's reconnect records it again", unrecorded);
        return;
    }
    hook_log(HOOK_LOG_WARNING, "libvirtd start: repairing: no mergeable guest runs, but the "
             "hook still had %u recorded (now removed: their QEMU is gone)%s, so libvirtd "
             "ran no stop hook for the last one (it was killed or restarted while the guest "
             "stopped); doing what the last guest's stop does: safe unmerge, samepage tune "
             "stopped", recorded, tune_runs ? " and samepage tune running" : "");
    hook_reconcile_locked(env, HOOK_RECONCILE_UNMERGE);
}
