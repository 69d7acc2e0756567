/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * R17 fork/exit race while run toggles 1 <-> 2.
 *
 * For RACE_SECONDS a "toggler" child writes run=1 and run=2 (libksm) in turns
 * every few milliseconds, so unmerge_and_remove_all_rmap_items() keeps
 * walking the mm list while mergeable processes come and go: the test keeps
 * up to MAX_LIVE short-lived children, each mapping 2 MiB (half identical
 * pages, half unique), registering it, sometimes forking a grandchild
 * (ksm_fork registers the copy), living a few milliseconds, checking its
 * pages still hold what it wrote, and exiting; some are SIGKILLed instead.
 * This is the race of seed 004 (ksm_exit() against the run=2 walker; the
 * VMA iterator on a torn-down maple tree) and of 002's "[PATCH 9/12] ksm:
 * fix oom deadlock" (__ksm_exit's easy and hard paths).
 * Asserted: every child and grandchild is reaped with the expected status
 * (no SIGSEGV/SIGBUS, no corrupted page), the toggler's writes never fail
 * unexpectedly, and the kernel log has no BUG/WARNING.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kt-harness.h"

#define RACE_SECONDS 6
#define MAX_LIVE 6
#define CHILD_LEN (2 * KT_MIB)

typedef struct {
    guint64 toggles, failures, interrupted;
    gint64 max_us;
    char last_error[200];
} ToggleResult;

static int toggler(KtChild *self, gpointer data)
{
    g_autoptr(KsmContext) ctx = ksm_context_new(NULL, NULL);
    ToggleResult r = { 0 };
    gint64 end = g_get_monotonic_time() + RACE_SECONDS * G_USEC_PER_SEC;

    kt_child_reply(self, 'r');
    kt_child_recv(self);
    while (g_get_monotonic_time() < end) {
        for (int v = KSM_RUN_MERGE; v <= KSM_RUN_UNMERGE; v++) {
            g_autoptr(GError) err = NULL;
            gint64 t0 = g_get_monotonic_time();
            if (!ksm_knob_write(ctx, KSM_FIELD_RUN, v, &err)) {
                r.failures++;
                g_strlcpy(r.last_error, err->message, sizeof(r.last_error));
            }
            r.max_us = MAX(r.max_us, g_get_monotonic_time() - t0);
            r.toggles++;
            g_usleep(3000 + g_random_int_range(0, 5000));
        }
    }
    ksm_knob_write(ctx, KSM_FIELD_RUN, KSM_RUN_MERGE, NULL);
    kt_child_reply(self, 'd');
    kt_child_write(self, &r, sizeof(r));
    kt_child_recv(self);
    return 0;
}

/* A short life with mergeable memory; exit 3 if its pages changed. */
static int short_life(guint seed, gboolean fork_one)
{
    g_autoptr(GError) err = NULL;
    gsize half = CHILD_LEN / 2;
    guint8 *p = mmap(NULL, CHILD_LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        return 4;
    }
    kt_fill_same(p, half, 0x99);
    kt_fill_unique(p + half, half, seed);
    if (!ksm_advise_mergeable(p, CHILD_LEN, &err)) {
        return 5;
    }
    pid_t gc = -1;
    if (fork_one) {
        gc = fork();
        if (gc == 0) {
            g_usleep(g_random_int_range(0, 15000));
            _exit(p[0] == 0x99 && p[half - 1] == 0x99 ? 0 : 3);
        }
    }
    g_usleep(g_random_int_range(0, 25000));
    /* write a little: COW on KSM pages while run flips */
    p[(g_random_int_range(0, CHILD_LEN / 4096)) * 4096 + 17] ^= 0;
    for (gsize i = 0; i < half; i += 4096) {
        if (p[i] != 0x99) {
            return 3;
        }
    }
    if (gc > 0) {
        int st;
        if (waitpid(gc, &st, 0) != gc || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            return 6;
        }
    }
    if (g_random_int_range(0, 4) == 0) {
        ksm_advise_unmergeable(p, CHILD_LEN, NULL);
    }
    return 0;
}

typedef struct {
    pid_t pid;
    gboolean killed;
} Live;

int main(void)
{
    kt_begin("r17-exit-race", "R17 exit race: mergeable children fork and exit in a loop while "
             "run toggles 1<->2: no WARNING/BUG in the kernel log, every child reaped",
             "seed 004, Liam R. Howlett and David Hildenbrand, \"ksm_exit() may remove the mm "
             "from the ksm_scan between the unlocking of the ksm_mmlist and the start of the VMA "
             "iteration\" (2023-03-08); seed 002, \"[PATCH 9/12] ksm: fix oom deadlock\" (2009-08-03)");

    kt_fast_scan();
    kt_settle();

    KtChild *tg = kt_child_spawn("toggler", toggler, NULL);
    if (!kt_child_expect(tg, 'r', 10000)) {
        kt_bail("the toggler did not start");
    }
    kt_child_send(tg, 'g');
    kt_note("toggling run 1<->2 every 3-8 ms for %d s while forking mergeable children "
            "(%d at a time, %zu MiB each, every 3rd forks a grandchild, every 5th is SIGKILLed)",
            RACE_SECONDS, MAX_LIVE, CHILD_LEN / KT_MIB);

    GArray *live = g_array_new(FALSE, FALSE, sizeof(Live));
    guint forked = 0, reaped = 0, killed = 0, bad = 0, grandchildren = 0;
    GString *bad_text = g_string_new(NULL);
    gint64 end = g_get_monotonic_time() + RACE_SECONDS * G_USEC_PER_SEC;
    gint64 drain_deadline = end + 20 * G_USEC_PER_SEC;

    while (g_get_monotonic_time() < drain_deadline) {
        gboolean racing = g_get_monotonic_time() < end;
        if (!racing && live->len == 0) {
            break;
        }
        while (racing && live->len < MAX_LIVE) {
            gboolean fork_one = forked % 3 == 0;
            pid_t pid = kt_fork_plain();
            if (pid < 0) {
                kt_bail("fork: %s", g_strerror(errno));
            }
            if (pid == 0) {
                prctl(PR_SET_NAME, "kt-racer");
                _exit(short_life(forked * 7919 + 1, fork_one));
            }
            Live l = { pid, FALSE };
            g_array_append_val(live, l);
            forked++;
            grandchildren += fork_one;
            if (forked % 5 == 0) {
                g_usleep(g_random_int_range(0, 5000));
                kill(pid, SIGKILL);
                g_array_index(live, Live, live->len - 1).killed = TRUE;
                killed++;
            }
        }
        for (guint i = 0; i < live->len;) {
            Live *l = &g_array_index(live, Live, i);
            int st;
            pid_t r = waitpid(l->pid, &st, WNOHANG);
            if (r == l->pid) {
                reaped++;
                gboolean ok = (WIFEXITED(st) && WEXITSTATUS(st) == 0) ||
                              (l->killed && WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
                if (!ok) {
                    bad++;
                    g_autofree char *s = kt_status_text(st);
                    g_string_append_printf(bad_text, "%s%d %s", bad_text->len ? ", " : "", l->pid, s);
                }
                g_array_remove_index_fast(live, i);
                continue;
            }
            i++;
        }
        g_usleep(1000);
    }
    for (guint i = 0; i < live->len; i++) {
        Live *l = &g_array_index(live, Live, i);
        kt_note("child %d not reaped by the deadline", l->pid);
        kt_print_stack(l->pid, "unreaped child");
        kill(l->pid, SIGKILL);
    }

    ToggleResult r = { 0 };
    gboolean tg_done = kt_child_expect(tg, 'd', 30000) && kt_child_read(tg, &r, sizeof(r), 5000);
    kt_note("children: %u forked (%u with a grandchild), %u SIGKILLed, %u reaped, %u still "
            "there, %u ended badly%s%s", forked, grandchildren, killed, reaped, live->len, bad,
            bad ? ": " : "", bad_text->str);
    kt_note("toggler: %" G_GUINT64_FORMAT " writes of run, %" G_GUINT64_FORMAT " failed, "
            "longest %.1f ms%s%s", r.toggles, r.failures, r.max_us / 1e3,
            r.failures ? "; last error: " : "", r.failures ? r.last_error : "");
    kt_ok(forked > 20, "the race ran (%u children)", forked);
    kt_ok(live->len == 0 && reaped == forked, "every child was reaped (%u of %u)", reaped, forked);
    kt_ok(bad == 0, "every child exited cleanly or by our SIGKILL, pages intact (%u bad)", bad);
    kt_ok(tg_done, "the toggler finished");
    kt_ok(tg_done && r.toggles > 50, "run was toggled %" G_GUINT64_FORMAT " times", r.toggles);
    kt_ok(r.failures == 0, "no run write failed (%" G_GUINT64_FORMAT ")", r.failures);
    g_array_free(live, TRUE);
    g_string_free(bad_text, TRUE);

    g_autoptr(KsmSnapshot) s = kt_snap();
    kt_print_snap("after the race", s);
    kt_dmesg_check("after the race");
    kt_child_send(tg, 'x');
    kt_child_reap(tg, 5000);
    return kt_finish();
}
