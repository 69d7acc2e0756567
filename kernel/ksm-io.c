/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ksm-io.c: reading and writing the kernel's small text files.
 *
 * sysfs attributes want the whole value in one write(2) and report the
 * kernel's refusal through that write's errno, so no stdio buffering here.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ksm-private.h"

gboolean ksm_set_errno_error(GError **error, int err, const char *what, const char *path)
{
    int code;

    switch (err) {
    case ENOENT:
    case ENOTDIR:
        code = KSM_ERROR_NOT_AVAILABLE;
        break;
    case ESRCH:
        code = KSM_ERROR_NO_PROCESS;
        break;
    case EACCES:
    case EPERM:
        g_set_error(error, KSM_ERROR, KSM_ERROR_PERMISSION,
                    "%s %s: %s (run as root)", what, path, g_strerror(err));
        return FALSE;
    case EBUSY:
        code = KSM_ERROR_BUSY;
        break;
    case EINVAL:
        code = KSM_ERROR_INVALID;
        break;
    case EINTR:
        code = KSM_ERROR_INTERRUPTED;
        break;
    case ENOMEM:
    case EAGAIN:
        code = KSM_ERROR_NO_MEMORY;
        break;
    default:
        code = KSM_ERROR_FAILED;
        break;
    }
    g_set_error(error, KSM_ERROR, code, "%s %s: %s", what, path, g_strerror(err));
    return FALSE;
}

char *ksm_read_text(const char *path, gsize *len, GError **error)
{
    /* O_NONBLOCK: a FIFO put where a kernel file was must not block the open. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    struct stat st;

    if (fd < 0) {
        ksm_set_errno_error(error, errno, "cannot open", path);
        return NULL;
    }
    /* sysfs attributes and /proc files are regular files.  Anything else (a
     * directory, a FIFO, a symlink to /dev/zero) is not what we read, and
     * could block or never end. */
    if (fstat(fd, &st) < 0) {
        int err = errno;
        close(fd);
        ksm_set_errno_error(error, err, "cannot stat", path);
        return NULL;
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        g_set_error(error, KSM_ERROR, KSM_ERROR_FAILED,
                    "cannot read %s: not a regular file but %s", path,
                    S_ISDIR(st.st_mode) ? "a directory"
                    : S_ISFIFO(st.st_mode) ? "a FIFO"
                    : S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) ? "a device"
                    : "a socket");
        return NULL;
    }

    /* Pseudo-files report size 0: read until EOF. */
    GString *buf = g_string_sized_new(256);
    for (;;) {
        char chunk[4096];
        ssize_t n = read(fd, chunk, sizeof(chunk));
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            int err = errno;
            close(fd);
            g_string_free(buf, TRUE);
            /* ESRCH/ENOENT mid-read: the process went away. */
            ksm_set_errno_error(error, err, "cannot read", path);
            return NULL;
        }
        if (n == 0) {
            break;
        }
        g_string_append_len(buf, chunk, n);
    }
    close(fd);
    if (len) {
        *len = buf->len;
    }
    return g_string_free(buf, FALSE);
}

int ksm_write_text(const char *path, const char *text)
{
    /* O_TRUNC: sysfs ignores it (as with the shell's "echo 1 > run"), and a
     * fake tree's regular file must not keep the tail of a longer old value. */
    int fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
    if (fd < 0) {
        return errno;
    }
    size_t len = strlen(text);
    /* One write, never retried on EINTR: for run=2 EINTR means the kernel
     * stopped the unmerge (and set run to 0) because of our deadline signal;
     * writing again would start the whole unmerge over. */
    ssize_t n = write(fd, text, len);
    int err = n < 0 ? errno : ((size_t)n == len ? 0 : EIO);
    if (close(fd) < 0 && err == 0 && errno != EINTR) {
        err = errno;
    }
    return err;
}

char *ksm_proc_path(const KsmContext *ctx, pid_t pid, const char *name)
{
    char pidbuf[24];
    g_snprintf(pidbuf, sizeof(pidbuf), "%d", (int)pid);
    return g_build_filename(ksm_context_procfs(ctx), pidbuf, name, NULL);
}

char *ksm_read_proc(const KsmContext *ctx, pid_t pid, const char *name, gsize *len,
                    GError **error)
{
    g_autofree char *path = ksm_proc_path(ctx, pid, name);
    GError *local = NULL;
    char *text = ksm_read_text(path, len, &local);

    if (!text) {
        /* A file missing inside a vanished /proc/PID means the process is gone. */
        if (g_error_matches(local, KSM_ERROR, KSM_ERROR_NOT_AVAILABLE)) {
            g_autofree char *dir = ksm_proc_path(ctx, pid, "");
            if (!g_file_test(dir, G_FILE_TEST_IS_DIR)) {
                g_clear_error(&local);
                g_set_error(error, KSM_ERROR, KSM_ERROR_NO_PROCESS,
                            "process %d has exited", (int)pid);
                return NULL;
            }
        }
        g_propagate_error(error, local);
    }
    return text;
}

gsize ksm_pread_full(int fd, void *buf, gsize len, guint64 offset)
{
    gsize done = 0;

    while (done < len) {
        ssize_t n = pread(fd, (char *)buf + done, len - done, (off_t)(offset + done));
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            if (n == 0) {
                errno = 0;   /* end of file: for /proc/PID/mem, the process has gone */
            }
            break;
        }
        done += n;
    }
    return done;
}

gint64 ksm_now_ms(void)
{
    return g_get_monotonic_time() / 1000;
}
