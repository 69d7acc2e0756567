/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * trust.c: may root use this path?
 *
 * The hook runs as root: it reads ksm.conf, executes samepage= and appends
 * to log_file.  Whoever can change any of them, or any directory on the way
 * to them, or a symlink's directory, can make root read their policy, run
 * their program or write through a link.  So every directory traversed
 * (symlinks followed one by one, as the kernel does) and the final object
 * must be owned by root (or by the hook's own uid, for tests run by a user)
 * and writable by no one else; a root-owned sticky directory (/tmp) is
 * accepted on the way, since others cannot rename or remove root's entries
 * in it.  Files root creates are opened with O_NOFOLLOW and checked on the
 * descriptor after the open.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hook.h"

/* Like the kernel's MAXSYMLINKS. */
#define MAX_LINKS 40

static gboolean owner_ok(uid_t uid)
{
    return uid == 0 || uid == geteuid();
}

static gboolean dir_ok(const char *path, const struct stat *st, GError **error)
{
    g_autofree char *q = hook_quote(path);

    if (!S_ISDIR(st->st_mode)) {
        g_set_error(error, HOOK_ERROR, HOOK_ERROR_UNTRUSTED, "%s is not a directory", q);
        return FALSE;
    }
    if (!owner_ok(st->st_uid)) {
        g_set_error(error, HOOK_ERROR, HOOK_ERROR_UNTRUSTED,
                    "directory %s is owned by uid %d, not root: refusing to trust what is "
                    "in it (chown root)", q, (int)st->st_uid);
        return FALSE;
    }
    if ((st->st_mode & (S_IWGRP | S_IWOTH)) && !((st->st_mode & S_ISVTX) && st->st_uid == 0)) {
        g_set_error(error, HOOK_ERROR, HOOK_ERROR_UNTRUSTED,
                    "directory %s is writable by group or others (mode %04o): refusing to "
                    "trust what is in it (chmod go-w)", q, (unsigned)(st->st_mode & 07777));
        return FALSE;
    }
    return TRUE;
}

gboolean hook_trust_check_stat(const char *path, const struct stat *st, HookTrustKind kind,
                               GError **error)
{
    g_autofree char *q = hook_quote(path);

    if (kind == HOOK_TRUST_DIR) {
        return dir_ok(path, st, error);
    }
    if (!S_ISREG(st->st_mode)) {
        g_set_error(error, HOOK_ERROR, HOOK_ERROR_UNTRUSTED, "%s is not a regular file", q);
        return FALSE;
    }
    if (!owner_ok(st->st_uid)) {
        g_set_error(error, HOOK_ERROR, HOOK_ERROR_UNTRUSTED,
                    "%s is owned by uid %d, not root: refusing to %s it (chown root)", q,
                    (int)st->st_uid, kind == HOOK_TRUST_EXEC ? "run" : "use");
        return FALSE;
    }
    if (st->st_mode & (S_IWGRP | S_IWOTH)) {
        g_set_error(error, HOOK_ERROR, HOOK_ERROR_UNTRUSTED,
                    "%s is writable by group or others (mode %04o): refusing to %s it "
                    "(chmod go-w)", q, (unsigned)(st->st_mode & 07777),
                    kind == HOOK_TRUST_EXEC ? "run" : "use");
        return FALSE;
    }
    if (kind == HOOK_TRUST_EXEC && !(st->st_mode & S_IXUSR)) {
        g_set_error(error, HOOK_ERROR, HOOK_ERROR_UNTRUSTED, "%s is not executable", q);
        return FALSE;
    }
    return TRUE;
}

static void push_components(GPtrArray *stack, const char *path)
{
    g_auto(GStrv) parts = g_strsplit(path, "/", -1);

    /* A stack: the first component on top. */
    for (guint i = g_strv_length(parts); i > 0; i--) {
        if (*parts[i - 1] && strcmp(parts[i - 1], ".") != 0) {
            g_ptr_array_add(stack, g_strdup(parts[i - 1]));
        }
    }
}

gboolean hook_path_trusted(const char *path, HookTrustKind kind, GError **error)
{
    g_autoptr(GPtrArray) stack = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(GString) cur = g_string_new("/");
    struct stat st;
    guint links = 0;

    if (!path || !g_path_is_absolute(path)) {
        g_autofree char *q = hook_quote(path ? path : "");
        g_set_error(error, HOOK_ERROR, HOOK_ERROR_UNTRUSTED, "%s is not an absolute path", q);
        return FALSE;
    }
    if (lstat("/", &st) < 0 || !dir_ok("/", &st, error)) {
        if (error && !*error) {
            g_set_error(error, HOOK_ERROR, HOOK_ERROR_UNTRUSTED, "cannot stat /");
        }
        return FALSE;
    }
    push_components(stack, path);
    while (stack->len > 0) {
        g_autofree char *comp = g_ptr_array_steal_index(stack, stack->len - 1);
        if (strcmp(comp, "..") == 0) {
            /* cur holds no symlink: its parent is the real one. */
            char *slash = strrchr(cur->str, '/');
            g_string_truncate(cur, slash && slash != cur->str ? (gsize)(slash - cur->str) : 1);
            continue;
        }
        g_autofree char *next = cur->len > 1 ? g_strconcat(cur->str, "/", comp, NULL)
                                             : g_strconcat("/", comp, NULL);
        if (lstat(next, &st) < 0) {
            int err = errno;
            g_autofree char *q = hook_quote(next);
            g_set_error(error, HOOK_ERROR,
                        err == ENOENT ? HOOK_ERROR_NOENT : HOOK_ERROR_UNTRUSTED,
                        "%s: %s", q, g_strerror(err));
            return FALSE;
        }
        if (S_ISLNK(st.st_mode)) {
            /* The link lives in cur, already trusted: only root could
             * have put it there.  Follow it from where it points. */
            char target[4096];
            ssize_t n = readlink(next, target, sizeof(target) - 1);
            if (n < 0 || ++links > MAX_LINKS) {
                g_autofree char *q = hook_quote(next);
                g_set_error(error, HOOK_ERROR, HOOK_ERROR_UNTRUSTED,
                            "%s: too many symlinks or unreadable link", q);
                return FALSE;
            }
            target[n] = '\0';
            if (target[0] == '/') {
                g_string_assign(cur, "/");
            }
            push_components(stack, target);
            continue;
        }
        if (stack->len == 0) {
            return hook_trust_check_stat(next, &st, kind, error);
        }
        if (!dir_ok(next, &st, error)) {
            return FALSE;
        }
        g_string_assign(cur, next);
    }
    /* The path named a directory ("/", "x/.."): cur itself. */
    if (lstat(cur->str, &st) < 0) {
        g_set_error(error, HOOK_ERROR, HOOK_ERROR_UNTRUSTED, "cannot stat %s", cur->str);
        return FALSE;
    }
    return hook_trust_check_stat(cur->str, &st, kind, error);
}

int hook_open_append(const char *path, GError **error)
{
    g_autofree char *dir = g_path_get_dirname(path);
    g_autofree char *q = hook_quote(path);
    struct stat st;

    if (!hook_path_trusted(dir, HOOK_TRUST_DIR, error)) {
        return -1;
    }
    /* O_NOFOLLOW: no link planted where the file is created; O_NONBLOCK:
     * a FIFO there fails (ENXIO) instead of blocking the hook. */
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK |
                  O_NOCTTY, 0600);
    if (fd < 0) {
        g_set_error(error, HOOK_ERROR, HOOK_ERROR_UNTRUSTED, "cannot open %s: %s", q,
                    g_strerror(errno));
        return -1;
    }
    if (fstat(fd, &st) < 0 || !hook_trust_check_stat(path, &st, HOOK_TRUST_FILE, error)) {
        if (error && !*error) {
            g_set_error(error, HOOK_ERROR, HOOK_ERROR_UNTRUSTED, "cannot stat %s", q);
        }
        close(fd);
        return -1;
    }
    if (st.st_nlink != 1) {
        /* A hard link someone made to a file of root's. */
        g_set_error(error, HOOK_ERROR, HOOK_ERROR_UNTRUSTED,
                    "%s has %u hard links: refusing to append to it", q, (unsigned)st.st_nlink);
        close(fd);
        return -1;
    }
    int flags = fcntl(fd, F_GETFL);
    if (flags >= 0) {
        fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
    }
    return fd;
}

char *hook_read_trusted(const char *path, gsize max, gsize *len, GError **error)
{
    g_autofree char *q = hook_quote(path);
    struct stat st;

    if (!hook_path_trusted(path, HOOK_TRUST_FILE, error)) {
        return NULL;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
        g_set_error(error, HOOK_ERROR, errno == ENOENT ? HOOK_ERROR_NOENT : HOOK_ERROR_UNTRUSTED,
                    "cannot open %s: %s", q, g_strerror(errno));
        return NULL;
    }
    /* Checked again on what was opened: the walk and the open are two steps. */
    if (fstat(fd, &st) < 0 || !hook_trust_check_stat(path, &st, HOOK_TRUST_FILE, error)) {
        if (error && !*error) {
            g_set_error(error, HOOK_ERROR, HOOK_ERROR_UNTRUSTED, "cannot stat %s", q);
        }
        close(fd);
        return NULL;
    }
    GString *buf = g_string_new(NULL);
    char chunk[8192];
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            g_set_error(error, HOOK_ERROR, HOOK_ERROR_UNTRUSTED, "cannot read %s: %s", q,
                        g_strerror(errno));
            break;
        }
        if (n == 0) {
            close(fd);
            *len = buf->len;
            return g_string_free(buf, FALSE);
        }
        if (buf->len + n > max) {
            g_set_error(error, HOOK_ERROR, HOOK_ERROR_UNTRUSTED, "%s is over %" G_GSIZE_FORMAT
                        " bytes", q, max);
            break;
        }
        g_string_append_len(buf, chunk, n);
    }
    close(fd);
    g_string_free(buf, TRUE);
    return NULL;
}
