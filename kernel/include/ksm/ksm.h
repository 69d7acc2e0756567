/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libksm: the one piece of samepage that speaks the kernel's KSM interface.
 * Nothing else in the project opens /sys/kernel/mm/ksm or /proc/PID/ksm_*,
 * or calls madvise for KSM.
 *
 * This header is the kernel-facing API.  The readers of other procfs files
 * that samepage's policy libraries share (maps/smaps, pagemap/kpageflags,
 * stat/cmdline) have their own headers (ksm-io.h lists them); the policies
 * themselves live outside kernel/ (policy/: census, tune, unmerge,
 * qemu-procs), see docs/architecture.md.
 */
#ifndef KSM_H
#define KSM_H

#include "ksm-error.h"
#include "ksm-context.h"
#include "ksm-host.h"
#include "ksm-proc.h"
#include "ksm-advise.h"
#include "ksm-derived.h"
#include "ksm-host-lock.h"
#include "ksm-headroom.h"

#endif
