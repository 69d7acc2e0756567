/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * hook.h: what the files of the samepage libvirt hook share.
 *
 * The hook is /etc/libvirt/hooks/qemu.d/samepage-ksm.  libvirtd runs it as
 *   samepage-ksm DOMAIN_NAME OPERATION SUB_OPERATION EXTRA
 * with the domain XML on stdin, for every QEMU domain event.  It never calls
 * back into libvirt (libvirtd holds locks while hooks run: a call back would
 * deadlock), touches KSM only through libksm, and returns within its bound.
 *
 * Files:
 *   ksm-hook.c    main: arguments, environment, dispatch
 *   config.c      /etc/samepage/ksm.conf (GKeyFile)
 *   policy.c      the domain's policy from its XML (libxml2; the one reader)
 *   memory.c      the guest's memory size from its XML
 *   migrate.c     an incoming migration: does the guest fit (headroom)
 *   state.c       one file per running mergeable domain under /run/samepage/hook
 *   qemu-pid.c    which QEMU process runs a domain (libvirt's pid file), for stale state
 *   trust.c       may root read, run or append to this path (owners, modes, links)
 *   ksmtuned.c    is Debian's ksmtuned running (it would fight the hook over KSM)
 *   lifecycle.c   the decision for each libvirt operation
 *   daemon.c      the repair at libvirtd's start (daemon.d/samepage-ksm)
 *   reconcile.c   bringing KSM in line with the state, inline or detached
 *   tune.c        scan=tune: the detached `samepage tune` for the guests' lifetime
 *   log.c         one line per decision: syslog, stderr, optional file
 */
#ifndef SAMEPAGE_HOOK_H
#define SAMEPAGE_HOOK_H

#include <glib.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <ksm/ksm.h>
#include <ksm/ksm-unmerge.h>

/* The XML namespace of the policy element in <metadata>. */
#define HOOK_XMLNS "https://samepage.invalid/xmlns/ksm/1"
#define HOOK_NAME "samepage-ksm"

/* Defaults; tests (never libvirtd, which passes no such variables to hooks)
 * move them with the environment variables named beside them. */
#define HOOK_CONFIG_PATH "/etc/samepage/ksm.conf"   /* SAMEPAGE_HOOK_CONFIG */
#define HOOK_STATE_DIR "/run/samepage/hook"          /* SAMEPAGE_HOOK_STATE_DIR */
/* Where libvirtd keeps each running QEMU's pid file (NAME.pid, root's) and
 * status XML (NAME.xml). */
#define HOOK_LIBVIRT_RUN_DIR "/run/libvirt/qemu"     /* SAMEPAGE_LIBVIRT_RUN_DIR */
/* SAMEPAGE_SYSFS_ROOT, SAMEPAGE_PROCFS_ROOT: a fake /sys and /proc.
 * SAMEPAGE_LOCK: the host lock file (read by libksm itself).
 * SAMEPAGE_HOOK_SYSLOG=0: do not log to syslog. */

/* Errors of the hook's own (policy, state): messages are for the operator. */
#define HOOK_ERROR (hook_error_quark())
GQuark hook_error_quark(void);
enum {
    HOOK_ERROR_FAILED = 0,
    HOOK_ERROR_NOENT,       /* the path (or a directory on the way) does not exist */
    HOOK_ERROR_UNTRUSTED,   /* owner, mode, type or link refused */
};

/* Exit statuses.  libvirt aborts a start when prepare exits non-zero and puts
 * our stderr in the error it reports (virsh shows it). */
enum { HOOK_EXIT_OK = 0, HOOK_EXIT_REFUSE = 1, HOOK_EXIT_USAGE = 2 };

/* log.c ------------------------------------------------------------------- */

typedef enum { HOOK_LOG_DEBUG, HOOK_LOG_INFO, HOOK_LOG_WARNING, HOOK_LOG_ERROR } HookLogLevel;

void hook_log_open(gboolean use_syslog);
void hook_log_set_level(HookLogLevel level);
/* Also append each line to this file (NULL: none). */
void hook_log_set_file(const char *path);
/* Stop writing to stderr (the detached child has none). */
void hook_log_set_stderr(gboolean on);
/* The domain the current invocation is about, prefixed to each line (quoted). */
void hook_log_set_domain(const char *name, const char *uuid);
void hook_log(HookLogLevel level, const char *format, ...) G_GNUC_PRINTF(2, 3);
/*
 * The same, to the host's log only (syslog, log_file), never stderr: libvirt
 * hands a failing hook's stderr to the client starting the guest, who must
 * not learn other tenants' guests or trust groups from it.
 */
void hook_log_host(HookLogLevel level, const char *format, ...) G_GNUC_PRINTF(2, 3);
/* A whole line made safe: control characters and invalid UTF-8 escaped
 * (\xNN, \uNNNN), everything else kept.  Every line the hook writes goes
 * through it, whatever a message quoted (libxml2 and GKeyFile errors repeat
 * input bytes). */
char *hook_log_sanitize(const char *line);
gboolean hook_log_level_parse(const char *text, HookLogLevel *level);
/*
 * A name made safe for one log line: printable UTF-8 is kept, control
 * characters, backslashes and quotes are escaped, and it is cut at 200
 * characters.  Domain names come from users and may hold anything libvirt
 * accepts.
 */
char *hook_quote(const char *text);

/* config.c ---------------------------------------------------------------- */

typedef enum { HOOK_POLICY_STRICT, HOOK_POLICY_PERMISSIVE } HookHostPolicy;
typedef enum { HOOK_SCAN_MANUAL, HOOK_SCAN_ADVISOR, HOOK_SCAN_TUNE } HookScanMode;

typedef struct {
    HookHostPolicy policy;
    HookScanMode scan_mode;
    gint64 pages_to_scan;            /* manual */
    gint64 sleep_millisecs;
    gint64 advisor_max_cpu;          /* advisor; -1: the kernel's */
    gint64 advisor_target_scan_time;
    gint64 smart_scan;               /* 0 off, 1 on, -1 keep the host's */
    char *cli_path;                  /* scan=tune runs "<cli_path> tune" */
    guint64 reserve_mib;             /* unmerge headroom reserve */
    gboolean migrate_check;          /* refuse an incoming guest that does not fit */
    guint64 migrate_margin_mib;      /* QEMU's own memory beside the guest's RAM */
    gint64 unmerge_deadline_s;
    gint64 lock_timeout_ms;          /* how long a hook invocation waits for the host lock */
    HookLogLevel log_level;
    char *log_file;                  /* NULL: syslog and stderr only */
    char *path;                      /* where it was read from */
    gboolean from_file;              /* FALSE: the file is missing, defaults */
} HookConfig;

void hook_config_init(HookConfig *cfg);
/* A missing file gives the defaults; a bad value is an error naming file and key. */
gboolean hook_config_load(HookConfig *cfg, const char *path, GError **error);
void hook_config_clear(HookConfig *cfg);
const char *hook_policy_name(HookHostPolicy policy);
const char *hook_scan_mode_name(HookScanMode mode);
/* The file the installer writes when there is none. */
extern const char hook_config_default_text[];

/* policy.c ---------------------------------------------------------------- */

typedef struct {
    char *name;              /* <name>, as libvirt has it */
    char *uuid;              /* <uuid>, validated and lower-cased */
    gboolean nosharepages;   /* <memoryBacking><nosharepages/> */
    gboolean has_policy;     /* a <ksm:policy> element is present */
    int merge;               /* -1 not said, 0 no, 1 yes */
    char *group;             /* trust group; "default" when not said */
    gboolean mergeable;      /* the outcome: will this guest's memory merge */
    GPtrArray *warnings;     /* char*: things worth a log line, not a refusal */
} HookPolicy;

void hook_policy_init(HookPolicy *p);
void hook_policy_clear(HookPolicy *p);
/*
 * Parse the domain XML libvirt gave us.  Refusals (malformed XML, an unknown
 * attribute or value, merge="yes" with <nosharepages/>, merge="no" without
 * it, a bad group name) are errors whose message names what is wrong.
 */
gboolean hook_policy_parse(const char *xml, gsize len, HookPolicy *p, GError **error);
/* Only the UUID and name, for operations that must not fail (stopped, release). */
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(HookPolicy, hook_policy_clear)
gboolean hook_policy_identify(const char *xml, gsize len, HookPolicy *p, GError **error);
gboolean hook_uuid_normalize(const char *text, char out[37]);
gboolean hook_group_valid(const char *group);

/* memory.c ---------------------------------------------------------------- */

typedef struct {
    guint64 memory_bytes;    /* <memory>: the guest's RAM, what it arrives with */
    guint64 current_bytes;   /* <currentMemory> (balloon target), <= memory_bytes */
    gboolean hugepages;      /* <memoryBacking><hugepages/>: RAM from the hugetlb pool */
} HookGuestMemory;

/*
 * The guest's memory (libvirt's units) and id->name, id->uuid.  Malformed
 * XML, no <memory>, 0, an unknown unit, a value that is not a whole number
 * or is over libvirt's 8 EiB: an error saying which.
 */
gboolean hook_guest_memory_read(const char *xml, gsize len, HookPolicy *id,
                                HookGuestMemory *mem, GError **error);

/* migrate.c --------------------------------------------------------------- */

/*
 * libvirt's "migrate begin" on the destination: with migrate_check on, refuse
 * (exit 1, one line on stderr) a guest whose full memory does not fit the
 * host's headroom; print nothing (libvirt keeps the XML as it is).  Reads
 * only; changes nothing.
 */
int hook_migrate_check(const HookConfig *cfg, const KsmContext *ctx, const char *xml,
                       gsize len);

/* state.c ----------------------------------------------------------------- */

typedef struct {
    char uuid[37];
    char *name;
    char *group;
    char *phase;             /* "prepared", "started", "reconnected" */
    pid_t qemu_pid;          /* 0: not known yet */
    guint64 qemu_start_time; /* /proc/PID/stat starttime, against pid reuse */
    gint64 updated;          /* wall-clock seconds */
} HookDomainState;

typedef struct {
    char *dir;               /* root-only directory */
    KsmContext *ctx;         /* for /proc (stale detection) */
    char *libvirt_dir;       /* libvirt's QEMU pid files and status XML */
} HookStateStore;

/* Create (0700) and check the directory: owned by us, not a symlink, no
 * group or other access, in trusted directories; anything else is refused
 * rather than trusted.  libvirt_dir NULL: HOOK_LIBVIRT_RUN_DIR. */
gboolean hook_state_open(HookStateStore *store, const char *dir, const char *libvirt_dir,
                         KsmContext *ctx, GError **error);
void hook_state_close(HookStateStore *store);
/* Atomic (write a temporary file, rename), mode 0600. */
gboolean hook_state_write(HookStateStore *store, const HookDomainState *st, GError **error);
/* TRUE if the domain had a state file (and it is gone now). */
gboolean hook_state_remove(HookStateStore *store, const char *uuid);
gboolean hook_state_read(HookStateStore *store, const char *uuid, HookDomainState *st,
                         GError **error);
/* Every domain with a state file, stale ones left out (and, with prune,
 * removed: their QEMU is gone).  A corrupt file (truncated, garbage) is,
 * with prune, rebuilt from libvirt's status XML when the domain's QEMU
 * runs, removed otherwise, and logged either way.  GPtrArray of
 * HookDomainState*. */
GPtrArray *hook_state_list(HookStateStore *store, gboolean prune);
/* How many <uuid>.state files there are, read or not, running or not. */
guint hook_state_count(HookStateStore *store);
void hook_domain_state_clear(HookDomainState *st);
void hook_domain_state_free(HookDomainState *st);
/* The last unmerge outcome (JSON), beside the domain files. */
void hook_state_write_outcome(HookStateStore *store, const char *json);
/* A detached child's marker, kept from its start to its end (what: "unmerge"
 * or "ksmd start"); _check logs and removes each one whose child is gone. */
void hook_state_detached_begin(HookStateStore *store, const char *what);
void hook_state_detached_end(HookStateStore *store, const char *what);
void hook_state_detached_check(HookStateStore *store);

/* trust.c ----------------------------------------------------------------- */

typedef enum { HOOK_TRUST_FILE, HOOK_TRUST_EXEC, HOOK_TRUST_DIR } HookTrustKind;

/*
 * May root rely on path: every directory on the way (symlinks followed, each
 * in a trusted directory) and the object itself owned by root (or our euid)
 * and not writable by group or others (a root-owned sticky directory such as
 * /tmp is accepted on the way).  HOOK_ERROR_NOENT when it does not exist.
 */
gboolean hook_path_trusted(const char *path, HookTrustKind kind, GError **error);
gboolean hook_trust_check_stat(const char *path, const struct stat *st, HookTrustKind kind,
                               GError **error);
/* Open (create 0600) for appending: trusted directory, O_NOFOLLOW, O_CLOEXEC,
 * a regular file of root's with one link, no FIFO.  -1 and error otherwise. */
int hook_open_append(const char *path, GError **error);
/* A trusted regular file's contents, at most max bytes. */
char *hook_read_trusted(const char *path, gsize max, gsize *len, GError **error);

/* qemu-pid.c -------------------------------------------------------------- */

/*
 * The QEMU libvirt runs for domain name: the pid in libvirt's own pid file
 * (run_dir/NAME.pid, root's, in a root-only directory), confirmed by
 * "-uuid UUID" on that process's command line (a stale file names a reused
 * pid).  Never a search of all processes by UUID: any local user can start a
 * process with a guest's UUID (visible in ps) on its command line.  0 when
 * none.  *start_time gets its /proc/PID/stat starttime.
 */
pid_t hook_find_qemu(const KsmContext *ctx, const char *run_dir, const char *name,
                     const char *uuid, guint64 *start_time);
/* Does the process have "-uuid UUID" on its command line? */
gboolean hook_process_has_uuid(const KsmContext *ctx, pid_t pid, const char *uuid);
/* NAME.pid / NAME.xml as libvirt names them (the name XML-escaped). */
char *hook_libvirt_file_name(const char *name, const char *suffix);
/* Can name be a file name under run_dir (libvirt's own rule, checked again)? */
gboolean hook_domain_name_is_file_safe(const char *name);
/* Is pid still the process that had start_time? */
gboolean hook_process_alive(const KsmContext *ctx, pid_t pid, guint64 start_time);

/* reconcile.c ------------------------------------------------------------- */

typedef struct {
    HookConfig *cfg;
    HookStateStore *store;
    KsmContext *ctx;
    const char *lock_path;   /* NULL: libksm's default */
} HookEnv;

typedef enum {
    HOOK_RECONCILE_ENSURE,   /* mergeable guests run: ksmd must run */
    HOOK_RECONCILE_UNMERGE,  /* a mergeable guest left: unmerge if it was the last */
    HOOK_RECONCILE_DAEMON_START, /* libvirtd started: prune, unmerge if none left (daemon.c) */
} HookReconcileWhy;

/* With the host lock held: make KSM agree with the state. */
void hook_reconcile_locked(HookEnv *env, HookReconcileWhy why);
/* Make sure ksmd runs with the configured scan settings (lock held). */
gboolean hook_ensure_ksmd(HookEnv *env, guint n_guests, GError **error);
/*
 * Hand the reconcile to a detached, supervised child (double fork, setsid,
 * stdio on /dev/null so libvirtd does not wait for our pipes) that waits for
 * the host lock as long as an unmerge may take, and logs what it did.
 * Returns at once.
 */
void hook_reconcile_detached(HookEnv *env, HookReconcileWhy why);

/* ksmtuned.c -------------------------------------------------------------- */

/* If one runs, log one warning saying the two would fight and what to do. */
void hook_warn_ksmtuned(const KsmContext *ctx);

/* tune.c ------------------------------------------------------------------ */

/* Is the hook's `samepage tune` running (pid and start time in the state dir)?
 * A recorded one that died (killed, crashed) is forgotten and *died set. */
gboolean hook_tune_running(HookEnv *env, pid_t *pid, gboolean *died);
/* Start it detached and record it (lock held, ksmd already at run=1). */
gboolean hook_tune_start(HookEnv *env, GError **error);
/* SIGUSR1 (converge again) if it runs; FALSE if it does not. */
gboolean hook_tune_kick(HookEnv *env, guint n_guests);
/* SIGTERM if it runs, wait for it briefly, forget it. */
void hook_tune_stop(HookEnv *env);

/* daemon.c ---------------------------------------------------------------- */

/* libvirtd started (lock held): prune the recorded guests whose QEMU is gone;
 * none left while the hook had KSM on: the last guest's unmerge. */
void hook_daemon_start_repair_locked(HookEnv *env);

/* lifecycle.c ------------------------------------------------------------- */

/* The decision for one invocation; returns the exit status. */
int hook_handle(HookEnv *env, const char *name, const char *op, const char *subop,
                const char *xml, gsize len);

#endif
