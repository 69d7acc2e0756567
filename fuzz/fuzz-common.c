/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fuzz-common.c: the fake tree and input helpers of the harnesses.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <glib/gstdio.h>

#include "fuzz-common.h"

static char *root;
static KsmContext *ctx;

static void remove_tree(const char *path)
{
    g_autoptr(GDir) dir = g_dir_open(path, 0, NULL);
    const char *name;

    while (dir && (name = g_dir_read_name(dir))) {
        g_autofree char *child = g_build_filename(path, name, NULL);
        if (g_file_test(child, G_FILE_TEST_IS_DIR) &&
            !g_file_test(child, G_FILE_TEST_IS_SYMLINK)) {
            remove_tree(child);
        } else {
            g_unlink(child);
        }
    }
    g_rmdir(path);
}

static void fuzz_cleanup(void)
{
    if (root) {
        remove_tree(root);
    }
}

void fuzz_init(void)
{
    if (root) {
        return;
    }
    g_log_set_always_fatal(G_LOG_FATAL_MASK | G_LOG_LEVEL_CRITICAL);
    root = g_dir_make_tmp("samepage-fuzz-XXXXXX", NULL);
    if (!root) {
        g_error("cannot make the fake tree under %s", g_get_tmp_dir());
    }
    g_autofree char *sysfs = g_build_filename(root, "sys", NULL);
    g_autofree char *procfs = g_build_filename(root, "proc", NULL);
    g_autofree char *ksm = g_build_filename(sysfs, "kernel", "mm", "ksm", NULL);
    g_mkdir_with_parents(ksm, 0700);
    g_mkdir_with_parents(procfs, 0700);
    ctx = ksm_context_new(sysfs, procfs);
    ksm_context_set_page_size(ctx, 4096);
    atexit(fuzz_cleanup);
}

const char *fuzz_root(void)
{
    return root;
}

const KsmContext *fuzz_ctx(void)
{
    return ctx;
}

char *fuzz_write(const char *rel, const void *data, size_t size)
{
    char *path = g_build_filename(root, rel, NULL);
    g_autofree char *dir = g_path_get_dirname(path);

    /* A new file each time: g_file_set_contents' fsync, or ext4 flushing a
     * file truncated and rewritten (auto_da_alloc), would cost most of the run. */
    g_mkdir_with_parents(dir, 0700);
    unlink(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        g_error("fuzz: cannot write %s: %s", path, g_strerror(errno));
    }
    for (size_t off = 0; off < size;) {
        ssize_t n = write(fd, (const char *)data + off, size - off);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            g_error("fuzz: cannot write %s: %s", path, g_strerror(errno));
        }
        off += n;
    }
    close(fd);
    return path;
}

char *fuzz_text(const uint8_t *data, size_t size)
{
    char *text = g_malloc(size + 1);
    memcpy(text, data, size);
    text[size] = '\0';
    return text;
}

char **fuzz_split_nul(const uint8_t *data, size_t size, guint *n)
{
    GPtrArray *v = g_ptr_array_new();
    size_t start = 0;

    for (size_t i = 0; i <= size; i++) {
        if (i == size || data[i] == '\0') {
            if (i == size && i == start && v->len > 0) {
                break;   /* a trailing NUL ends the last argument */
            }
            g_ptr_array_add(v, g_strndup((const char *)data + start, i - start));
            start = i + 1;
        }
    }
    *n = v->len;
    g_ptr_array_add(v, NULL);
    return (char **)g_ptr_array_free(v, FALSE);
}
