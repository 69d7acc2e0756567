/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * kt-harness.h: the kernel behaviour suite's common frame.
 *
 * Every test is one executable that:
 *   - skips (exit 77, reason printed) when KSM is absent or not writable;
 *   - takes the samepage host lock, saves every KSM knob (ksm_knobs_save) to
 *     /run/samepage/kernel-<test>.knobs and restores it at the end, also on
 *     failure; a guardian process (own session, so meson's process-group kill
 *     misses it) restores knobs and removes the test's cgroups if the test
 *     dies (timeout, SIGTERM, abort, crash);
 *   - prints TAP-like lines: "# " notes say what was set up, waited for and
 *     observed; "ok N - ..." / "not ok N - ..." are the assertions;
 *   - scans the kernel log written since it started: BUG:, WARNING:,
 *     hung_task, "blocked for more than", "unable to reap" fail the test
 *     (lines printed); OOM kills are recorded.
 *
 * Every KSM interaction goes through libksm; this file only does what is not
 * a KSM interface (processes, pipes, cgroups, the kernel log).
 */
#ifndef KT_HARNESS_H
#define KT_HARNESS_H

#include <glib.h>
#include <stdio.h>
#include <sys/types.h>
#include <ksm/ksm.h>

G_BEGIN_DECLS

#define KT_MIB ((gsize)1024 * 1024)
#define KT_STATE_DIR "/run/samepage"

typedef struct KtCgroup KtCgroup;
typedef struct KtDmesg KtDmesg;

typedef struct {
    const char *name;        /* "r6-merge" */
    KsmContext *ctx;
    gsize page_size;
    KsmKnobState *saved;
    char *state_path;
    KsmHostLock *lock;
    KtDmesg *dmesg;
    int guardian_fd;
    pid_t guardian_pid;
    gint64 t0_us;
    guint checks;
    guint failed;
    GPtrArray *children;     /* KtChild* still to kill and reap at the end */
    GPtrArray *cgroups;      /* KtCgroup* to remove at the end */
    GPtrArray *files;        /* KtSavedFile* (non-KSM settings) to put back */
    GPtrArray *oom_kills;    /* "pid comm" strings from the kernel log */
    /* "unable to reap" is the kernel's answer this scenario is about (R15):
     * record it as a finding instead of failing.  Hung tasks still fail. */
    gboolean reap_failure_is_finding;
    guint reap_findings;
    gboolean finished;
    guint others_at_settle;  /* other processes with KSM state at kt_settle */
} Kt;

/* The one test of this process. */
extern Kt *kt;

/*
 * Start: print the header, skip (77) without KSM or root, take the host lock,
 * save the knobs, start the guardian, mark the kernel log.
 */
void kt_begin(const char *name, const char *title, const char *seed);
/* Clean up (children, cgroups, files, knobs), check the kernel log, summary. */
int kt_finish(void);
G_NORETURN void kt_skip(const char *fmt, ...) G_GNUC_PRINTF(1, 2);
/* A fatal problem: print it, clean up, exit 1. */
G_NORETURN void kt_bail(const char *fmt, ...) G_GNUC_PRINTF(1, 2);

void kt_note(const char *fmt, ...) G_GNUC_PRINTF(1, 2);
/* One assertion: "ok N - what" or "not ok N - what". Returns cond. */
gboolean kt_ok(gboolean cond, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
/* A check that cannot be made here: "ok N # SKIP reason" (not a failure). */
void kt_skip_check(const char *fmt, ...) G_GNUC_PRINTF(1, 2);
/* Seconds since kt_begin. */
double kt_elapsed(void);

/* ---- KSM through libksm ---- */

/* ksm_knobs_set with "name=value" strings (NULL-terminated); bails on error.
 * Knobs this kernel lacks are left out with a note. */
void kt_set(const char *first, ...) G_GNUC_NULL_TERMINATED;
/* advisor_mode=none, pages_to_scan=10000, sleep_millisecs=10 (run untouched). */
void kt_fast_scan(void);
gint64 kt_read(KsmField field);
KsmSnapshot *kt_snap(void);
/* "# label: run=1 shared=.. sharing=.. unshared=.. volatile=.. full_scans=.." */
void kt_print_snap(const char *label, const KsmSnapshot *s);
gint64 kt_get(const KsmSnapshot *s, KsmField field);
/* ksm_wait_full_scans with a note of what was waited for and how long it took. */
gboolean kt_wait_scans(gint64 scans, gint64 timeout_ms);
/*
 * Wait until full_scans advanced by `scans`, or ksmd went idle (run=1 but
 * pages_scanned, or without it full_scans, flat for a while: nothing left
 * registered, e.g. after the last mergeable process exited and ksmd dropped
 * its slot).  FALSE only at the deadline.
 */
gboolean kt_wait_scans_or_idle(gint64 scans, gint64 timeout_ms);
/*
 * run=1 and let ksmd digest what is already there (metadata of processes
 * that exited while run was 0, other mergeable processes) so a baseline
 * taken afterwards is steady: 2 full scans, or idle.  Returns the baseline.
 */
KsmSnapshot *kt_settle(void);
/*
 * May a global counter be asserted on?  TRUE when no other process had KSM
 * state when the test settled nor has it now; otherwise prints
 * "ok N # SKIP <what>: ..." with the list and returns FALSE.
 */
gboolean kt_global_ok(const char *what);
/* rmap_items from the counters: shared + sharing + unshared + volatile. */
gint64 kt_rmap_items(const KsmSnapshot *s);

/* Per process: ksm_stat figures (-1 if unreadable) and the exact KSM pages
 * of a range (ksm_range_count; -1 with a note if unavailable). */
typedef struct {
    gint64 rmap_items, merging_pages, zero_pages, profit;
    int mergeable;
} KtProcKsm;
gboolean kt_proc_ksm(pid_t pid, KtProcKsm *out);
gint64 kt_range_ksm_pages(pid_t pid, const void *addr, gsize len);
/*
 * For scenarios whose checks count KSM pages exactly (kt_range_ksm_pages):
 * skip the scenario, naming why, where the kernel's /proc/kpageflags cannot
 * tell a KSM page (KPF_KSM set on a private page that was never mergeable).
 * Call right after kt_begin.
 */
void kt_require_exact_counts(void);
/* Mergeable bytes of a range according to smaps (-1 on error). */
gint64 kt_range_mergeable_bytes(pid_t pid, const void *addr, gsize len);

/*
 * Other processes on the host with KSM state (registered areas, merge-any or
 * rmap_items), excluding this test and its children.  Returns how many and
 * fills *desc ("pid(comm) rmap_items=N merging=N, ...") when not NULL.
 */
guint kt_other_mergeable(char **desc);

/* ---- polling ---- */
typedef gboolean (*KtPollFunc)(gpointer data);
/* Call fn every interval_ms until it returns TRUE or timeout_ms passes. */
gboolean kt_poll(KtPollFunc fn, gpointer data, gint64 timeout_ms, gint64 interval_ms);

/* ---- child processes ---- */
typedef struct KtChild KtChild;
typedef int (*KtChildFunc)(KtChild *self, gpointer data);

struct KtChild {
    pid_t pid;
    char *label;
    int cmd_fd;      /* parent: write end; child: read end */
    int rep_fd;      /* parent: read end; child: write end */
    gboolean reaped;
    int status;
    gint64 reaped_us;
};

/*
 * fork(): the child gets PR_SET_PDEATHSIG(SIGKILL) (so it never outlives the
 * test), closes the test's private descriptors, runs fn and _exit()s with its
 * return value.  The parent registers it for kill-and-reap at the end.
 */
KtChild *kt_child_spawn(const char *label, KtChildFunc fn, gpointer data);
/* Parent side. */
gboolean kt_child_send(KtChild *c, char cmd);
/* Wait for one reply byte; FALSE on timeout or if the child went away. */
gboolean kt_child_expect(KtChild *c, char want, gint64 timeout_ms);
/* Read a reply buffer of exactly len bytes (child -> parent data). */
gboolean kt_child_read(KtChild *c, void *buf, gsize len, gint64 timeout_ms);
/* Poll waitpid until reaped or timeout (then FALSE; the state and kernel
 * stack of a stuck child are printed). */
gboolean kt_child_reap(KtChild *c, gint64 timeout_ms);
void kt_child_kill(KtChild *c);
/* "exited 0", "killed by SIGKILL", ... (static buffer per call site not needed: g_free) */
char *kt_status_text(int status);
gboolean kt_pid_alive(pid_t pid);
/* The one-letter state from /proc/PID/stat ('?' if gone). */
char kt_pid_state(pid_t pid);
/* Print /proc/PID/stack and wchan (for a stuck process). */
void kt_print_stack(pid_t pid, const char *label);
void kt_child_free(KtChild *c);

/* Child side. */
char kt_child_recv(KtChild *self);          /* blocks; EOF -> _exit(0) */
void kt_child_reply(KtChild *self, char msg);
void kt_child_write(KtChild *self, const void *buf, gsize len);

/* Fill [addr, addr+len) so every page has the same non-zero content, or
 * content unique to (seed, page index). */
void kt_fill_same(void *addr, gsize len, guint8 byte);
void kt_fill_unique(void *addr, gsize len, guint64 seed);
/* mmap private anonymous memory (bails on failure). */
void *kt_map_anon(gsize len);

/* ---- a child holding memory (kt-memchild.c) ---- */
typedef enum { KT_FILL_SAME, KT_FILL_UNIQUE } KtFill;

typedef struct {
    gsize len;
    KtFill fill;
    guint8 byte;           /* KT_FILL_SAME: every page filled with it */
    guint64 seed;          /* KT_FILL_UNIQUE: two children with one seed hold equal pages */
    gboolean mergeable;    /* madvise(MADV_MERGEABLE) through libksm after the fill */
    gboolean hugepage;     /* madvise(MADV_HUGEPAGE) before the fill */
    const char *cgroup;    /* join this cgroup before mapping (NULL: stay) */
} KtMemSpec;

#define KT_COMMON_SEED G_GUINT64_CONSTANT(0xc0ffee5eed)

typedef struct {
    KtChild *c;
    void *addr;
    gsize len;
} KtMem;

/*
 * Fork a child that maps spec->len, fills it, advises it and reports its
 * address.  Commands (the reply is the same letter, or 'E' on failure):
 *   'w' rewrite every page with new content unique to this process (breaks
 *       COW on KSM pages; never equal to another child's rewrite)
 *   'c' rewrite every page with content common to every child that gets 'c'
 *       (kt_fill_unique with KT_COMMON_SEED)
 *   'u' MADV_UNMERGEABLE over the range, 'm' MADV_MERGEABLE
 *   'x' exit 0
 */
KtMem *kt_mem_spawn(const char *label, const KtMemSpec *spec);
/* Send cmd and wait for its reply; FALSE (with a note) on 'E' or timeout. */
gboolean kt_mem_cmd(KtMem *m, char cmd, gint64 timeout_ms);
/* Wait until the child's ksm_stat merging pages reach want (deadline);
 * returns the last figure seen. */
gint64 kt_mem_wait_merging(KtMem *m, gint64 want, gint64 timeout_ms);
void kt_mem_free(KtMem *m);

/* fork() with PDEATHSIG and the test's descriptors closed in the child;
 * not registered: the caller reaps it. */
pid_t kt_fork_plain(void);

/* ---- non-KSM host settings a test changes (THP/khugepaged files) ---- */
/* Save path's text, write value; restored at the end and by the guardian. */
gboolean kt_file_set(const char *path, const char *value);

/* ---- slab figures (R18) ---- */
/* active_objs of a cache in /proc/slabinfo after shrinking it (so per-CPU
 * slabs do not count as in use); -1 if not listed/readable. */
gint64 kt_slab_active(const char *cache);

/* ---- the guardian ---- */
void kt_guardian_send(const char *fmt, ...) G_GNUC_PRINTF(1, 2);

/* ---- kernel log (kt-dmesg.c) ---- */
KtDmesg *kt_dmesg_open(const char *marker, GError **error);
/* Lines logged since the last call (message text, "[sec.usec] " prefixed). */
GPtrArray *kt_dmesg_read_new(KtDmesg *d);
void kt_dmesg_free(KtDmesg *d);
/* The bad pattern a line contains, or NULL. */
const char *kt_dmesg_bad_pattern(const char *line);
/* "Killed process 123 (name)" / "oom-kill:...,task=name,pid=123": TRUE and the pid. */
gboolean kt_dmesg_oom_victim(const char *line, pid_t *pid, char **comm);
/* Check the log now: bad lines fail (printed), OOM kills recorded in kt->oom_kills.
 * Returns the number of bad lines. */
guint kt_dmesg_check(const char *when);
/* Pids the OOM killer reported since the test began (from the log). */
GArray *kt_oom_victims(void);

/* ---- memory cgroups (kt-cgroup.c) ---- */
/* Can a memory cgroup be made here?  FALSE with the reason. */
gboolean kt_cgroup_supported(char **reason);
/* Skip the test (77) when no memory cgroup can be made. */
void kt_require_cgroup(void);
KtCgroup *kt_cgroup_create(guint64 limit_bytes, GError **error);
const char *kt_cgroup_path(const KtCgroup *cg);
int kt_cgroup_version(const KtCgroup *cg);
gboolean kt_cgroup_set_limit(KtCgroup *cg, guint64 bytes, GError **error);
/* From inside a child: move the calling process into the cgroup. */
gboolean kt_cgroup_enter(const char *path, GError **error);
gboolean kt_cgroup_add_pid(KtCgroup *cg, pid_t pid, GError **error);
gint64 kt_cgroup_usage(KtCgroup *cg);
gint64 kt_cgroup_limit(KtCgroup *cg);
/* oom_kill count (v1 memory.oom_control, v2 memory.events); -1 unknown. */
gint64 kt_cgroup_oom_kills(KtCgroup *cg);
/* Pids in cgroup.procs. */
GArray *kt_cgroup_pids(const char *path);
gboolean kt_cgroup_contains(KtCgroup *cg, pid_t pid);
/* Kill what is left, wait until empty, rmdir (deadline). */
gboolean kt_cgroup_destroy(KtCgroup *cg, gint64 timeout_ms, GError **error);
/* The same on a path (the guardian, kernel-restore). */
gboolean kt_cgroup_remove_path(const char *path, gint64 timeout_ms, GError **error);
/* Directories named samepage-test-* under the memory hierarchies (leftovers). */
GPtrArray *kt_cgroup_leftovers(void);

G_END_DECLS

#endif
