/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ksm-error.h: the one GError domain of libksm.
 *
 * Messages are written for the operator: they say what was wrong and what to
 * do about it, so callers print error->message as it is.
 */
#ifndef KSM_ERROR_H
#define KSM_ERROR_H

#include <glib.h>

G_BEGIN_DECLS

#define KSM_ERROR (ksm_error_quark())
GQuark ksm_error_quark(void);

typedef enum {
    KSM_ERROR_NOT_AVAILABLE,  /* the kernel has no KSM (or not this file) */
    KSM_ERROR_PERMISSION,     /* EACCES/EPERM: needs root or CAP_SYS_ADMIN */
    KSM_ERROR_INVALID,        /* a value the kernel or libksm refuses */
    KSM_ERROR_UNKNOWN_KNOB,   /* a knob name this kernel does not have */
    KSM_ERROR_BUSY,           /* EBUSY: pages are shared, unmerge first */
    KSM_ERROR_PARSE,          /* a kernel file with content we cannot read */
    KSM_ERROR_NO_PROCESS,     /* the process went away while we read it */
    KSM_ERROR_UNAVAILABLE,    /* a figure we cannot know exactly here */
    KSM_ERROR_NO_HEADROOM,    /* unmerging could need more memory than there is */
    KSM_ERROR_INTERRUPTED,    /* EINTR: a signal or a deadline stopped it */
    KSM_ERROR_NO_MEMORY,      /* EAGAIN/ENOMEM from the kernel under pressure */
    KSM_ERROR_UNMAPPED,       /* ENOMEM from madvise: the range has holes */
    KSM_ERROR_LOCKED,         /* the host lock is held by another samepage writer */
    KSM_ERROR_FAILED,         /* anything else (I/O errors, ...) */
} KsmErrorCode;

G_END_DECLS

#endif
