/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fuzz-hook-argv.c: the hook's command line (libvirt-hooks/ksm-hook.c, its
 * main compiled as samepage_hook_main).  libvirtd passes the domain's name,
 * which whoever defines domains chooses.
 *
 * Input: the arguments after argv[0], NUL-separated.  The environment points
 * the hook at a fake tree, a valid ksm.conf (scan=manual) and an empty
 * stdin: every operation stops at the policy (an empty XML), so no input
 * makes the hook fork, start ksmd or run samepage.  Arguments naming paths
 * are not what is fuzzed: inputs with '/' are skipped, and relative paths
 * resolve inside the fake tree (the working directory during the call).
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz-common.h"

int samepage_hook_main(int argc, char **argv);

static void setup(void)
{
    static gboolean done;
    if (done) {
        return;
    }
    done = TRUE;
    const char *root = fuzz_root();
    static const char conf[] = "[ksm]\nscan=manual\nlog_level=debug\n";
    g_autofree char *conf_path = fuzz_write("ksm.conf", conf, sizeof(conf) - 1);
    g_autofree char *state = g_build_filename(root, "hook", "state", NULL);
    g_autofree char *lock = g_build_filename(root, "hook", "lock", NULL);
    g_autofree char *sysfs = g_build_filename(root, "sys", NULL);
    g_autofree char *procfs = g_build_filename(root, "proc", NULL);
    g_autofree char *libvirt_run = g_build_filename(root, "libvirt-run", NULL);
    g_setenv("SAMEPAGE_HOOK_CONFIG", conf_path, TRUE);
    g_setenv("SAMEPAGE_HOOK_STATE_DIR", state, TRUE);
    g_setenv("SAMEPAGE_LOCK", lock, TRUE);
    g_setenv("SAMEPAGE_SYSFS_ROOT", sysfs, TRUE);
    g_setenv("SAMEPAGE_PROCFS_ROOT", procfs, TRUE);
    g_setenv("SAMEPAGE_LIBVIRT_RUN_DIR", libvirt_run, TRUE);
    g_setenv("SAMEPAGE_HOOK_SYSLOG", "0", TRUE);
    int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (null < 0 || dup2(null, STDIN_FILENO) < 0) {
        g_error("fuzz-hook-argv: cannot put /dev/null on stdin");
    }
    close(null);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_init();
    setup();
    if (memchr(data, '/', size)) {
        return -1;
    }
    guint n;
    g_auto(GStrv) args = fuzz_split_nul(data, size, &n);
    g_autofree char **argv = g_new0(char *, n + 2);
    argv[0] = (char *)"samepage-ksm";
    memcpy(argv + 1, args, n * sizeof(char *));

    /* libFuzzer reads its corpus by relative paths: back to its directory after. */
    int cwd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (cwd < 0 || chdir(fuzz_root()) < 0) {
        g_error("fuzz-hook-argv: cannot enter the fake tree");
    }
    int status = samepage_hook_main((int)n + 1, argv);
    if (fchdir(cwd) < 0) {
        g_error("fuzz-hook-argv: cannot go back to the working directory");
    }
    close(cwd);
    g_assert(status == 0 || status == 1 || status == 2);
    return 0;
}
