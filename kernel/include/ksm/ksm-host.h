/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ksm-host.h: the host-wide knobs and counters in /sys/kernel/mm/ksm.
 *
 * Each file the library knows is a KsmField with a type and, for knobs, the
 * range the kernel accepts.  A snapshot reads every file the running kernel
 * has; files this library does not know are kept by name as raw text, and
 * files the kernel lacks are "absent", never an error.  A known file whose
 * text does not parse (a future kernel changed its format) is reported like
 * an unknown one, raw in `extra`, and absent as a typed value.
 */
#ifndef KSM_HOST_H
#define KSM_HOST_H

#include <glib.h>
#include "ksm-context.h"

G_BEGIN_DECLS

typedef enum {
    /* knobs */
    KSM_FIELD_RUN,
    KSM_FIELD_PAGES_TO_SCAN,
    KSM_FIELD_SLEEP_MILLISECS,
    KSM_FIELD_MERGE_ACROSS_NODES,
    KSM_FIELD_USE_ZERO_PAGES,
    KSM_FIELD_MAX_PAGE_SHARING,
    KSM_FIELD_STABLE_NODE_CHAINS_PRUNE_MILLISECS,
    KSM_FIELD_SMART_SCAN,
    KSM_FIELD_ADVISOR_MODE,
    KSM_FIELD_ADVISOR_MAX_CPU,
    KSM_FIELD_ADVISOR_TARGET_SCAN_TIME,
    KSM_FIELD_ADVISOR_MIN_PAGES_TO_SCAN,
    KSM_FIELD_ADVISOR_MAX_PAGES_TO_SCAN,
    /* counters */
    KSM_FIELD_PAGES_SHARED,
    KSM_FIELD_PAGES_SHARING,
    KSM_FIELD_PAGES_UNSHARED,
    KSM_FIELD_PAGES_VOLATILE,
    KSM_FIELD_FULL_SCANS,
    KSM_FIELD_STABLE_NODE_CHAINS,
    KSM_FIELD_STABLE_NODE_DUPS,
    KSM_FIELD_PAGES_SCANNED,
    KSM_FIELD_PAGES_SKIPPED,
    KSM_FIELD_KSM_ZERO_PAGES,
    KSM_FIELD_GENERAL_PROFIT,
    KSM_FIELD__COUNT
} KsmField;

/* run values (KSM_RUN_OFFLINE is masked away when reading). */
enum { KSM_RUN_STOP = 0, KSM_RUN_MERGE = 1, KSM_RUN_UNMERGE = 2 };
/* advisor_mode values, the index of the bracketed choice. */
enum { KSM_ADVISOR_NONE = 0, KSM_ADVISOR_SCAN_TIME = 1 };

typedef struct {
    const char *name;        /* file name in /sys/kernel/mm/ksm */
    gboolean knob;           /* writable setting (else a read-only counter) */
    gboolean is_signed;      /* general_profit */
    gint64 min, max;         /* accepted range for knobs */
    const char *unit;        /* "pages", "milliseconds", "bytes", "percent", ... */
    const char *help;        /* one line, for --help and Prometheus HELP */
} KsmFieldInfo;

const KsmFieldInfo *ksm_field_info(KsmField field);
/* Look a field up by its file name; FALSE if libksm does not know it. */
gboolean ksm_field_from_name(const char *name, KsmField *field);

/* Everything in /sys/kernel/mm/ksm at one moment. */
typedef struct {
    gboolean present[KSM_FIELD__COUNT];
    gint64 value[KSM_FIELD__COUNT];      /* valid when present */
    /* Files this kernel has that libksm does not know: name -> raw text
     * (trailing newline stripped).  Never NULL. */
    GHashTable *extra;
    gint64 monotonic_us;                  /* when it was read */
} KsmSnapshot;

KsmSnapshot *ksm_snapshot_read(const KsmContext *ctx, GError **error);
void ksm_snapshot_free(KsmSnapshot *snap);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(KsmSnapshot, ksm_snapshot_free)

/* TRUE and *value when the kernel has the file. */
gboolean ksm_snapshot_get(const KsmSnapshot *snap, KsmField field, gint64 *value);
/* The value, or fallback when absent: for figures where 0 is the honest default. */
gint64 ksm_snapshot_get_or(const KsmSnapshot *snap, KsmField field, gint64 fallback);
/* Sorted names of the unknown files, for stable output.  Free with g_free (not the strings). */
const char **ksm_snapshot_extra_names(const KsmSnapshot *snap, guint *n);

/* Parsers, exposed for tests and for callers with their own I/O. */
gboolean ksm_parse_int(const char *text, gint64 *value, GError **error);
/* "[none] scan-time" -> KSM_ADVISOR_NONE; also accepts a bare "none". */
gboolean ksm_parse_advisor_mode(const char *text, gint64 *value, GError **error);
/* The text to write to a field for a value ("scan-time" for advisor 1). */
char *ksm_field_format(KsmField field, gint64 value);

/*
 * Knob writes.  Validation happens before anything is written: the name must
 * be a knob this kernel has, the value an integer (or advisor mode name) in
 * range with no trailing garbage.  Kernel errors become messages that say
 * what to do (EBUSY: unmerge first; EINVAL: advisor mode owns pages_to_scan;
 * EACCES: run as root).
 */
gboolean ksm_knob_parse(const KsmContext *ctx, const char *name, const char *text,
                        KsmField *field, gint64 *value, GError **error);
gboolean ksm_knob_write(const KsmContext *ctx, KsmField field, gint64 value, GError **error);
/* Read one field now.  KSM_ERROR_NOT_AVAILABLE when the kernel lacks it. */
gboolean ksm_field_read(const KsmContext *ctx, KsmField field, gint64 *value, GError **error);

typedef struct {
    KsmField field;
    gint64 value;
} KsmKnobSetting;

/*
 * All or nothing: every "name=value" is parsed and validated first; if any is
 * bad nothing is written.  Then they are written in the order the kernel needs
 * (advisor_mode before pages_to_scan, run last); if the kernel refuses one,
 * those already written are put back.  old_values (may be NULL) receives the
 * values before, in the order of assignments.
 */
gboolean ksm_knobs_set(const KsmContext *ctx, const char *const *assignments, guint n,
                       KsmKnobSetting *old_values, KsmKnobSetting *new_values,
                       GError **error);

/*
 * Save and restore every writable knob (tests and scripts that change KSM
 * restore it, also on failure).  The text form is "name=value" lines, so a
 * wrapper can keep it in a file and restore after a crash.
 */
typedef struct KsmKnobState KsmKnobState;
KsmKnobState *ksm_knobs_save(const KsmContext *ctx, GError **error);
gboolean ksm_knobs_restore(const KsmContext *ctx, const KsmKnobState *state, GError **error);
char *ksm_knob_state_to_text(const KsmKnobState *state);
KsmKnobState *ksm_knob_state_from_text(const char *text, GError **error);
/* TRUE when every knob in the state has that value now; else *differs names one. */
gboolean ksm_knob_state_matches(const KsmContext *ctx, const KsmKnobState *state,
                                char **differs, GError **error);
void ksm_knob_state_free(KsmKnobState *state);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(KsmKnobState, ksm_knob_state_free)

/*
 * Wait until full_scans has advanced by `scans` from its value now, or the
 * deadline passes (KSM_ERROR_INTERRUPTED, with the counts in the message).
 */
gboolean ksm_wait_full_scans(const KsmContext *ctx, gint64 scans, gint64 timeout_ms, GError **error);

G_END_DECLS

#endif
