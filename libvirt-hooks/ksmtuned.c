/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ksmtuned.c: is Debian's ksmtuned running beside the hook?
 *
 * ksmtuned (package ksmtuned, a shell script run as /usr/sbin/ksmtuned, pid
 * in /run/ksmtune.pid) turns ksmd on and off and rewrites pages_to_scan and
 * sleep_millisecs every minute from its own idea of memory pressure, and
 * Debian's ksm.service sets run=1 at boot.  With the hook driving the same
 * knobs the two fight: ksmtuned stops ksmd under running mergeable guests,
 * or undoes samepage tune's rate.  The hook cannot settle that (it must not
 * stop another daemon), so it says so once, when it turns KSM on.
 *
 * Found by ksm_find_ksmtuned (policy/qemu-procs), which samepage tune uses
 * too, in the context's procfs (a fake tree in tests).
 */
#include "hook.h"
#include <ksm/ksm-qemu-procs.h>

void hook_warn_ksmtuned(const KsmContext *ctx)
{
    pid_t pid = ksm_find_ksmtuned(ctx);

    if (pid > 0) {
        hook_log(HOOK_LOG_WARNING, "ksmtuned (pid %d) is running: it also drives "
                 "/sys/kernel/mm/ksm (run, pages_to_scan, sleep_millisecs) and will fight "
                 "this hook and samepage tune, stopping ksmd under running guests or undoing "
                 "its scan rate; stop and disable ksmtuned and ksm.service "
                 "(systemctl disable --now ksmtuned.service ksm.service, or without systemd "
                 "service ksmtuned stop; update-rc.d ksmtuned disable) and let the samepage "
                 "hook drive KSM", (int)pid);
    }
}
