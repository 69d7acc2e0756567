/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * R7 classification: unique pages are "unshared", pages rewritten all the
 * time are "volatile".
 *
 * Child U registers 16 MiB of pages that are all different: once ksmd has
 * seen each twice with the same checksum they wait in the unstable tree
 * (pages_unshared).  Child V registers 8 MiB and rewrites a word of every
 * page about every millisecond: its checksum never holds still, so its
 * rmap_items stay outside both trees (pages_volatile = rmap_items - shared -
 * sharing - unshared).  Neither child has a single merged page.
 * smart_scan is turned off for the test so skipped pages do not blur it.
 */
#include <poll.h>
#include <string.h>
#include <unistd.h>

#include "kt-harness.h"

#define LEN_UNIQUE (16 * KT_MIB)
#define LEN_VOLATILE (8 * KT_MIB)

static int volatile_child(KtChild *self, gpointer data)
{
    gsize len = LEN_VOLATILE, ps = (gsize)sysconf(_SC_PAGESIZE);
    g_autoptr(GError) err = NULL;
    guint8 *addr = kt_map_anon(len);

    if (!addr) {
        kt_child_reply(self, 'E');
        return 1;
    }
    kt_fill_unique(addr, len, 77);
    if (!ksm_advise_mergeable(addr, len, &err)) {
        kt_child_reply(self, 'E');
        return 1;
    }
    kt_child_reply(self, 'r');
    kt_child_write(self, &addr, sizeof(addr));
    /* Rewrite until told to stop (or the parent goes: PDEATHSIG). */
    for (guint64 gen = 1; gen < G_MAXUINT64; gen++) {
        for (gsize off = 0; off < len; off += ps) {
            *(volatile guint64 *)(addr + off + 8) = gen;
        }
        struct pollfd pfd = { .fd = self->cmd_fd, .events = POLLIN };
        if (poll(&pfd, 1, 1) > 0) {
            return 0;
        }
    }
    return 0;
}

int main(void)
{
    kt_begin("r7-classify", "R7 classification: unique pages -> pages_unshared; "
             "pages rewritten continuously -> pages_volatile",
             "seed 002, Hugh Dickins, \"[PATCH 3/12] ksm: pages_unshared and pages_volatile\" "
             "(2009-08-03)");
    kt_require_exact_counts();

    const gint64 nu = LEN_UNIQUE / kt->page_size, nv = LEN_VOLATILE / kt->page_size;

    kt_fast_scan();
    kt_set("smart_scan=0", NULL);
    g_autoptr(KsmSnapshot) before = kt_settle();

    KtMemSpec spec = { .len = LEN_UNIQUE, .fill = KT_FILL_UNIQUE, .seed = 4242,
                       .mergeable = TRUE };
    KtMem *u = kt_mem_spawn("unique", &spec);

    KtChild *v = kt_child_spawn("volatile", volatile_child, NULL);
    void *vaddr = NULL;
    if (!kt_child_expect(v, 'r', 30000) || !kt_child_read(v, &vaddr, sizeof(vaddr), 5000)) {
        kt_bail("the volatile child did not start");
    }
    kt_note("volatile: pid %d rewrites %" G_GINT64_FORMAT " pages at %p every ~1 ms",
            v->pid, nv, vaddr);

    /* pass 1 records checksums, pass 2 puts steady pages in the unstable tree */
    kt_wait_scans(3, 60000);
    g_autoptr(KsmSnapshot) after = kt_snap();
    kt_print_snap("after 3 scans", after);

    KtProcKsm pu, pv;
    kt_proc_ksm(u->c->pid, &pu);
    kt_proc_ksm(v->pid, &pv);
    gint64 xu = kt_range_ksm_pages(u->c->pid, u->addr, u->len);
    gint64 xv = kt_range_ksm_pages(v->pid, vaddr, LEN_VOLATILE);
    gint64 d_unshared = kt_get(after, KSM_FIELD_PAGES_UNSHARED) -
                        kt_get(before, KSM_FIELD_PAGES_UNSHARED);
    gint64 d_volatile = kt_get(after, KSM_FIELD_PAGES_VOLATILE) -
                        kt_get(before, KSM_FIELD_PAGES_VOLATILE);
    gint64 d_merged = kt_get(after, KSM_FIELD_PAGES_SHARED) + kt_get(after, KSM_FIELD_PAGES_SHARING) -
                      kt_get(before, KSM_FIELD_PAGES_SHARED) - kt_get(before, KSM_FIELD_PAGES_SHARING);
    kt_note("unique child: rmap_items=%" G_GINT64_FORMAT " merging=%" G_GINT64_FORMAT
            " KSM pages in range=%" G_GINT64_FORMAT " (of %" G_GINT64_FORMAT ")",
            pu.rmap_items, pu.merging_pages, xu, nu);
    kt_note("volatile child: rmap_items=%" G_GINT64_FORMAT " merging=%" G_GINT64_FORMAT
            " KSM pages in range=%" G_GINT64_FORMAT " (of %" G_GINT64_FORMAT ")",
            pv.rmap_items, pv.merging_pages, xv, nv);
    kt_note("global deltas: pages_unshared %+" G_GINT64_FORMAT ", pages_volatile %+"
            G_GINT64_FORMAT ", shared+sharing %+" G_GINT64_FORMAT, d_unshared, d_volatile, d_merged);

    kt_ok(pu.rmap_items >= nu - nu / 50, "every unique page is tracked: rmap_items %"
          G_GINT64_FORMAT " >= %" G_GINT64_FORMAT, pu.rmap_items, nu - nu / 50);
    kt_ok(pv.rmap_items >= nv - nv / 50, "every volatile page is tracked: rmap_items %"
          G_GINT64_FORMAT " >= %" G_GINT64_FORMAT, pv.rmap_items, nv - nv / 50);
    kt_ok(pu.merging_pages == 0 && pv.merging_pages == 0 && xu <= 0 && xv <= 0,
          "nothing of either child merged (merging %" G_GINT64_FORMAT "/%" G_GINT64_FORMAT
          ", KSM pages %" G_GINT64_FORMAT "/%" G_GINT64_FORMAT ")",
          pu.merging_pages, pv.merging_pages, xu, xv);
    if (kt_global_ok("pages_unshared/pages_volatile deltas")) {
        kt_ok(d_unshared >= nu * 9 / 10, "pages_unshared rose by %" G_GINT64_FORMAT
              " >= 90%% of the %" G_GINT64_FORMAT " unique pages", d_unshared, nu);
        kt_ok(d_unshared <= nu + nv / 10 + nu / 50, "the rewritten pages are not counted as unshared "
              "(pages_unshared delta %" G_GINT64_FORMAT " <= %" G_GINT64_FORMAT ")",
              d_unshared, nu + nv / 10 + nu / 50);
        kt_ok(d_volatile >= nv / 2, "pages_volatile rose by %" G_GINT64_FORMAT " >= half of the %"
              G_GINT64_FORMAT " rewritten pages", d_volatile, nv);
        kt_ok(d_volatile <= nv + nu / 10 + nv / 50, "the unique pages are not counted as volatile "
              "(pages_volatile delta %" G_GINT64_FORMAT " <= %" G_GINT64_FORMAT ")",
              d_volatile, nv + nu / 10 + nv / 50);
    }

    kt_child_send(v, 'x');
    kt_ok(kt_child_reap(v, 10000), "volatile child exits when asked");
    kt_mem_free(u);
    kt_child_free(v);
    return kt_finish();
}
