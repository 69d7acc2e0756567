/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ksm-fingerprint.c: sketches of processes' memory, read by the census.
 *
 * The census stays the one reader of /proc/PID/mem (its visit mode hands
 * us each run of present pages it reads); here each page is tested for
 * zero, hashed with the fleet key and offered to its process's sketch.
 * No content table, no confirmation: a sketch needs only hashes, so the
 * cost is the read and one XXH3 per page.
 *
 * Pacing (rate_mib_s): after each chunk, if the bytes read so far are ahead
 * of rate x elapsed time, sleep the difference.  Together with nice (the
 * caller's) it bounds the share of a core and of memory bandwidth the
 * fingerprint takes from the guests.
 */
#include <string.h>
#include <unistd.h>

#include <ksm/ksm.h>
#include <ksm/ksm-census.h>
#include <ksm/ksm-fingerprint.h>

typedef struct {
    const KsmFleetKey *key;
    KsmSketch **sketches;
    gsize page;
    double rate;             /* bytes per second, 0: unlimited */
    gint64 start_us;
    guint64 bytes;
    const guint8 *zero;
} Visit;

static void visit(guint target, guint64 addr, const guint8 *pages, gsize n_pages,
                  gpointer user_data)
{
    Visit *v = user_data;
    KsmSketch *s = v->sketches[target];

    for (gsize i = 0; i < n_pages; i++) {
        const guint8 *p = pages + i * v->page;
        guint64 head;
        memcpy(&head, p, sizeof(head));
        if (head == 0 && memcmp(p, v->zero, v->page) == 0) {
            s->zero_pages++;
            continue;
        }
        ksm_sketch_add(s, ksm_fleet_key_hash(v->key, p, v->page));
    }
    v->bytes += n_pages * v->page;
    if (v->rate > 0) {
        double due_us = (double)v->bytes / v->rate * 1e6;
        gint64 ahead = (gint64)due_us - (g_get_monotonic_time() - v->start_us);
        if (ahead > 1000) {
            g_usleep((gulong)ahead);
        }
    }
}

GPtrArray *ksm_fingerprint_processes(const KsmContext *ctx, const KsmFleetKey *key,
                                     const pid_t *pids, guint n_pids,
                                     const KsmFingerprintOptions *opts, double *seconds,
                                     guint64 *bytes, GError **error)
{
    gsize page = ksm_context_page_size(ctx);
    g_autofree KsmCensusTarget *targets = g_new0(KsmCensusTarget, MAX(n_pids, 1));
    g_autoptr(GPtrArray) sketches = g_ptr_array_new_with_free_func((GDestroyNotify)ksm_sketch_free);
    g_autofree guint8 *zero = g_malloc0(page);

    for (guint i = 0; i < n_pids; i++) {
        targets[i].pid = pids[i];
        g_ptr_array_add(sketches, ksm_sketch_new(opts->k ? opts->k : KSM_SKETCH_MAX_K));
    }
    Visit v = {
        .key = key,
        .sketches = (KsmSketch **)sketches->pdata,
        .page = page,
        .rate = opts->rate_mib_s * 1024 * 1024,
        .start_us = g_get_monotonic_time(),
        .zero = zero,
    };
    KsmCensusOptions co;
    ksm_census_options_init(&co);
    co.targets = targets;
    co.n_targets = n_pids;
    co.mergeable_only = opts->mergeable_only;
    co.visit = visit;
    co.visit_data = &v;

    g_autoptr(KsmCensus) census = ksm_census_run(ctx, &co, error);
    if (!census) {
        return NULL;
    }
    for (guint i = 0; i < n_pids; i++) {
        ksm_sketch_flush(g_ptr_array_index(sketches, i));
    }
    if (seconds) {
        *seconds = census->seconds;
    }
    if (bytes) {
        *bytes = v.bytes;
    }
    return g_steal_pointer(&sketches);
}
