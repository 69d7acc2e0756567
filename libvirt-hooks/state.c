/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * state.c: the hook's view of the running mergeable domains.
 *
 * One small GKeyFile per domain, named by the domain's UUID (validated to
 * 8-4-4-4-12 hex, so no name a user chose ever becomes a path).  Each file is
 * written to a temporary file and renamed, so a reader never sees half of
 * one; decisions that read several (first guest? last guest? group
 * conflict?) are made under the samepage host lock.  The directory lives
 * under /run: a reboot forgets it, as it forgets every running guest.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hook.h"

#define GROUP "domain"
#define SUFFIX ".state"
#define OUTCOME_FILE "last-unmerge.json"
/* A domain prepared but never started (QEMU not found) is stale after this:
 * a failed start is followed by stopped/release, which remove it, so this
 * only catches what a crash of libvirtd left behind. */
#define PREPARED_GRACE_S (10 * 60)

static gboolean check_dir(const char *dir, GError **error)
{
    struct stat st;

    if (lstat(dir, &st) < 0) {
        g_set_error(error, HOOK_ERROR, 0, "cannot stat %s: %s", dir, g_strerror(errno));
        return FALSE;
    }
    if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid()) {
        g_set_error(error, HOOK_ERROR, 0,
                    "%s is not a directory owned by uid %d (a symlink or someone "
                    "else's?): refusing to keep state there", dir, (int)geteuid());
        return FALSE;
    }
    if ((st.st_mode & 077) != 0 && chmod(dir, 0700) < 0) {
        g_set_error(error, HOOK_ERROR, 0, "cannot make %s private: %s", dir, g_strerror(errno));
        return FALSE;
    }
    return TRUE;
}

gboolean hook_state_open(HookStateStore *store, const char *dir, const char *libvirt_dir,
                         KsmContext *ctx, GError **error)
{
    g_autofree char *parent = g_path_get_dirname(dir);

    memset(store, 0, sizeof(*store));
    /* The directories above must be root's too, or someone could swap the
     * state directory for another between our check and our use. */
    g_mkdir_with_parents(parent, 0700);
    if (!hook_path_trusted(parent, HOOK_TRUST_DIR, error)) {
        g_prefix_error(error, "state directory %s: ", dir);
        return FALSE;
    }
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
        g_set_error(error, HOOK_ERROR, 0, "cannot create %s: %s", dir, g_strerror(errno));
        return FALSE;
    }
    if (!check_dir(dir, error)) {
        return FALSE;
    }
    store->dir = g_strdup(dir);
    store->ctx = ctx;
    store->libvirt_dir = g_strdup(libvirt_dir ? libvirt_dir : HOOK_LIBVIRT_RUN_DIR);
    return TRUE;
}

void hook_state_close(HookStateStore *store)
{
    g_free(store->dir);
    g_free(store->libvirt_dir);
    memset(store, 0, sizeof(*store));
}

void hook_domain_state_clear(HookDomainState *st)
{
    g_free(st->name);
    g_free(st->group);
    g_free(st->phase);
    memset(st, 0, sizeof(*st));
}

void hook_domain_state_free(HookDomainState *st)
{
    if (st) {
        hook_domain_state_clear(st);
        g_free(st);
    }
}

static char *state_path(HookStateStore *store, const char *uuid)
{
    g_autofree char *file = g_strconcat(uuid, SUFFIX, NULL);
    return g_build_filename(store->dir, file, NULL);
}

gboolean hook_state_write(HookStateStore *store, const HookDomainState *st, GError **error)
{
    g_autoptr(GKeyFile) kf = g_key_file_new();
    char uuid[37];

    if (!hook_uuid_normalize(st->uuid, uuid)) {
        g_set_error(error, HOOK_ERROR, 0, "refusing a state file for an invalid UUID");
        return FALSE;
    }
    /* The name is only for people reading the file; GKeyFile escapes it. */
    g_key_file_set_string(kf, GROUP, "name", st->name ? st->name : "");
    g_key_file_set_string(kf, GROUP, "uuid", uuid);
    g_key_file_set_string(kf, GROUP, "group", st->group ? st->group : "default");
    g_key_file_set_string(kf, GROUP, "phase", st->phase ? st->phase : "prepared");
    g_key_file_set_int64(kf, GROUP, "qemu_pid", st->qemu_pid);
    g_key_file_set_uint64(kf, GROUP, "qemu_start_time", st->qemu_start_time);
    g_key_file_set_int64(kf, GROUP, "updated", g_get_real_time() / G_USEC_PER_SEC);

    gsize len;
    g_autofree char *text = g_key_file_to_data(kf, &len, NULL);
    g_autofree char *path = state_path(store, uuid);
    return g_file_set_contents_full(path, text, len, G_FILE_SET_CONTENTS_CONSISTENT, 0600,
                                    error);
}

gboolean hook_state_remove(HookStateStore *store, const char *uuid)
{
    char norm[37];

    if (!hook_uuid_normalize(uuid, norm)) {
        return FALSE;
    }
    g_autofree char *path = state_path(store, norm);
    if (unlink(path) == 0) {
        return TRUE;
    }
    if (errno != ENOENT) {
        /* A read-only or broken /run: the guest stays counted until an
         * event can remove the file (or finds its QEMU gone and prunes it),
         * so KSM is left as it is rather than unmerged on a guess. */
        hook_log(HOOK_LOG_ERROR, "cannot forget the guest: cannot remove %s: %s; KSM is "
                 "left as it is until the state directory is writable again", path,
                 g_strerror(errno));
    }
    return FALSE;
}

/* A state file is a few hundred bytes: anything this big is not one. */
#define MAX_STATE_BYTES (64 * 1024)

static gboolean corrupt(GError **error, const char *path, const char *what)
{
    g_set_error(error, HOOK_ERROR, HOOK_ERROR_FAILED, "%s: %s", path, what);
    return FALSE;
}

/*
 * Every key must be there and valid: a file cut short (a full /run, a crash
 * mid-write by something else) must never read as a guest of the "default"
 * group or without its QEMU.
 */
static gboolean read_file(const char *path, HookDomainState *st, GError **error)
{
    g_autoptr(GKeyFile) kf = g_key_file_new();
    g_autofree char *uuid = NULL, *text = NULL, *pid = NULL, *start = NULL, *updated = NULL;
    gsize len;
    guint64 v;
    gint64 t;

    memset(st, 0, sizeof(*st));
    if (!g_file_get_contents(path, &text, &len, error)) {
        return FALSE;
    }
    if (len > MAX_STATE_BYTES) {
        return corrupt(error, path, "too large for a state file");
    }
    if (!g_key_file_load_from_data(kf, text, len, G_KEY_FILE_NONE, error)) {
        g_prefix_error(error, "%s: ", path);
        return FALSE;
    }
    uuid = g_key_file_get_string(kf, GROUP, "uuid", NULL);
    if (!uuid || !hook_uuid_normalize(uuid, st->uuid)) {
        return corrupt(error, path, "no valid uuid");
    }
    st->name = g_key_file_get_string(kf, GROUP, "name", NULL);
    st->group = g_key_file_get_string(kf, GROUP, "group", NULL);
    st->phase = g_key_file_get_string(kf, GROUP, "phase", NULL);
    pid = g_key_file_get_value(kf, GROUP, "qemu_pid", NULL);
    start = g_key_file_get_value(kf, GROUP, "qemu_start_time", NULL);
    updated = g_key_file_get_value(kf, GROUP, "updated", NULL);
    if (!st->name || !st->phase) {
        return corrupt(error, path, "no name or phase");
    }
    if (!st->group || !hook_group_valid(st->group)) {
        return corrupt(error, path, "no valid trust group");
    }
    if (!pid || !g_ascii_string_to_unsigned(pid, 10, 0, G_MAXINT32, &v, NULL)) {
        return corrupt(error, path, "no valid qemu_pid");
    }
    st->qemu_pid = (pid_t)v;
    if (!start || !g_ascii_string_to_unsigned(start, 10, 0, G_MAXUINT64, &st->qemu_start_time,
                                              NULL)) {
        return corrupt(error, path, "no valid qemu_start_time");
    }
    if (!updated || !g_ascii_string_to_signed(updated, 10, 0, G_MAXINT64, &t, NULL)) {
        return corrupt(error, path, "no valid updated time");
    }
    st->updated = t;
    return TRUE;
}

gboolean hook_state_read(HookStateStore *store, const char *uuid, HookDomainState *st,
                         GError **error)
{
    char norm[37];

    if (!hook_uuid_normalize(uuid, norm)) {
        g_set_error(error, HOOK_ERROR, 0, "invalid UUID");
        return FALSE;
    }
    g_autofree char *path = state_path(store, norm);
    return read_file(path, st, error);
}

/*
 * Is the domain of this file still running?  With a QEMU pid: that process,
 * same start time.  Without (prepared, QEMU not yet started): the QEMU
 * libvirt's pid file names, or a file young enough that the start may still
 * be under way.
 */
static gboolean still_running(HookStateStore *store, HookDomainState *st)
{
    if (st->qemu_pid > 0) {
        return hook_process_alive(store->ctx, st->qemu_pid, st->qemu_start_time);
    }
    if (hook_find_qemu(store->ctx, store->libvirt_dir, st->name, st->uuid, NULL) > 0) {
        return TRUE;
    }
    return g_get_real_time() / G_USEC_PER_SEC - st->updated < PREPARED_GRACE_S;
}

/* The file stem (the name as libvirt escapes it) of the domain whose
 * running QEMU has this UUID, by libvirt's pid files (STEM.pid); NULL when
 * none runs. */
static char *libvirt_stem_of(HookStateStore *store, const char *uuid, pid_t *pid)
{
    g_autoptr(GDir) dir = g_dir_open(store->libvirt_dir, 0, NULL);
    const char *entry;

    while (dir && (entry = g_dir_read_name(dir))) {
        if (!g_str_has_suffix(entry, ".pid")) {
            continue;
        }
        g_autofree char *stem = g_strndup(entry, strlen(entry) - 4);
        g_autofree char *path = g_build_filename(store->libvirt_dir, entry, NULL);
        g_autofree char *text = hook_read_trusted(path, 64, &(gsize){ 0 }, NULL);
        guint64 v;
        if (text && g_ascii_string_to_unsigned(g_strstrip(text), 10, 1, G_MAXINT32, &v, NULL) &&
            hook_process_has_uuid(store->ctx, (pid_t)v, uuid)) {
            *pid = (pid_t)v;
            return g_steal_pointer(&stem);
        }
    }
    return NULL;
}

/*
 * A state file that does not parse (truncated by a full /run, garbage): its
 * domain's trust group is unknown.  If libvirt runs a QEMU with that UUID,
 * its status XML (NAME.xml beside the pid file, root's) has the domain's
 * policy: rebuild the file from it.  Otherwise the domain is gone: remove it.
 * Both are logged to the host only (they name a domain of another tenant).
 */
static HookDomainState *repair_corrupt(HookStateStore *store, const char *path,
                                       const char *uuid, const char *why)
{
    g_autofree char *qwhy = hook_quote(why);
    pid_t pid = 0;
    g_autofree char *stem = libvirt_stem_of(store, uuid, &pid);
    g_autoptr(GError) error = NULL;

    if (!stem) {
        unlink(path);
        hook_log_host(HOOK_LOG_WARNING, "state file %s.state is corrupt (%s) and no QEMU of "
                      "that domain runs (libvirt's pid files in %s): removed", uuid, qwhy,
                      store->libvirt_dir);
        return NULL;
    }
    g_autofree char *qname = hook_quote(stem);
    g_autofree char *file = g_strconcat(stem, ".xml", NULL);
    g_autofree char *xml_path = g_build_filename(store->libvirt_dir, file, NULL);
    gsize len = 0;
    g_autofree char *xml = hook_read_trusted(xml_path, 16 << 20, &len, &error);
    g_auto(HookPolicy) p;
    hook_policy_init(&p);
    if (xml && hook_policy_parse(xml, len, &p, &error) && strcmp(p.uuid, uuid) != 0) {
        g_set_error(&error, HOOK_ERROR, 0, "it describes another UUID");
    }
    if (error) {
        unlink(path);
        hook_log_host(HOOK_LOG_ERROR, "state file %s.state is corrupt (%s); domain '%s' runs, "
                      "but its trust group cannot be read from libvirt's status (%s): "
                      "removed, so it counts for no trust-group decision until libvirtd "
                      "reconnects to it (restart libvirtd to rebuild the hook's state)",
                      uuid, qwhy, qname, error->message);
        return NULL;
    }
    /* From here on the real name (the file stem is libvirt's escaped form). */
    g_free(qname);
    qname = hook_quote(p.name ? p.name : "");
    if (!p.mergeable) {
        unlink(path);
        hook_log_host(HOOK_LOG_WARNING, "state file %s.state is corrupt (%s); domain '%s' runs "
                      "but is not mergeable: removed", uuid, qwhy, qname);
        return NULL;
    }
    HookDomainState *st = g_new0(HookDomainState, 1);
    memcpy(st->uuid, p.uuid, sizeof(st->uuid));
    st->name = g_strdup(p.name);
    st->group = g_strdup(p.group);
    st->phase = g_strdup("rebuilt");
    st->qemu_pid = hook_find_qemu(store->ctx, store->libvirt_dir, p.name, uuid,
                                  &st->qemu_start_time);
    if (!hook_state_write(store, st, &error)) {
        hook_log_host(HOOK_LOG_ERROR, "state file %s.state is corrupt and cannot be rebuilt: %s",
                      uuid, error->message);
        unlink(path);
    } else {
        hook_log_host(HOOK_LOG_WARNING, "state file %s.state was corrupt (%s): rebuilt from "
                      "libvirt's status of running domain '%s' (QEMU pid %d, trust group '%s')",
                      uuid, qwhy, qname, (int)st->qemu_pid, st->group);
    }
    st->updated = g_get_real_time() / G_USEC_PER_SEC;
    return st;
}

GPtrArray *hook_state_list(HookStateStore *store, gboolean prune)
{
    GPtrArray *list = g_ptr_array_new_with_free_func((GDestroyNotify)hook_domain_state_free);
    g_autoptr(GDir) dir = g_dir_open(store->dir, 0, NULL);
    const char *entry;

    while (dir && (entry = g_dir_read_name(dir))) {
        char uuid[37];
        g_autofree char *stem = NULL;

        /* Only "<uuid>.state": temporary files of a concurrent write, the
         * outcome file and anything else are not domains. */
        if (!g_str_has_suffix(entry, SUFFIX)) {
            continue;
        }
        stem = g_strndup(entry, strlen(entry) - strlen(SUFFIX));
        if (!hook_uuid_normalize(stem, uuid) || strcmp(stem, uuid) != 0) {
            continue;
        }
        g_autofree char *path = g_build_filename(store->dir, entry, NULL);
        HookDomainState *st = g_new0(HookDomainState, 1);
        g_autoptr(GError) error = NULL;
        if (!read_file(path, st, &error)) {
            hook_domain_state_free(st);
            /* Removed between readdir and open: a domain that just stopped. */
            if (g_error_matches(error, G_FILE_ERROR, G_FILE_ERROR_NOENT)) {
                continue;
            }
            if (!prune) {
                hook_log_host(HOOK_LOG_WARNING, "ignoring corrupt state file: %s",
                              error->message);
                continue;
            }
            st = repair_corrupt(store, path, uuid, error->message);
            if (st) {
                g_ptr_array_add(list, st);
            }
            continue;
        }
        if (strcmp(st->uuid, uuid) != 0) {
            /* Someone's copy: the file name is what the hook looks up. */
            memcpy(st->uuid, uuid, sizeof(st->uuid));
        }
        if (!still_running(store, st)) {
            if (prune) {
                g_autofree char *qname = hook_quote(st->name ? st->name : "");
                hook_log_host(HOOK_LOG_INFO, "state of domain '%s' (%s) is stale (its QEMU is "
                              "gone): removed", qname, st->uuid);
                unlink(path);
            }
            hook_domain_state_free(st);
            continue;
        }
        g_ptr_array_add(list, st);
    }
    return list;
}

guint hook_state_count(HookStateStore *store)
{
    g_autoptr(GDir) dir = g_dir_open(store->dir, 0, NULL);
    const char *entry;
    guint n = 0;

    while (dir && (entry = g_dir_read_name(dir))) {
        char uuid[37];
        if (!g_str_has_suffix(entry, SUFFIX)) {
            continue;
        }
        g_autofree char *stem = g_strndup(entry, strlen(entry) - strlen(SUFFIX));
        n += hook_uuid_normalize(stem, uuid) && strcmp(stem, uuid) == 0;
    }
    return n;
}

void hook_state_write_outcome(HookStateStore *store, const char *json)
{
    g_autofree char *path = g_build_filename(store->dir, OUTCOME_FILE, NULL);
    g_autofree char *text = g_strconcat(json, "\n", NULL);
    g_autoptr(GError) error = NULL;

    if (!g_file_set_contents_full(path, text, -1, G_FILE_SET_CONTENTS_CONSISTENT, 0600,
                                  &error)) {
        hook_log(HOOK_LOG_WARNING, "cannot keep the unmerge outcome: %s", error->message);
    }
}

/*
 * A detached child's marker: an empty "detached-PID.WHAT.pending" from its
 * start to its end (WHAT in the name: created in one step, a kill can never
 * leave it half-written).  One left behind by a child that is gone means the
 * child was killed (kill -9, the OOM killer) before it finished: nothing
 * else would say so.
 */
#define DETACHED_PREFIX "detached-"
#define DETACHED_SUFFIX ".pending"

static const char *detached_kind(const char *what)
{
    return strcmp(what, "unmerge") == 0 ? "unmerge" : "start";
}

static char *detached_path(HookStateStore *store, pid_t pid, const char *what)
{
    g_autofree char *file = g_strdup_printf(DETACHED_PREFIX "%d.%s" DETACHED_SUFFIX, (int)pid,
                                            detached_kind(what));
    return g_build_filename(store->dir, file, NULL);
}

void hook_state_detached_begin(HookStateStore *store, const char *what)
{
    g_autofree char *path = detached_path(store, getpid(), what);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);

    if (fd >= 0) {
        close(fd);
    }
    /* else only the warning after a kill is lost */
}

void hook_state_detached_end(HookStateStore *store, const char *what)
{
    g_autofree char *path = detached_path(store, getpid(), what);
    unlink(path);
}

static gboolean pid_alive(pid_t pid)
{
    g_autofree char *stat_path = g_strdup_printf("/proc/%d/stat", (int)pid);
    g_autofree char *text = NULL;

    if (kill(pid, 0) < 0 && errno == ESRCH) {
        return FALSE;
    }
    if (g_file_get_contents(stat_path, &text, NULL, NULL)) {
        const char *paren = strrchr(text, ')');
        return !(paren && paren[1] == ' ' && paren[2] == 'Z');
    }
    return TRUE;
}

void hook_state_detached_check(HookStateStore *store)
{
    g_autoptr(GDir) dir = g_dir_open(store->dir, 0, NULL);
    const char *entry;

    while (dir && (entry = g_dir_read_name(dir))) {
        if (!g_str_has_prefix(entry, DETACHED_PREFIX)) {
            continue;
        }
        char *end = NULL;
        gint64 pid = g_ascii_strtoll(entry + strlen(DETACHED_PREFIX), &end, 10);
        const char *what = g_strcmp0(end, ".unmerge" DETACHED_SUFFIX) == 0 ? "unmerge"
                         : g_strcmp0(end, ".start" DETACHED_SUFFIX) == 0 ? "ksmd start" : NULL;
        if (pid <= 1 || pid > G_MAXINT32 || !what || pid_alive((pid_t)pid)) {
            continue;   /* still at work, or not ours */
        }
        g_autofree char *path = g_build_filename(store->dir, entry, NULL);
        /* Of two events that see it, the one whose unlink wins says so. */
        if (unlink(path) == 0) {
            hook_log(HOOK_LOG_WARNING, "the detached child %d (%s) was killed before it "
                     "finished (kill -9 or the OOM killer?): KSM was left as that child found "
                     "it; this and the next guest events decide again", (int)pid, what);
        }
    }
}
