/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ksm-tune.c: samepage's ksmd scan policy (see ksm/ksm-tune.h for what it
 * does and why).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ksm/ksm.h>
#include <ksm/ksm-ksmd.h>
#include <ksm/ksm-maps.h>
#include <ksm/ksm-tune.h>

void ksm_tune_params_init(KsmTuneParams *p)
{
    memset(p, 0, sizeof(*p));
    p->fast_scan_ms = 3000;
    p->slow_scan_ms = 300000;
    p->idle_scan_ms = 1200000;
    p->max_cpu = 70;          /* the kernel advisor's default cap */
    p->idle_cpu = 10;
    p->sleep_ms = 20;         /* the kernel default */
    p->max_sleep_ms = 1000;
    p->min_pages = 100;       /* the kernel default */
    p->max_pages = 100000;
    p->converged_gain = 0.01;
    p->grow_ratio = 0.05;
}

const char *ksm_tune_phase_name(KsmTunePhase phase)
{
    return phase == KSM_TUNE_CONVERGE ? "converge" : "steady";
}

void ksm_tune_state_init(KsmTuneState *s)
{
    memset(s, 0, sizeof(*s));
    s->phase = KSM_TUNE_CONVERGE;
}

void ksm_tune_kick(KsmTuneState *s)
{
    s->kick = TRUE;
}

static guint64 clamp_pages(const KsmTuneParams *p, double pages)
{
    if (!(pages >= (double)p->min_pages)) {   /* also NaN */
        return p->min_pages;
    }
    if (pages > (double)p->max_pages) {
        return p->max_pages;
    }
    return (guint64)(pages + 0.5);
}

/* The size of a full scan in pages: what the last one really scanned, or the
 * mergeable memory if that is larger (a guest started since) or no full scan
 * has completed yet. */
static guint64 scan_pages(const KsmTuneState *s, const KsmTuneObservation *o)
{
    return MAX(s->scan_size, o->mergeable_pages);
}

/* The scan rate (pages/s) of a full scan of `pages` in scan_ms, ignoring the
 * batches' own time (the feedback corrects for it). */
static double open_loop(guint64 pages, guint scan_ms)
{
    return (double)pages / MAX((double)scan_ms / 1000.0, 0.001);
}

/* The nominal rate of the knobs: pages_to_scan every sleep_ms. */
static double knob_rate(guint64 pages_to_scan, guint sleep_ms)
{
    return (double)pages_to_scan * 1000.0 / MAX(sleep_ms, 1);
}

/* The steady full-scan time: slow_scan_ms, doubled by every full scan that
 * added nothing since (steady_scans_idle), up to idle_scan_ms. */
static guint steady_scan_ms(const KsmTuneState *s, const KsmTuneParams *p)
{
    double ms = p->slow_scan_ms;
    for (gint64 i = 0; i < s->steady_scans_idle && ms < p->idle_scan_ms; i++) {
        ms *= 2;
    }
    return (guint)MIN(ms, (double)MAX(p->idle_scan_ms, p->slow_scan_ms));
}

static guint phase_scan_ms(const KsmTuneState *s, const KsmTuneParams *p)
{
    return s->phase == KSM_TUNE_CONVERGE ? p->fast_scan_ms : steady_scan_ms(s, p);
}

/*
 * Knobs for a nominal rate in pages/s.  At sleep_ms (the kernel default
 * 20 ms) the batch is sized for the rate, never under min_pages (the kernel
 * default 100).  While converging that is the floor: the kernel default's
 * rate.  Once steady, a rate under it is had by sleeping longer between
 * batches of min_pages (up to max_sleep_ms), not by smaller batches: each
 * wake-up of ksmd costs the same whatever the batch, so fewer, full ones are
 * the cheap way to scan slowly.
 */
static void set_rate(KsmTuneState *s, const KsmTuneParams *p, double rate)
{
    guint sleep_ms = MAX(p->sleep_ms, 1);
    double pages = rate * sleep_ms / 1000.0;
    if (s->phase == KSM_TUNE_STEADY && pages < (double)p->min_pages && rate > 0 &&
        p->max_sleep_ms > sleep_ms) {
        double ms = (double)p->min_pages * 1000.0 / rate;
        sleep_ms = (guint)CLAMP(ms + 0.5, (double)sleep_ms, (double)p->max_sleep_ms);
        pages = (double)p->min_pages;
    }
    s->pages_to_scan = clamp_pages(p, pages);
    s->sleep_ms = sleep_ms;
}

static void enter(KsmTuneState *s, const KsmTuneParams *p, const KsmTuneObservation *o,
                  KsmTunePhase phase, const char *why)
{
    s->phase = phase;
    s->phase_start = o->time_s;
    s->scans_in_phase = 0;
    s->steady_scans_idle = 0;
    s->mergeable_ref = o->mergeable_pages;
    guint scan_ms = phase_scan_ms(s, p);
    guint64 pages = scan_pages(s, o);
    set_rate(s, p, open_loop(pages, scan_ms));
    g_snprintf(s->reason, sizeof(s->reason), "%s: %s; a full scan of %" G_GUINT64_FORMAT
               " pages in %.1f s", ksm_tune_phase_name(phase), why, pages, scan_ms / 1000.0);
}

gboolean ksm_tune_step(KsmTuneState *s, const KsmTuneParams *p, const KsmTuneObservation *o)
{
    s->reason[0] = 0;
    if (!s->started) {
        s->started = TRUE;
        s->scan_start_scanned = o->pages_scanned;
        s->scan_start_sharing = o->pages_sharing;
        enter(s, p, o, KSM_TUNE_CONVERGE, "start");
        s->prev = *o;
        return (gint64)s->pages_to_scan != o->pages_to_scan ||
               (gint64)s->sleep_ms != o->sleep_millisecs;
    }
    const KsmTuneObservation *prev = &s->prev;
    double dt = o->time_s - prev->time_s;

    /* A full scan ended (or several, or KSM was reset). */
    gboolean reset = o->full_scans < prev->full_scans;
    if (reset) {
        s->scan_size = 0;
        s->scan_start_scanned = o->pages_scanned;
        s->scan_start_sharing = o->pages_sharing;
        enter(s, p, o, KSM_TUNE_CONVERGE, "KSM was reset (full_scans went down: run=2)");
    } else if (o->full_scans > prev->full_scans) {
        gint64 scanned = o->pages_scanned - s->scan_start_scanned;
        gint64 gain = o->pages_sharing - s->scan_start_sharing;
        if (o->pages_scanned >= 0 && scanned > 0) {
            s->scan_size = (guint64)(scanned / (o->full_scans - prev->full_scans));
        }
        s->scans_in_phase += o->full_scans - prev->full_scans;
        s->scan_start_scanned = o->pages_scanned;
        s->scan_start_sharing = o->pages_sharing;
        double limit = MAX(p->converged_gain * (double)MAX(o->pages_sharing, 0), 64.0);
        /* Three full scans, and the time three take at the converge rate:
         * with little registered (a guest just started) ksmd completes
         * "full scans" of almost nothing within a second, before the
         * guest's memory is there to merge. */
        gboolean long_enough = o->time_s - s->phase_start >= 3.0 * p->fast_scan_ms / 1000.0;
        if (s->phase == KSM_TUNE_CONVERGE && s->scans_in_phase >= 3 && long_enough &&
            gain < limit) {
            char why[96];
            g_snprintf(why, sizeof(why), "converged (the last full scan added %" G_GINT64_FORMAT
                       " pages_sharing)", gain);
            enter(s, p, o, KSM_TUNE_STEADY, why);
        } else if (s->phase == KSM_TUNE_STEADY && gain >= limit) {
            char why[96];
            g_snprintf(why, sizeof(why), "a full scan still added %" G_GINT64_FORMAT
                       " pages_sharing", gain);
            enter(s, p, o, KSM_TUNE_CONVERGE, why);
        } else if (s->phase == KSM_TUNE_STEADY && steady_scan_ms(s, p) < p->idle_scan_ms) {
            /* Another full scan that found next to nothing: scan half as
             * fast (down to idle_scan_ms a scan; the events below bring
             * the fast phase back at once). */
            s->steady_scans_idle++;
            guint scan_ms = steady_scan_ms(s, p);
            guint64 pages = scan_pages(s, o);
            set_rate(s, p, open_loop(pages, scan_ms));
            g_snprintf(s->reason, sizeof(s->reason), "steady: the last full scan added %"
                       G_GINT64_FORMAT " pages_sharing: a full scan of %" G_GUINT64_FORMAT
                       " pages in %.1f s", gain, pages, scan_ms / 1000.0);
        }
    }
    /* Memory that went away (a guest stopped) lowers the reference, so that
     * the next guest to start is seen growing from there. */
    if (!s->reason[0] && o->mergeable_pages && o->mergeable_pages < s->mergeable_ref) {
        s->mergeable_ref = o->mergeable_pages;
    }
    if (s->kick) {
        /* Before anything else this step decided: a guest started. */
        enter(s, p, o, KSM_TUNE_CONVERGE, "asked to (a guest started)");
    } else if (!s->reason[0] && s->mergeable_ref && o->mergeable_pages >
               (guint64)((double)s->mergeable_ref * (1.0 + p->grow_ratio))) {
        char why[96];
        g_snprintf(why, sizeof(why), "mergeable memory grew from %" G_GUINT64_FORMAT
                   " to %" G_GUINT64_FORMAT " pages", s->mergeable_ref, o->mergeable_pages);
        enter(s, p, o, KSM_TUNE_CONVERGE, why);
    } else if (!s->reason[0] && !s->mergeable_ref && o->mergeable_pages &&
               s->phase == KSM_TUNE_CONVERGE) {
        /* Started before any registered memory was seen (before 6.7 there is
         * no ksm_mergeable: only what ksmd already tracks counts): size the
         * converge rate now.  Without pages_scanned (before 6.6) nothing
         * else would raise it from the minimum. */
        char why[96];
        g_snprintf(why, sizeof(why), "registered memory found: %" G_GUINT64_FORMAT " pages",
                   o->mergeable_pages);
        enter(s, p, o, KSM_TUNE_CONVERGE, why);
    } else if (!s->reason[0] && !s->mergeable_ref && o->mergeable_pages) {
        s->mergeable_ref = o->mergeable_pages;
    }
    s->kick = FALSE;

    /* Closed loop: correct the scan rate from what ksmd achieved in the last
     * step, when our knobs were in force for all of it. */
    if (!s->reason[0] && dt > 0.2 && o->run == 1 && prev->run == 1 &&
        prev->pages_to_scan == (gint64)s->pages_to_scan &&
        o->pages_to_scan == (gint64)s->pages_to_scan &&
        prev->sleep_millisecs == (gint64)s->sleep_ms && o->sleep_millisecs == (gint64)s->sleep_ms &&
        o->pages_scanned >= 0 && prev->pages_scanned >= 0) {
        guint scan_ms = phase_scan_ms(s, p);
        guint cap = s->phase == KSM_TUNE_CONVERGE ? p->max_cpu : p->idle_cpu;
        double rate = (double)(o->pages_scanned - prev->pages_scanned) / dt;
        double want = (double)scan_pages(s, o) / (scan_ms / 1000.0);
        double cur = knob_rate(s->pages_to_scan, s->sleep_ms);
        double next = cur;
        if (rate > 0) {
            next = cur * want / rate;
        }
        const char *why = "scan rate";
        if (o->ksmd_cpu_s >= 0 && prev->ksmd_cpu_s >= 0) {
            double cpu = (o->ksmd_cpu_s - prev->ksmd_cpu_s) / dt * 100.0;
            if (cpu > 0 && next / cur * cpu > cap) {
                next = cur * cap / cpu;
                why = "CPU cap";
            }
        }
        next = CLAMP(next, cur * 0.5, cur * 4.0);   /* no wild swings on one reading */
        /* ksmd far behind even at 8x the open-loop rate is held back by
         * something else (starved of CPU, waiting on a busy guest's locks):
         * a bigger batch would only come as one burst when it runs again. */
        double ceiling = 8.0 * open_loop(scan_pages(s, o), scan_ms);
        if (next > cur && next > ceiling) {
            next = MAX(cur, ceiling);
        }
        KsmTuneState trial = *s;
        set_rate(&trial, p, next);
        /* Ignore changes under 10% (25% once steady: a step sees only a
         * few batches of a slow scan, so its reading is coarser still). */
        double band = s->phase == KSM_TUNE_CONVERGE ? 0.1 : 0.25;
        double change = knob_rate(trial.pages_to_scan, trial.sleep_ms) - cur;
        if (change > band * cur || change < -band * cur) {
            g_snprintf(s->reason, sizeof(s->reason), "%s: %s (%.0f pages/s, want %.0f)",
                       ksm_tune_phase_name(s->phase), why, rate, want);
            s->pages_to_scan = trial.pages_to_scan;
            s->sleep_ms = trial.sleep_ms;
        }
    }
    s->prev = *o;
    if (!s->reason[0] && ((gint64)s->pages_to_scan != o->pages_to_scan ||
                          (gint64)s->sleep_ms != o->sleep_millisecs)) {
        g_snprintf(s->reason, sizeof(s->reason), "%s: knobs were changed by someone else",
                   ksm_tune_phase_name(s->phase));
    }
    return (gint64)s->pages_to_scan != o->pages_to_scan ||
           (gint64)s->sleep_ms != o->sleep_millisecs;
}

/* ---- observation -------------------------------------------------------------- */

static void add_mergeable_rss(const KsmMapsArea *area, gpointer opaque)
{
    if (area->mergeable == 1 && area->rss_kb > 0) {
        *(guint64 *)opaque += (guint64)area->rss_kb * 1024;
    }
}

guint64 ksm_tune_smaps_mergeable_rss(const char *text)
{
    guint64 total = 0;

    /* Text the reader rejects (never the kernel's) adds what came before it. */
    ksm_maps_parse(text, add_mergeable_rss, &total, NULL);
    return total;
}

static guint64 mergeable_pages(const KsmContext *ctx)
{
    g_autoptr(GDir) dir = g_dir_open(ksm_context_procfs(ctx), 0, NULL);
    guint64 bytes = 0;
    const char *name;

    while (dir && (name = g_dir_read_name(dir))) {
        if (!g_ascii_isdigit(name[0])) {
            continue;
        }
        pid_t pid = (pid_t)strtol(name, NULL, 10);
        g_auto(KsmProcStat) st;
        ksm_proc_stat_init(&st);
        if (!ksm_proc_stat_read(ctx, pid, &st, NULL) || st.mergeable == 0) {
            continue;   /* gone, a kernel thread, or nothing registered */
        }
        if (st.mergeable < 0 && !(st.present[KSM_PROC_RMAP_ITEMS] &&
                                  st.value[KSM_PROC_RMAP_ITEMS] > 0)) {
            continue;   /* an older kernel: only processes ksmd already tracks */
        }
        g_autofree char *smaps = ksm_smaps_read(ctx, pid, NULL);
        if (smaps) {
            bytes += ksm_tune_smaps_mergeable_rss(smaps);
        }
    }
    return bytes / ksm_context_page_size(ctx);
}

gboolean ksm_tune_observe(const KsmContext *ctx, gboolean with_mergeable, pid_t *ksmd,
                          KsmTuneObservation *o, GError **error)
{
    memset(o, 0, sizeof(*o));
    g_autoptr(KsmSnapshot) snap = ksm_snapshot_read(ctx, error);
    if (!snap) {
        return FALSE;
    }
    o->time_s = (double)g_get_monotonic_time() / 1e6;
    o->full_scans = ksm_snapshot_get_or(snap, KSM_FIELD_FULL_SCANS, 0);
    o->pages_scanned = ksm_snapshot_get_or(snap, KSM_FIELD_PAGES_SCANNED, -1);
    o->pages_sharing = ksm_snapshot_get_or(snap, KSM_FIELD_PAGES_SHARING, 0);
    o->run = ksm_snapshot_get_or(snap, KSM_FIELD_RUN, 0);
    o->pages_to_scan = ksm_snapshot_get_or(snap, KSM_FIELD_PAGES_TO_SCAN, -1);
    o->sleep_millisecs = ksm_snapshot_get_or(snap, KSM_FIELD_SLEEP_MILLISECS, -1);
    o->ksmd_cpu_s = -1;
    if (*ksmd <= 0) {
        *ksmd = ksm_ksmd_pid(ctx, NULL);
    }
    guint64 ticks;
    if (*ksmd > 0 && ksm_ksmd_cpu_ticks(ctx, *ksmd, &ticks, NULL)) {
        o->ksmd_cpu_s = (double)ticks / (double)ksm_clock_ticks_per_second();
    }
    if (with_mergeable) {
        o->mergeable_pages = mergeable_pages(ctx);
    }
    return TRUE;
}
