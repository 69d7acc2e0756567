/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * R18 no metadata leak: with run=0, mergeable processes that exit leave
 * their KSM metadata (mm_slot, rmap_items, and a reference on mm_struct)
 * allocated until ksmd runs again or run=2; after run=2 it is back to the
 * baseline.
 *
 * NCHILD children each register 1 MiB (half of them identical pages, half
 * unique) and are scanned; then run=0, every child is SIGKILLed and reaped.
 * Measured: rmap_items (shared + sharing + unshared + volatile), and where
 * /proc/slabinfo lists them the active objects of mm_struct, ksm_rmap_item
 * and ksm_mm_slot, each read after writing 1 to /sys/kernel/slab/<cache>/shrink
 * so per-CPU slabs do not count as in use (SLUB often merges the two KSM caches into a generic one:
 * then only the counters and mm_struct are used).  Asserted: the metadata is
 * still held after the exits (the documented run=0 behaviour: "a host that
 * stops KSM should use run=2"), and run=2 brings rmap_items to 0 and
 * mm_struct back to its baseline (tolerance: other processes on the host
 * come and go).
 */
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include "kt-harness.h"

#define NCHILD 64
#define CHILD_LEN KT_MIB

static gint64 slab_median(const char *cache)
{
    gint64 v[5];
    for (int i = 0; i < 5; i++) {
        v[i] = kt_slab_active(cache);
        if (v[i] < 0) {
            return -1;
        }
        g_usleep(40 * 1000);
    }
    /* insertion sort, take the middle */
    for (int i = 1; i < 5; i++) {
        for (int j = i; j > 0 && v[j] < v[j - 1]; j--) {
            gint64 t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
    }
    return v[2];
}

typedef struct {
    gint64 rmap, mm_struct, rmap_slab, slot_slab;
} Figures;

static Figures measure(const char *label)
{
    g_autoptr(KsmSnapshot) s = kt_snap();
    Figures f = { kt_rmap_items(s), slab_median("mm_struct"), slab_median("ksm_rmap_item"),
                  slab_median("ksm_mm_slot") };
    kt_print_snap(label, s);
    kt_note("%s: rmap_items=%" G_GINT64_FORMAT " slab mm_struct=%" G_GINT64_FORMAT
            " ksm_rmap_item=%" G_GINT64_FORMAT " ksm_mm_slot=%" G_GINT64_FORMAT " (-1: not listed)",
            label, f.rmap, f.mm_struct, f.rmap_slab, f.slot_slab);
    return f;
}

int main(void)
{
    kt_begin("r18-no-leak", "R18 no leak: with run=0 many mergeable processes exit; after run=2 "
             "the mm_struct/rmap metadata returns to baseline",
             "seed 002, Hugh Dickins, \"[PATCH 9/12] ksm: fix oom deadlock\" (2009-08-03): \"when "
             "ksmd is not running, the raised mm_count would otherwise leak mm_structs\"");

    const gint64 per_child = CHILD_LEN / kt->page_size;
    const gint64 total = NCHILD * per_child;
    const gint64 mm_tol = NCHILD / 2;

    if (kt_slab_active("mm_struct") < 0) {
        kt_note("/proc/slabinfo has no mm_struct line (or is not readable): only the KSM "
                "counters are checked");
    }
    kt_fast_scan();
    kt_settle();
    Figures f0 = measure("baseline");

    KtMem *kids[NCHILD];
    for (int i = 0; i < NCHILD; i++) {
        KtMemSpec spec = { .len = CHILD_LEN, .fill = i % 2 ? KT_FILL_UNIQUE : KT_FILL_SAME,
                           .byte = 0x18, .seed = 1800 + i, .mergeable = TRUE };
        g_autofree char *label = g_strdup_printf("child%02d", i);
        kids[i] = kt_mem_spawn(label, &spec);
    }
    kt_note("%d children registered %" G_GINT64_FORMAT " pages in all", NCHILD, total);
    kt_wait_scans(3, 60000);
    Figures f1 = measure("scanned, run=1");
    if (kt_global_ok("rmap_items delta while the children live")) {
        kt_ok(f1.rmap - f0.rmap >= total * 9 / 10, "ksmd tracks the children's pages (rmap_items "
              "%+" G_GINT64_FORMAT ", %" G_GINT64_FORMAT " registered)", f1.rmap - f0.rmap, total);
    }

    kt_set("run=0", NULL);
    for (int i = 0; i < NCHILD; i++) {
        kill(kids[i]->c->pid, SIGKILL);
    }
    guint reaped = 0;
    for (int i = 0; i < NCHILD; i++) {
        reaped += kt_child_reap(kids[i]->c, 10000);
    }
    kt_ok(reaped == NCHILD, "all %d children killed and reaped with run=0 (%u)", NCHILD, reaped);
    g_usleep(300 * 1000);
    Figures f2 = measure("children gone, run=0");
    if (kt_global_ok("rmap_items held after the exits")) {
        kt_ok(f2.rmap - f0.rmap >= total * 9 / 10,
              "with run=0 the exited children's rmap_items stay allocated (%+" G_GINT64_FORMAT
              "): the documented reason to stop KSM with run=2", f2.rmap - f0.rmap);
    }
    if (f0.mm_struct >= 0) {
        kt_ok(f2.mm_struct - f0.mm_struct >= NCHILD / 2,
              "with run=0 their mm_structs stay allocated too: %+" G_GINT64_FORMAT
              " objects for %d exited children (KSM's mm_slot holds mm_count)",
              f2.mm_struct - f0.mm_struct, NCHILD);
    }

    gint64 t0 = g_get_monotonic_time();
    g_autoptr(GError) err = NULL;
    gboolean ok = ksm_knob_write(kt->ctx, KSM_FIELD_RUN, KSM_RUN_UNMERGE, &err);
    kt_ok(ok, "run=2 written in %.1f ms%s%s", (g_get_monotonic_time() - t0) / 1e3, ok ? "" : ": ",
          ok ? "" : err->message);
    g_usleep(300 * 1000);
    Figures f3 = measure("after run=2");
    kt_ok(f3.rmap == 0, "run=2 freed every rmap_item (%" G_GINT64_FORMAT ")", f3.rmap);
    if (f0.mm_struct >= 0) {
        kt_ok(f3.mm_struct - f0.mm_struct <= mm_tol,
              "mm_struct objects back to the baseline: %+" G_GINT64_FORMAT " (tolerance %"
              G_GINT64_FORMAT "; %+" G_GINT64_FORMAT " while held)", f3.mm_struct - f0.mm_struct,
              mm_tol, f2.mm_struct - f0.mm_struct);
    } else {
        kt_skip_check("mm_struct is not in /proc/slabinfo");
    }
    if (f0.rmap_slab >= 0) {
        kt_ok(f3.rmap_slab - f0.rmap_slab <= total / 10, "ksm_rmap_item slab back to the "
              "baseline (%+" G_GINT64_FORMAT ")", f3.rmap_slab - f0.rmap_slab);
    } else {
        kt_note("ksm_rmap_item and ksm_mm_slot are not listed in /proc/slabinfo (SLUB merged "
                "them into generic caches): rmap_items from the counters stands in");
    }

    for (int i = 0; i < NCHILD; i++) {
        kt_mem_free(kids[i]);
    }
    kt_set("run=1", NULL);
    return kt_finish();
}
