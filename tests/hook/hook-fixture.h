/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * hook-fixture.h: a throw-away host for running the hook binary: a fake
 * /sys/kernel/mm/ksm and /proc, a state directory, a lock file, a config
 * file and a log file, all under one temporary directory, handed to the
 * hook through its test-only environment variables.
 */
#ifndef HOOK_FIXTURE_H
#define HOOK_FIXTURE_H

#include <glib.h>
#include <sys/types.h>

typedef struct {
    char *root;
    char *sysfs, *procfs, *ksm_dir, *state_dir, *lock, *config, *log;
    char *libvirt_dir;   /* libvirtd's /run/libvirt/qemu: NAME.pid, NAME.xml */
} HookFixture;

typedef struct {
    int status;          /* exit status */
    char *out, *err;
    gint64 elapsed_ms;
} HookRun;

void hook_fixture_setup(HookFixture *fx, gconstpointer data);
void hook_fixture_teardown(HookFixture *fx, gconstpointer data);
#define HOOK_TEST(path, func) \
    g_test_add((path), HookFixture, NULL, hook_fixture_setup, (func), hook_fixture_teardown)

/* Extra lines for the [ksm] group of the config (log_file is always set). */
void hook_fixture_config(HookFixture *fx, const char *lines);
void hook_fixture_ksm_set(HookFixture *fx, const char *name, const char *value);
char *hook_fixture_ksm_get(HookFixture *fx, const char *name);
void hook_fixture_meminfo(HookFixture *fx, guint64 available_kib);
/* A fake QEMU process with "-uuid UUID" on its command line. */
void hook_fixture_qemu(HookFixture *fx, pid_t pid, const char *uuid, guint64 start_time);
void hook_fixture_qemu_exit(HookFixture *fx, pid_t pid);
/* libvirtd's pid file for domain name (root's, 0644), as libvirtd writes it. */
void hook_fixture_libvirt_pid(HookFixture *fx, const char *name, pid_t pid);
/* libvirtd's status XML for name: <domstatus> around domain_xml. */
void hook_fixture_libvirt_status(HookFixture *fx, const char *name, const char *domain_xml);
/* A fake process: comm and argv (NUL-separated in cmdline). */
void hook_fixture_process(HookFixture *fx, pid_t pid, const char *comm,
                          const char *const *argv);

/* Run the hook: argv NAME OP SUBOP -, stdin = xml/<xml_file> (NULL: empty). */
void hook_run(HookFixture *fx, const char *name, const char *op, const char *xml_file,
              HookRun *run);
void hook_run_text(HookFixture *fx, const char *name, const char *op, const char *xml,
                   HookRun *run);
void hook_run_clear(HookRun *run);

char *hook_fixture_state_file(HookFixture *fx, const char *uuid);
guint hook_fixture_n_state_files(HookFixture *fx);
/* Wait (up to timeout_ms) for the detached child's last-unmerge.json; NULL if none. */
char *hook_fixture_wait_outcome(HookFixture *fx, gint64 timeout_ms);
char *hook_fixture_read_log(HookFixture *fx);

/* Fail the test (showing haystack) unless needle is in it / is not. */
void hook_assert_contains(const char *haystack, const char *needle);
void hook_assert_lacks(const char *haystack, const char *needle);
/* A domain (name XML-escaped) with an optional ksm:policy element's
 * attributes and libvirt's <nosharepages/>. */
char *hook_domain_xml(const char *name, const char *uuid, const char *policy,
                      gboolean nosharepages);
/* A domain whose policy is merge="yes" in trust group group. */
char *hook_merge_xml(const char *name, const char *uuid, const char *group);

#endif
