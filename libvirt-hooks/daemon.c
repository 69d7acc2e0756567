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
 * hook never had a guest is left alone.
 */
#include <string.h>

#include "hook.h"

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
    hook_log(HOOK_LOG_WARNING, "libvirtd start: repairing: no mergeable guest runs, but the "
             "hook still had %u recorded (now removed: their QEMU is gone)%s, so libvirtd "
             "ran no stop hook for the last one (it was killed or restarted while the guest "
             "stopped); doing what the last guest's stop does: safe unmerge, samepage tune "
             "stopped", recorded, tune_runs ? " and samepage tune running" : "");
    hook_reconcile_locked(env, HOOK_RECONCILE_UNMERGE);
}
