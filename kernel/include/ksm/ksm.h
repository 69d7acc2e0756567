/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libksm: the one piece of samepage that speaks the kernel's KSM interface.
 * Nothing else in the project opens /sys/kernel/mm/ksm or /proc/PID/ksm_*,
 * or calls madvise/prctl for KSM.
 */
#ifndef KSM_H
#define KSM_H

#include "ksm-error.h"
#include "ksm-context.h"
#include "ksm-host.h"
#include "ksm-proc.h"
#include "ksm-advise.h"
#include "ksm-derived.h"
#include "ksm-unmerge.h"
#include "ksm-census.h"

#endif
