/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * trusted-file.c: files root writes or believes.
 *
 * samepage runs as root.  A file it creates is never reached through a
 * symbolic link someone planted (in /tmp, say), and a file whose content it
 * writes into the kernel must be one only root (or the user running it)
 * could have written: owned by root or by that user, writable by no one
 * else, a regular file, not a link.
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

static gboolean check_trusted_stat(const char *path, const struct stat *st, GError **error)
{
    g_autofree char *shown = cli_escape_text(path);

    if (!S_ISREG(st->st_mode)) {
        g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                    "%s is not a regular file", shown);
        return FALSE;
    }
    if (st->st_uid != 0 && st->st_uid != geteuid()) {
        g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_PERM,
                    "%s belongs to uid %u: samepage trusts only files of root or of the "
                    "user running it (chown it, or write it again with samepage save)",
                    shown, (unsigned)st->st_uid);
        return FALSE;
    }
    if (st->st_mode & (S_IWGRP | S_IWOTH)) {
        g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_PERM,
                    "%s is writable by group or others (mode %04o): anyone could have "
                    "changed it (chmod go-w it)", shown, (unsigned)(st->st_mode & 07777));
        return FALSE;
    }
    return TRUE;
}

int cli_open_trusted_file(const char *path, int flags, GError **error)
{
    g_autofree char *shown = cli_escape_text(path);
    int fd = open(path, flags | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK, 0600);
    struct stat st;

    if (fd < 0) {
        int e = errno;
        g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(e), "cannot open %s: %s%s",
                    shown, g_strerror(e),
                    e == ELOOP ? " (it is a symbolic link, which samepage does not follow: "
                                 "name the file itself or remove the link)" : "");
        return -1;
    }
    if (fstat(fd, &st) != 0) {
        int e = errno;
        g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(e), "cannot check %s: %s",
                    shown, g_strerror(e));
        close(fd);
        return -1;
    }
    if (!check_trusted_stat(path, &st, error)) {
        close(fd);
        return -1;
    }
    return fd;
}

char *cli_read_trusted_file(const char *path, gsize max_len, GError **error)
{
    g_autofree char *shown = cli_escape_text(path);
    int fd = cli_open_trusted_file(path, O_RDONLY, error);

    if (fd < 0) {
        return NULL;
    }
    GString *text = g_string_new(NULL);
    char buf[4096];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(errno),
                        "cannot read %s: %s", shown, g_strerror(errno));
            break;
        }
        if (n == 0) {
            close(fd);
            return g_string_free(text, FALSE);
        }
        if (text->len + (gsize)n > max_len) {
            g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                        "%s is larger than %" G_GSIZE_FORMAT " bytes: not a file samepage "
                        "wrote", shown, max_len);
            break;
        }
        g_string_append_len(text, buf, n);
    }
    close(fd);
    g_string_free(text, TRUE);
    return NULL;
}

gboolean cli_write_file_safely(const char *path, const char *text, GError **error)
{
    g_autofree char *shown = cli_escape_text(path);
    struct stat st;

    /*
     * The content goes to a new file (O_EXCL) beside it, renamed over path:
     * a rename replaces a link, it never writes through one.  An existing
     * link or device is refused rather than silently replaced.
     */
    if (lstat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
        g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_EXIST,
                    "%s exists and is %s: samepage writes only regular files (remove it "
                    "or name another file)", shown,
                    S_ISLNK(st.st_mode) ? "a symbolic link" : "not a regular file");
        return FALSE;
    }
    return g_file_set_contents_full(path, text, -1, G_FILE_SET_CONTENTS_CONSISTENT, 0600, error);
}
