/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ksm-private.h: helpers shared by libksm's own files, not installed.
 */
#ifndef KSM_PRIVATE_H
#define KSM_PRIVATE_H

#include <glib.h>
#include <sys/types.h>
#include "ksm/ksm.h"
#include "ksm/ksm-io.h"
#include "ksm/ksm-maps.h"
#include "ksm/ksm-pagemap.h"
#include "ksm/ksm-task.h"

/* write(2) the text once (sysfs wants one write); returns errno or 0.  Not
 * public: knobs are written through ksm_knob_write/ksm_knobs_set. */
int ksm_write_text(const char *path, const char *text);

/* Is flag one of the words of an smaps VmFlags value ("rd wr mg")? */
gboolean ksm_vmflags_has(const char *flags, const char *flag);

#endif
