/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * tune-systemd.h: scan=tune through samepage-tune.service where systemd runs.
 */
#ifndef SAMEPAGE_HOOK_TUNE_SYSTEMD_H
#define SAMEPAGE_HOOK_TUNE_SYSTEMD_H

#include "hook.h"

#define HOOK_TUNE_UNIT "samepage-tune.service"
/* Where the unit's ExecStartPre saves the knobs it found (RuntimeDirectory). */
#define HOOK_TUNE_UNIT_KNOBS "/run/samepage-tune/knobs"

/* systemd runs (/run/systemd/system), the unit is installed, and the hook
 * works on the real /sys and /proc with the samepage the unit runs. */
gboolean hook_tune_use_systemd(HookEnv *env);
gboolean hook_tune_systemd_start(HookEnv *env, GError **error);
gboolean hook_tune_systemd_kick(HookEnv *env, guint n_guests);
void hook_tune_systemd_stop(HookEnv *env);

#endif
