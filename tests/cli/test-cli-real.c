/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-cli-real.c: `samepage stats --json` on the running kernel lists
 * every file that exists in /sys/kernel/mm/ksm.
 *
 * The directory listing here is the independent oracle: it only reads the
 * names (never a value, never a write), so it does not bypass libksm for
 * anything samepage does.  Exit 77 (skip) with the reason when not root or
 * when this kernel has no KSM.
 */
#include <glib.h>
#include <json-glib/json-glib.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#define KSM_DIR "/sys/kernel/mm/ksm"

static int skip(const char *reason)
{
    printf("SKIP: %s\n", reason);
    return 77;
}

static int fail(const char *what, const char *detail)
{
    fprintf(stderr, "FAIL: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    return 1;
}

static int run(const char *const *argv, char **out, int *exit_status)
{
    g_autoptr(GError) error = NULL;
    g_autofree char *err = NULL;
    int wait_status = 0;

    if (!g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_DEFAULT, NULL, NULL, out, &err,
                      &wait_status, &error)) {
        return fail("cannot run samepage", error->message);
    }
    if (!WIFEXITED(wait_status)) {
        return fail("samepage did not exit normally", err);
    }
    *exit_status = WEXITSTATUS(wait_status);
    if (*exit_status != 0) {
        fprintf(stderr, "%s", err);
    }
    return 0;
}

int main(void)
{
    const char *samepage = g_getenv("SAMEPAGE_CLI");

    if (!samepage) {
        return fail("SAMEPAGE_CLI is not set", NULL);
    }
    if (geteuid() != 0) {
        return skip("not root");
    }
    if (!g_file_test(KSM_DIR "/run", G_FILE_TEST_EXISTS)) {
        return skip("this kernel has no KSM (" KSM_DIR " is missing)");
    }

    g_autofree char *out = NULL;
    int status = 0;
    const char *const stats[] = { samepage, "stats", "--json", NULL };
    if (run(stats, &out, &status) != 0 || status != 0) {
        return fail("samepage stats --json failed", NULL);
    }
    g_autoptr(JsonParser) parser = json_parser_new();
    g_autoptr(GError) error = NULL;
    if (!json_parser_load_from_data(parser, out, -1, &error)) {
        return fail("samepage stats --json is not JSON", error->message);
    }
    JsonObject *root = json_node_get_object(json_parser_get_root(parser));
    JsonObject *sections[3] = {
        json_object_get_object_member(root, "knobs"),
        json_object_get_object_member(root, "counters"),
        json_object_get_object_member(root, "unknown"),
    };
    for (guint i = 0; i < G_N_ELEMENTS(sections); i++) {
        if (!sections[i]) {
            return fail("knobs, counters or unknown missing", NULL);
        }
    }

    g_autoptr(GDir) dir = g_dir_open(KSM_DIR, 0, &error);
    if (!dir) {
        return fail("cannot list " KSM_DIR, error->message);
    }
    guint files = 0, missing = 0;
    const char *name;
    while ((name = g_dir_read_name(dir))) {
        g_autofree char *path = g_build_filename(KSM_DIR, name, NULL);
        if (g_file_test(path, G_FILE_TEST_IS_DIR)) {
            continue;
        }
        files++;
        gboolean found = FALSE;
        for (guint i = 0; i < G_N_ELEMENTS(sections); i++) {
            found = found || json_object_has_member(sections[i], name);
        }
        if (!found) {
            fprintf(stderr, "FAIL: %s is not in samepage stats --json\n", name);
            missing++;
        }
    }
    if (missing) {
        return 1;
    }
    printf("ok: all %u files of " KSM_DIR " are in samepage stats --json\n", files);

    /* status and the other formats work on this kernel too. */
    const char *const status_argv[] = { samepage, "status", NULL };
    const char *const prom_argv[] = { samepage, "stats", "--prometheus", NULL };
    g_autofree char *status_out = NULL, *prom_out = NULL;
    if (run(status_argv, &status_out, &status) != 0 || status != 0) {
        return fail("samepage status failed", NULL);
    }
    if (run(prom_argv, &prom_out, &status) != 0 || status != 0) {
        return fail("samepage stats --prometheus failed", NULL);
    }
    printf("ok: status and stats --prometheus exit 0\n");
    return 0;
}
