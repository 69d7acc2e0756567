/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-policy.c: the hook's parsers in-process: domain XML policy, host
 * config, names in log lines, UUIDs, /proc/PID/stat.
 */
#include <string.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "hook.h"

static char *xml_path(const char *name)
{
    return g_test_build_filename(G_TEST_DIST, "xml", name, NULL);
}

/* Parse xml/<name>; returns TRUE/FALSE and fills p and error. */
static gboolean parse(const char *name, HookPolicy *p, GError **error)
{
    g_autofree char *path = xml_path(name);
    g_autofree char *text = NULL;
    gsize len;

    g_assert_true(g_file_get_contents(path, &text, &len, NULL));
    hook_policy_init(p);
    return hook_policy_parse(text, len, p, error);
}

static void expect_refusal(const char *name, const char *const *must_contain)
{
    g_auto(HookPolicy) p;
    g_autoptr(GError) error = NULL;

    g_assert_false(parse(name, &p, &error));
    g_assert_nonnull(error);
    for (guint i = 0; must_contain[i]; i++) {
        if (!strstr(error->message, must_contain[i])) {
            g_error("%s: message '%s' lacks '%s'", name, error->message, must_contain[i]);
        }
    }
}

static void test_merge_yes(void)
{
    g_auto(HookPolicy) p;
    g_autoptr(GError) error = NULL;

    g_assert_true(parse("merge-yes.xml", &p, &error));
    g_assert_no_error(error);
    g_assert_cmpstr(p.name, ==, "web-1");
    g_assert_cmpstr(p.uuid, ==, "11111111-1111-1111-1111-111111111111");
    g_assert_true(p.has_policy);
    g_assert_cmpint(p.merge, ==, 1);
    g_assert_true(p.mergeable);
    g_assert_false(p.nosharepages);
    g_assert_cmpstr(p.group, ==, "tenant-a");
    g_assert_cmpuint(p.warnings->len, ==, 0);
}

static void test_default_follows_libvirt(void)
{
    g_auto(HookPolicy) p;
    g_auto(HookPolicy) q;
    g_autoptr(GError) error = NULL;

    /* No policy: libvirt's default mem-merge=on decides; a foreign
     * namespace's element with odd values is not ours to judge. */
    g_assert_true(parse("default.xml", &p, &error));
    g_assert_false(p.has_policy);
    g_assert_cmpint(p.merge, ==, -1);
    g_assert_true(p.mergeable);
    g_assert_cmpstr(p.group, ==, "default");

    g_assert_true(parse("nosharepages.xml", &q, &error));
    g_assert_true(q.nosharepages);
    g_assert_false(q.mergeable);
}

static void test_merge_no_agrees(void)
{
    g_auto(HookPolicy) p;
    g_autoptr(GError) error = NULL;

    g_assert_true(parse("merge-no-nosharepages.xml", &p, &error));
    g_assert_cmpint(p.merge, ==, 0);
    g_assert_false(p.mergeable);
}

static void test_contradictions(void)
{
    expect_refusal("contradiction-yes.xml", (const char *const[]){
        "contradictory", "merge=\"yes\"", "<nosharepages/>", NULL });
    expect_refusal("contradiction-no.xml", (const char *const[]){
        "contradictory", "merge=\"no\"", "nosharepages", NULL });
}

static void test_bad_policies(void)
{
    expect_refusal("bad-merge-value.xml", (const char *const[]){ "maybe", "yes or no", NULL });
    expect_refusal("unknown-attribute.xml", (const char *const[]){ "grup", "unknown attribute", NULL });
    expect_refusal("bad-group.xml", (const char *const[]){ "../etc/passwd", "trust group", NULL });
    expect_refusal("two-policies.xml", (const char *const[]){ "more than one", NULL });
    expect_refusal("unknown-element.xml", (const char *const[]){ "polcy", NULL });
}

static void test_bad_xml(void)
{
    expect_refusal("malformed.xml", (const char *const[]){ "malformed", "line", NULL });
    expect_refusal("no-uuid.xml", (const char *const[]){ "no <uuid>", NULL });
    expect_refusal("bad-uuid.xml", (const char *const[]){ "invalid <uuid>", NULL });
    expect_refusal("not-domain.xml", (const char *const[]){ "not a <domain>", NULL });

    g_auto(HookPolicy) p;
    g_autoptr(GError) error = NULL;
    hook_policy_init(&p);
    g_assert_false(hook_policy_parse("", 0, &p, &error));
    g_assert_nonnull(strstr(error->message, "no domain XML"));
}

static void test_entities_not_expanded(void)
{
    g_auto(HookPolicy) p;
    g_autoptr(GError) error = NULL;
    g_autofree char *hostname = NULL;

    /* An external entity must not pull a file into the hook. */
    if (parse("entity.xml", &p, &error)) {
        g_file_get_contents("/etc/hostname", &hostname, NULL, NULL);
        if (hostname && *g_strstrip(hostname)) {
            g_assert_null(strstr(p.name ? p.name : "", hostname));
        }
    }
}

static void test_hostile_name(void)
{
    g_auto(HookPolicy) p;
    g_autoptr(GError) error = NULL;

    g_assert_true(parse("hostile.xml", &p, &error));
    /* The UUID is normalised; the name is kept as it is (only logged, quoted). */
    g_assert_cmpstr(p.uuid, ==, "99999999-aaaa-bbbb-cccc-dddddddddddd");
    g_assert_nonnull(strstr(p.name, "/../.."));
}

static void test_backing_warnings(void)
{
    g_auto(HookPolicy) p;
    g_autoptr(GError) error = NULL;

    g_assert_true(parse("hugepages.xml", &p, &error));
    g_assert_true(p.mergeable);
    g_assert_cmpuint(p.warnings->len, ==, 2);
}

static void test_identify_lenient(void)
{
    g_auto(HookPolicy) p;
    g_autoptr(GError) error = NULL;
    g_autofree char *path = xml_path("bad-merge-value.xml");
    g_autofree char *text = NULL;
    gsize len;

    /* stopped/release must find the UUID even when the policy is bad. */
    g_assert_true(g_file_get_contents(path, &text, &len, NULL));
    hook_policy_init(&p);
    g_assert_true(hook_policy_identify(text, len, &p, &error));
    g_assert_cmpstr(p.uuid, ==, "66666666-6666-6666-6666-666666666666");
}

static void test_uuid_and_group(void)
{
    char out[37];

    g_assert_true(hook_uuid_normalize("ABCDEF01-2345-6789-abcd-ef0123456789", out));
    g_assert_cmpstr(out, ==, "abcdef01-2345-6789-abcd-ef0123456789");
    g_assert_false(hook_uuid_normalize("abcdef0123456789abcdef0123456789", out));
    g_assert_false(hook_uuid_normalize("abcdef01-2345-6789-abcd-ef012345678/", out));
    g_assert_false(hook_uuid_normalize("../../../../../../../../../../../../x", out));
    g_assert_false(hook_uuid_normalize(NULL, out));

    g_assert_true(hook_group_valid("tenant-a.prod_1"));
    g_assert_false(hook_group_valid(""));
    g_assert_false(hook_group_valid("-x"));
    g_assert_false(hook_group_valid("a/b"));
    g_assert_false(hook_group_valid("a b"));
    g_assert_false(hook_group_valid("ä"));
}

static void test_quote(void)
{
    g_autofree char *a = hook_quote("plain name");
    g_autofree char *b = hook_quote("new\nline 'q' \"d\" back\\slash");
    g_autofree char *c = hook_quote("日本 é");
    g_autofree char *d = hook_quote("\xff\xfe bad utf8");
    g_autofree char *long_name = g_strnfill(500, 'x');
    g_autofree char *e = hook_quote(long_name);

    g_assert_cmpstr(a, ==, "plain name");
    g_assert_cmpstr(b, ==, "new\\u000aline \\'q\\' \\\"d\\\" back\\\\slash");
    g_assert_cmpstr(c, ==, "日本 é");
    g_assert_cmpstr(d, ==, "\\xff\\xfe bad utf8");
    g_assert_cmpuint(strlen(e), ==, 203);
    g_assert_true(g_str_has_suffix(e, "..."));
}

static char *write_config(const char *text)
{
    g_autofree char *dir = g_dir_make_tmp("hook-config-XXXXXX", NULL);
    char *path = g_build_filename(dir, "ksm.conf", NULL);
    g_assert_true(g_file_set_contents(path, text, -1, NULL));
    return path;
}

static void remove_config(const char *path)
{
    g_autofree char *dir = g_path_get_dirname(path);
    g_unlink(path);
    g_rmdir(dir);
}

static void test_config(void)
{
    HookConfig cfg;
    g_autoptr(GError) error = NULL;

    /* Missing: defaults. */
    hook_config_init(&cfg);
    g_assert_true(hook_config_load(&cfg, "/nonexistent/samepage/ksm.conf", &error));
    g_assert_false(cfg.from_file);
    g_assert_cmpint(cfg.policy, ==, HOOK_POLICY_STRICT);
    g_assert_cmpuint(cfg.reserve_mib, ==, 256);
    hook_config_clear(&cfg);

    /* The installer's default text parses to the defaults. */
    g_autofree char *def = write_config(hook_config_default_text);
    hook_config_init(&cfg);
    g_assert_true(hook_config_load(&cfg, def, &error));
    g_assert_true(cfg.from_file);
    g_assert_cmpint(cfg.pages_to_scan, ==, 1000);
    g_assert_cmpint(cfg.scan_mode, ==, HOOK_SCAN_TUNE);
    g_assert_cmpint(cfg.smart_scan, ==, 0);
    g_assert_true(g_path_is_absolute(cfg.cli_path));
    g_assert_cmpint(cfg.lock_timeout_ms, ==, 5000);
    g_assert_true(cfg.migrate_check);
    g_assert_cmpuint(cfg.migrate_margin_mib, ==, 256);
    g_assert_null(cfg.log_file);
    hook_config_clear(&cfg);
    remove_config(def);

    g_autofree char *good = write_config(
        "[ksm]\npolicy=permissive\nscan=advisor\nadvisor_max_cpu=30\nreserve_mib=1024\n"
        "unmerge_deadline_s=60\nlock_timeout_s=2\nlog_level=debug\nlog_file=/tmp/x.log\n"
        "smart_scan=keep\nsamepage=/opt/samepage/bin/samepage\n"
        "migrate_headroom_check=off\nmigrate_margin_mib=0\n");
    hook_config_init(&cfg);
    g_assert_true(hook_config_load(&cfg, good, &error));
    g_assert_cmpint(cfg.policy, ==, HOOK_POLICY_PERMISSIVE);
    g_assert_cmpint(cfg.scan_mode, ==, HOOK_SCAN_ADVISOR);
    g_assert_cmpint(cfg.advisor_max_cpu, ==, 30);
    g_assert_cmpuint(cfg.reserve_mib, ==, 1024);
    g_assert_cmpint(cfg.unmerge_deadline_s, ==, 60);
    g_assert_cmpint(cfg.lock_timeout_ms, ==, 2000);
    g_assert_cmpint(cfg.log_level, ==, HOOK_LOG_DEBUG);
    g_assert_cmpstr(cfg.log_file, ==, "/tmp/x.log");
    g_assert_cmpint(cfg.smart_scan, ==, -1);
    g_assert_cmpstr(cfg.cli_path, ==, "/opt/samepage/bin/samepage");
    g_assert_false(cfg.migrate_check);
    g_assert_cmpuint(cfg.migrate_margin_mib, ==, 0);
    hook_config_clear(&cfg);
    remove_config(good);

    static const struct {
        const char *text, *must;
    } bad[] = {
        { "[ksm]\npolicy=lenient\n", "policy=lenient" },
        { "[ksm]\nscan=fast\n", "tune, manual or advisor" },
        { "[ksm]\nsmart_scan=auto\n", "smart_scan=auto is not valid: off, on or keep" },
        { "[ksm]\nsamepage=bin/samepage\n", "samepage=bin/samepage is not valid: an absolute path" },
        { "[ksm]\npages_to_scan=-5\n", "pages_to_scan=-5" },
        { "[ksm]\nreserve_mib=lots\n", "reserve_mib=lots" },
        { "[ksm]\nlock_timeout_s=600\n", "lock_timeout_s=600" },
        { "[ksm]\nmigrate_headroom_check=yes\n",
          "migrate_headroom_check=yes is not valid: on or off" },
        { "[ksm]\nmigrate_margin_mib=-1\n", "migrate_margin_mib=-1" },
        { "[ksm]\nmigrate_margin_mib=1GiB\n", "migrate_margin_mib=1GiB" },
        { "[ksm]\nlog_level=chatty\n", "log_level" },
        { "[ksm]\nlog_file=relative.log\n", "absolute" },
        { "not a key file\n", "ksm.conf" },
    };
    for (guint i = 0; i < G_N_ELEMENTS(bad); i++) {
        g_autofree char *path = write_config(bad[i].text);
        g_autoptr(GError) err = NULL;
        hook_config_init(&cfg);
        g_assert_false(hook_config_load(&cfg, path, &err));
        if (!strstr(err->message, bad[i].must) || !strstr(err->message, path)) {
            g_error("config '%s': message '%s' lacks '%s' or the path", bad[i].text,
                    err->message, bad[i].must);
        }
        hook_config_clear(&cfg);
        remove_config(path);
    }
}

/* hook_path_trusted follows symlinks one by one, checking every directory
 * it passes through, the links' own directories and the target. */
static void test_path_trust(void)
{
    g_autofree char *root = g_dir_make_tmp("samepage-trust-XXXXXX", NULL);
    g_autofree char *good = g_build_filename(root, "good", NULL);
    g_autofree char *bad = g_build_filename(root, "bad", NULL);
    g_autofree char *file = g_build_filename(good, "ksm.conf", NULL);
    g_autofree char *badfile = g_build_filename(bad, "ksm.conf", NULL);
    g_autofree char *rel = g_build_filename(good, "rel", NULL);
    g_autofree char *via_bad = g_build_filename(good, "via-bad", NULL);
    g_autofree char *dotdot = g_build_filename(bad, "..", "good", "ksm.conf", NULL);
    g_autofree char *loop = g_build_filename(good, "loop", NULL);
    g_autofree char *missing = g_build_filename(good, "missing", NULL);
    GError *error = NULL;

    g_assert_nonnull(root);
    g_assert_cmpint(g_mkdir(good, 0755), ==, 0);
    g_assert_cmpint(g_mkdir(bad, 0755), ==, 0);
    g_assert_cmpint(g_chmod(bad, 0777), ==, 0);
    g_assert_true(g_file_set_contents(file, "[ksm]\n", -1, NULL));
    g_assert_cmpint(g_chmod(file, 0644), ==, 0);
    g_assert_true(g_file_set_contents(badfile, "[ksm]\n", -1, NULL));
    g_assert_cmpint(g_chmod(badfile, 0644), ==, 0);
    g_assert_cmpint(symlink("ksm.conf", rel), ==, 0);
    g_assert_cmpint(symlink(badfile, via_bad), ==, 0);
    g_assert_cmpint(symlink("loop", loop), ==, 0);

    g_assert_true(hook_path_trusted(file, HOOK_TRUST_FILE, &error));
    g_assert_no_error(error);
    g_assert_true(hook_path_trusted(rel, HOOK_TRUST_FILE, &error));
    g_assert_no_error(error);
    /* A trusted link to a file in a directory anyone may write. */
    g_assert_false(hook_path_trusted(via_bad, HOOK_TRUST_FILE, &error));
    g_assert_error(error, HOOK_ERROR, HOOK_ERROR_UNTRUSTED);
    g_assert_nonnull(strstr(error->message, "writable by group or others"));
    g_clear_error(&error);
    /* Through the bad directory, even to come back out of it. */
    g_assert_false(hook_path_trusted(dotdot, HOOK_TRUST_FILE, &error));
    g_clear_error(&error);
    g_assert_false(hook_path_trusted(loop, HOOK_TRUST_FILE, &error));
    g_assert_nonnull(strstr(error->message, "too many symlinks"));
    g_clear_error(&error);
    g_assert_false(hook_path_trusted(missing, HOOK_TRUST_FILE, &error));
    g_assert_error(error, HOOK_ERROR, HOOK_ERROR_NOENT);
    g_clear_error(&error);
    /* Not executable: not a program root runs. */
    g_assert_false(hook_path_trusted(file, HOOK_TRUST_EXEC, &error));
    g_clear_error(&error);
    g_assert_false(hook_path_trusted("relative/path", HOOK_TRUST_FILE, &error));
    g_clear_error(&error);

    g_unlink(rel);
    g_unlink(via_bad);
    g_unlink(loop);
    g_unlink(file);
    g_unlink(badfile);
    g_rmdir(good);
    g_rmdir(bad);
    g_rmdir(root);
}

/* libvirt names its pid and status files after the XML-escaped name. */
static void test_libvirt_file_name(void)
{
    g_autofree char *plain = hook_libvirt_file_name("web-1", ".pid");
    g_autofree char *hostile = hook_libvirt_file_name("b 'q' \"d\" \xc3\xa9&<>\x01\t.", ".xml");

    g_assert_cmpstr(plain, ==, "web-1.pid");
    g_assert_cmpstr(hostile, ==, "b &apos;q&apos; &quot;d&quot; \xc3\xa9&amp;&lt;&gt;\t..xml");
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    hook_log_set_stderr(FALSE);
    g_test_add_func("/hook/policy/merge-yes", test_merge_yes);
    g_test_add_func("/hook/policy/default-follows-libvirt", test_default_follows_libvirt);
    g_test_add_func("/hook/policy/merge-no-agrees", test_merge_no_agrees);
    g_test_add_func("/hook/policy/contradictions", test_contradictions);
    g_test_add_func("/hook/policy/bad-policies", test_bad_policies);
    g_test_add_func("/hook/policy/bad-xml", test_bad_xml);
    g_test_add_func("/hook/policy/entities-not-expanded", test_entities_not_expanded);
    g_test_add_func("/hook/policy/hostile-name", test_hostile_name);
    g_test_add_func("/hook/policy/backing-warnings", test_backing_warnings);
    g_test_add_func("/hook/policy/identify-lenient", test_identify_lenient);
    g_test_add_func("/hook/uuid-and-group", test_uuid_and_group);
    g_test_add_func("/hook/quote", test_quote);
    g_test_add_func("/hook/config", test_config);
    g_test_add_func("/hook/path-trust", test_path_trust);
    g_test_add_func("/hook/libvirt-file-name", test_libvirt_file_name);
    return g_test_run();
}
