/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fake-tree.h: a throw-away sysfs/procfs tree for libksm's unit tests.
 *
 *   <root>/sys/kernel/mm/ksm/<file>
 *   <root>/sys/fs/cgroup/...
 *   <root>/proc/<pid>/<file>, <root>/proc/meminfo
 *
 * Used as a GTest fixture: g_test_add(path, FakeTree, NULL, fake_tree_setup,
 * test, fake_tree_teardown).  Teardown removes the whole tree.
 */
#ifndef FAKE_TREE_H
#define FAKE_TREE_H

#include <glib.h>
#include <sys/types.h>
#include "ksm/ksm.h"

G_BEGIN_DECLS

typedef struct {
    char *root;      /* the temporary directory */
    char *sysfs;     /* root/sys */
    char *procfs;    /* root/proc */
    char *ksm_dir;   /* root/sys/kernel/mm/ksm */
    KsmContext *ctx; /* ksm_context_new(sysfs, procfs), page size 4096 */
} FakeTree;

void fake_tree_setup(FakeTree *t, gconstpointer data);
void fake_tree_teardown(FakeTree *t, gconstpointer data);

#define FAKE_TEST(path, func) \
    g_test_add((path), FakeTree, NULL, fake_tree_setup, (func), fake_tree_teardown)

/* Paths relative to the tree root ("sys/...", "proc/..."); parents are created. */
char *fake_tree_path(const FakeTree *t, const char *rel);
void fake_tree_write(const FakeTree *t, const char *rel, const char *content);
char *fake_tree_read(const FakeTree *t, const char *rel);
gboolean fake_tree_exists(const FakeTree *t, const char *rel);
void fake_tree_remove(const FakeTree *t, const char *rel);   /* file or whole directory */
void fake_tree_mkdir(const FakeTree *t, const char *rel);

/* /sys/kernel/mm/ksm/<name> */
void fake_tree_ksm_write(const FakeTree *t, const char *name, const char *content);
char *fake_tree_ksm_read(const FakeTree *t, const char *name);
void fake_tree_ksm_remove(const FakeTree *t, const char *name);
/* Every file of a Linux 6.18 KSM directory, with the values in fake_618_values. */
void fake_tree_ksm_618(const FakeTree *t);
/* A Linux 4.19 KSM directory: no smart_scan, advisor_*, ksm_zero_pages, general_profit,
 * pages_scanned, pages_skipped. */
void fake_tree_ksm_4x(const FakeTree *t);

typedef struct {
    const char *name;
    const char *text;     /* file content as the kernel prints it */
    gint64 value;         /* what libksm should read */
} FakeKsmFile;
extern const FakeKsmFile fake_618_files[];
extern const guint fake_618_n_files;
gint64 fake_618_value(const char *name);

/* /proc/<pid>/<name> */
void fake_tree_proc_write(const FakeTree *t, pid_t pid, const char *name, const char *content);
/* /proc/<pid>/cmdline from a NULL-terminated argv (NUL-separated, trailing NUL). */
void fake_tree_proc_cmdline(const FakeTree *t, pid_t pid, const char *const *argv);
void fake_tree_proc_remove(const FakeTree *t, pid_t pid);

G_END_DECLS

#endif
