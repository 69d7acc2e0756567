/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ksm-tune.h: samepage's ksmd scan policy (`samepage tune`).
 *
 * What it is for: when guests start, merge what can be merged quickly, then
 * keep watching at a low cost.  KSM merges a page on the second full scan
 * that finds it unchanged (the first records its checksum), so the time to
 * converge is about two full scans, and a full scan takes
 *     present mergeable pages / (pages_to_scan per sleep_millisecs).
 * The kernel default (100 pages per 20 ms) needs ~90 s a scan for 1.7 GiB;
 * ksmtuned raises pages_to_scan by 300 a minute; the kernel's scan-time
 * advisor (6.8+) adapts pages_to_scan only at the end of each full scan,
 * starts every time from advisor_min_pages_to_scan (500), and its first
 * adjustment is multiplied by an average that starts at 0 (EWMA weight 30%),
 * so the second scan, the one that merges, runs at about the first one's
 * rate; and once converged it never goes below 10% of a CPU.
 *
 * The policy has two phases:
 *   converge  aim a full scan at fast_scan_ms from the first batch: the size
 *             of a full scan is known before ksmd starts (Rss of the areas
 *             registered with KSM, smaps "mg"), so the first pages_to_scan is
 *             computed, not found by trial; then corrected every step from
 *             the scan rate ksmd actually achieved (pages_scanned), and never
 *             above max_cpu percent of one CPU (ksmd's own CPU time).
 *   steady    once a full scan (the third or later, and at least 3 x
 *             fast_scan_ms into the phase) adds less than
 *             converged_gain of pages_sharing: aim a full scan at
 *             slow_scan_ms, at most idle_cpu percent of a CPU; every
 *             further full scan that adds under converged_gain doubles
 *             that, up to idle_scan_ms.  Below the kernel default's rate
 *             (min_pages every sleep_ms) ksmd sleeps longer between
 *             batches of min_pages (up to max_sleep_ms): once converged
 *             the policy costs less than the kernel defaults, which scan
 *             everything again every few tens of seconds for nothing.
 * Back to converge when the mergeable memory grows by grow_ratio from its
 * lowest point in the phase (a guest started, a guest's memory grew), when
 * a steady full scan still gains, when KSM was reset (run=2 by someone:
 * full_scans went down), or when asked (SIGUSR1 to `samepage tune`, as the
 * hook does when a guest starts): new sharing is found at the fast rate,
 * not at the steady one.
 *
 * The decision is a pure function of observations (ksm_tune_step), so it is
 * unit-tested without a kernel; ksm_tune_observe reads them through libksm.
 */
#ifndef KSM_TUNE_H
#define KSM_TUNE_H

#include <glib.h>
#include <sys/types.h>
#include <ksm/ksm-context.h>

G_BEGIN_DECLS

typedef struct {
    guint fast_scan_ms;       /* full-scan time while converging (3000) */
    guint slow_scan_ms;       /* full-scan time once converged (300000) */
    guint idle_scan_ms;       /* ... after full scans that found nothing: the
                                 longest (1200000) */
    guint max_cpu;            /* ksmd CPU cap while converging, % of one CPU (70) */
    guint idle_cpu;           /* ... once converged (10) */
    guint sleep_ms;           /* sleep_millisecs written (20, the kernel default) */
    guint max_sleep_ms;       /* the longest sleep_millisecs once steady (1000) */
    guint64 min_pages;        /* pages_to_scan bounds (100, the kernel default) */
    guint64 max_pages;        /* (100000) */
    double converged_gain;    /* a full scan adding less than this fraction of
                                 pages_sharing means converged (0.01) */
    double grow_ratio;        /* mergeable memory growing by this fraction: converge
                                 again (0.05) */
} KsmTuneParams;

void ksm_tune_params_init(KsmTuneParams *params);

typedef enum {
    KSM_TUNE_CONVERGE,
    KSM_TUNE_STEADY,
} KsmTunePhase;

const char *ksm_tune_phase_name(KsmTunePhase phase);

/* What one step looks at. */
typedef struct {
    double time_s;              /* monotonic */
    guint64 mergeable_pages;    /* present pages in areas registered with KSM (0: unknown) */
    gint64 full_scans;
    gint64 pages_scanned;       /* -1: the kernel has no such counter */
    gint64 pages_sharing;
    double ksmd_cpu_s;          /* -1: unknown */
    gint64 run;
    gint64 pages_to_scan;       /* the knobs as they are now */
    gint64 sleep_millisecs;
} KsmTuneObservation;

typedef struct {
    KsmTunePhase phase;
    guint64 pages_to_scan;      /* what the policy wants now */
    guint sleep_ms;
    char reason[160];           /* why the last change */

    /* internal */
    gboolean started;
    KsmTuneObservation prev;
    guint64 scan_size;          /* pages in the last complete full scan (0: none yet) */
    guint64 mergeable_ref;      /* mergeable pages when the phase was chosen, or
                                   the lowest since */
    double phase_start;         /* time_s when the phase was entered */
    gint64 scans_in_phase;      /* full scans completed in this phase */
    gint64 steady_scans_idle;   /* steady full scans in a row that added nothing */
    gint64 scan_start_scanned;  /* pages_scanned when the current full scan began */
    gint64 scan_start_sharing;  /* pages_sharing then */
    gboolean kick;              /* converge again at the next step */
} KsmTuneState;

void ksm_tune_state_init(KsmTuneState *state);

/* Ask for the converge phase at the next step (a guest started). */
void ksm_tune_kick(KsmTuneState *state);

/*
 * One decision.  Returns TRUE when pages_to_scan or sleep_ms differ from the
 * knobs in obs (they should be written), with state->reason saying why.
 */
gboolean ksm_tune_step(KsmTuneState *state, const KsmTuneParams *params,
                       const KsmTuneObservation *obs);

/*
 * Read an observation: knobs and counters (sysfs), ksmd's CPU time, and,
 * when with_mergeable, the present pages of every area registered with KSM
 * (Rss of smaps areas with VmFlags "mg", in every process whose ksm_stat
 * says it has any; processes are found through /proc).  Reading smaps walks
 * the page tables: about 10 ms per GiB, so callers refresh it every few
 * seconds, not every step.  *ksmd caches ksmd's pid (0: look it up).
 */
gboolean ksm_tune_observe(const KsmContext *ctx, gboolean with_mergeable, pid_t *ksmd,
                          KsmTuneObservation *obs, GError **error);

/* Rss of the areas with VmFlags "mg" in smaps text, in bytes (for tests). */
guint64 ksm_tune_smaps_mergeable_rss(const char *smaps_text);

G_END_DECLS

#endif
