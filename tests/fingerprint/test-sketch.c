/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-sketch: the fleet fingerprint's sketch, key and file reader
 * (policy/fingerprint), on synthetic sets whose exact answers are known.
 *
 * Synthetic contents are 64-bit ids hashed with the fleet key, as pages
 * are: the sketch sees what it sees in a guest.  The error checks use the
 * sketch's own standard error (estimate / sqrt(samples)) with a margin of 4,
 * and fixed ids, so a result is deterministic and a broken estimator fails.
 */
#include <math.h>
#include <string.h>
#include <ksm/ksm.h>
#include <ksm/ksm-fingerprint.h>

static KsmFleetKey *test_key(const char *text)
{
    g_autoptr(GError) error = NULL;
    KsmFleetKey *key = ksm_fleet_key_new(text, strlen(text), &error);
    g_assert_no_error(error);
    return key;
}

/* The set {first, ..., first + n - 1} as page-like contents. */
static void add_ids(KsmSketch *s, const KsmFleetKey *key, guint64 first, guint64 n, guint copies)
{
    guint8 page[64] = { 0 };
    for (guint64 i = first; i < first + n; i++) {
        memcpy(page, &i, sizeof(i));
        for (guint c = 0; c < copies; c++) {
            ksm_sketch_add(s, ksm_fleet_key_hash(key, page, sizeof(page)));
        }
    }
    ksm_sketch_flush(s);
}

static void test_key_rules(void)
{
    g_autoptr(GError) error = NULL;
    g_assert_null(ksm_fleet_key_new("short", 5, &error));
    g_assert_error(error, KSM_ERROR, KSM_ERROR_INVALID);
    g_assert_nonnull(strstr(error->message, "/dev/urandom"));

    g_autoptr(KsmFleetKey) a = test_key("0123456789abcdef0123");
    g_autoptr(KsmFleetKey) a2 = test_key("0123456789abcdef0123");
    g_autoptr(KsmFleetKey) b = test_key("0123456789abcdef0124");
    g_assert_cmpstr(ksm_fleet_key_id(a), ==, ksm_fleet_key_id(a2));
    g_assert_cmpstr(ksm_fleet_key_id(a), !=, ksm_fleet_key_id(b));
    g_assert_cmpuint(strlen(ksm_fleet_key_id(a)), ==, 16);
    guint8 page[4096];
    memset(page, 7, sizeof(page));
    g_assert_cmpuint(ksm_fleet_key_hash(a, page, sizeof(page)), ==,
                     ksm_fleet_key_hash(a2, page, sizeof(page)));
    g_assert_cmpuint(ksm_fleet_key_hash(a, page, sizeof(page)), !=,
                     ksm_fleet_key_hash(b, page, sizeof(page)));
}

static void test_exact_when_small(void)
{
    g_autoptr(KsmFleetKey) key = test_key("exact-when-small-key");
    g_autoptr(KsmSketch) a = ksm_sketch_new(1024);
    g_autoptr(KsmSketch) b = ksm_sketch_new(1024);
    add_ids(a, key, 0, 500, 3);          /* duplicates count once */
    add_ids(b, key, 300, 400, 1);
    g_assert_true(ksm_sketch_is_exact(a));
    g_assert_cmpuint(a->pages, ==, 1500);
    g_assert_cmpfloat(ksm_sketch_distinct(a), ==, 500);
    guint64 samples = 0;
    g_assert_cmpfloat(ksm_sketch_intersection(a, b, &samples), ==, 200);
    g_assert_cmpuint(samples, ==, 200);
    for (guint i = 1; i < a->n; i++) {
        g_assert_cmpuint(a->hashes[i - 1], <, a->hashes[i]);
    }
}

/* The union of two sketches is the sketch of the union. */
static void test_union_is_sketch_of_union(void)
{
    g_autoptr(KsmFleetKey) key = test_key("union-is-sketch-of-union");
    g_autoptr(KsmSketch) a = ksm_sketch_new(512);
    g_autoptr(KsmSketch) b = ksm_sketch_new(512);
    g_autoptr(KsmSketch) whole = ksm_sketch_new(512);
    add_ids(a, key, 0, 30000, 1);
    add_ids(b, key, 20000, 30000, 1);
    add_ids(whole, key, 0, 50000, 1);
    g_autoptr(KsmSketch) u = ksm_sketch_union(a, b, 0);
    g_assert_cmpuint(u->n, ==, whole->n);
    g_assert_cmpmem(u->hashes, u->n * 8, whole->hashes, whole->n * 8);
    g_assert_cmpfloat(ksm_sketch_distinct(u), ==, ksm_sketch_distinct(whole));
    g_assert_cmpuint(u->pages, ==, 60000);

    /* Union of exact sketches below k stays exact. */
    g_autoptr(KsmSketch) c = ksm_sketch_new(512);
    g_autoptr(KsmSketch) d = ksm_sketch_new(512);
    add_ids(c, key, 0, 100, 1);
    add_ids(d, key, 50, 100, 1);
    g_autoptr(KsmSketch) cd = ksm_sketch_union(c, d, 0);
    g_assert_true(ksm_sketch_is_exact(cd));
    g_assert_cmpfloat(ksm_sketch_distinct(cd), ==, 150);

    /* A full sketch and an exact one: the union below the threshold, not exact. */
    g_autoptr(KsmSketch) e = ksm_sketch_union(a, c, 0);
    g_assert_false(ksm_sketch_is_exact(e));
    g_assert_cmpuint(ksm_sketch_theta(e), <=, ksm_sketch_theta(a));
}

/* Estimates within 4 standard errors, at 0..100% overlap of 100k-content sets. */
static void test_estimate_error(void)
{
    g_autoptr(KsmFleetKey) key = test_key("estimate-error-key-1");
    const guint64 n = 100000;
    for (guint pct = 0; pct <= 100; pct += 25) {
        g_autoptr(KsmSketch) a = ksm_sketch_new(KSM_SKETCH_MAX_K);
        g_autoptr(KsmSketch) b = ksm_sketch_new(KSM_SKETCH_MAX_K);
        guint64 common = n * pct / 100;
        add_ids(a, key, 0, n, 1);
        add_ids(b, key, n - common, n, 1);
        guint64 samples = 0;
        double est = ksm_sketch_intersection(a, b, &samples);
        double d = ksm_sketch_distinct(a);
        g_test_message("overlap %u%%: exact %" G_GUINT64_FORMAT ", estimate %.0f (%" G_GUINT64_FORMAT
                       " samples); distinct %.0f of %" G_GUINT64_FORMAT, pct, common, est,
                       samples, d, n);
        if (common == 0) {
            g_assert_cmpfloat(est, ==, 0);
        } else {
            double se = est / sqrt((double)MAX(samples, 1));
            g_assert_cmpfloat(fabs(est - (double)common), <=, 4 * se);
        }
        g_assert_cmpfloat(fabs(d - (double)n), <=, 4 * (double)n / sqrt(KSM_SKETCH_MAX_K));
    }
}

/* A host set answers what a union sketch of its guests would, and is exact
 * when every guest is. */
static void test_host_set(void)
{
    g_autoptr(KsmFleetKey) key = test_key("host-set-test-key-01");
    KsmSketch *guests[3];
    for (guint i = 0; i < 3; i++) {
        guests[i] = ksm_sketch_new(KSM_SKETCH_MAX_K);
        add_ids(guests[i], key, i * 40000, 50000, 1);   /* 10000 in common with the next */
    }
    g_autoptr(KsmHostSet) h = ksm_host_set_new(guests, 3);
    g_autoptr(KsmSketch) g = ksm_sketch_new(KSM_SKETCH_MAX_K);
    add_ids(g, key, 30000, 60000, 1);   /* 30000..89999: 50000-89999 guests 0,1,2 → 60000 exact */
    guint64 samples;
    double est = ksm_host_set_intersection(h, g, &samples);
    g_test_message("host set: exact 60000, estimate %.0f (%" G_GUINT64_FORMAT " samples), "
                   "host distinct %.0f of 130000", est, samples, ksm_host_set_distinct(h));
    g_assert_cmpfloat(fabs(est - 60000), <=, 4 * est / sqrt((double)samples));
    g_assert_cmpfloat(fabs(ksm_host_set_distinct(h) - 130000), <=, 4 * 130000 / sqrt(8192.0));

    /* Same answer as the pairwise estimate against the union sketch, when
     * the union keeps every hash below the threshold. */
    g_autoptr(KsmSketch) u01 = ksm_sketch_union(guests[0], guests[1], KSM_SKETCH_MAX_K);
    g_autoptr(KsmSketch) u = ksm_sketch_union(u01, guests[2], KSM_SKETCH_MAX_K);
    g_assert_cmpuint(ksm_sketch_theta(u), <=, h->theta);

    /* Exact: small guests. */
    KsmSketch *small[2] = { ksm_sketch_new(KSM_SKETCH_MAX_K), ksm_sketch_new(KSM_SKETCH_MAX_K) };
    add_ids(small[0], key, 0, 1000, 1);
    add_ids(small[1], key, 500, 1000, 1);
    g_autoptr(KsmHostSet) hs = ksm_host_set_new(small, 2);
    g_autoptr(KsmSketch) gs = ksm_sketch_new(KSM_SKETCH_MAX_K);
    add_ids(gs, key, 1200, 1000, 1);
    g_assert_cmpfloat(ksm_host_set_intersection(hs, gs, NULL), ==, 300);
    g_assert_cmpfloat(ksm_host_set_distinct(hs), ==, 1500);
    /* An empty host shares nothing. */
    g_autoptr(KsmHostSet) empty = ksm_host_set_new(NULL, 0);
    g_assert_cmpfloat(ksm_host_set_intersection(empty, gs, NULL), ==, 0);
    for (guint i = 0; i < 3; i++) {
        ksm_sketch_free(guests[i]);
    }
    ksm_sketch_free(small[0]);
    ksm_sketch_free(small[1]);
}

/* ---- the file ---------------------------------------------------------------- */

static char *sample_file(void)
{
    g_autoptr(KsmFleetKey) key = test_key("file-format-test-key");
    g_autoptr(KsmFingerprint) fp = ksm_fingerprint_new("host-a", ksm_fleet_key_id(key), 4096);
    KsmSketch *s = ksm_sketch_new(64);
    add_ids(s, key, 0, 1000, 1);
    s->zero_pages = 5;
    ksm_fingerprint_add_guest(fp, "guest \"one\"", 42, "tenant-a", s);
    KsmSketch *t = ksm_sketch_new(64);
    add_ids(t, key, 0, 10, 1);
    ksm_fingerprint_add_guest(fp, NULL, 43, NULL, t);
    return ksm_fingerprint_to_json(fp);
}

static void test_file_roundtrip(void)
{
    g_autofree char *text = sample_file();
    g_autoptr(GError) error = NULL;
    g_autoptr(KsmFingerprint) fp = ksm_fingerprint_parse(text, strlen(text), "sample", &error);
    g_assert_no_error(error);
    g_assert_cmpstr(fp->hostname, ==, "host-a");
    g_assert_cmpuint(fp->page_size, ==, 4096);
    g_assert_cmpuint(fp->guests->len, ==, 2);
    const KsmFingerprintGuest *g = g_ptr_array_index(fp->guests, 0);
    g_assert_cmpstr(g->name, ==, "guest \"one\"");
    g_assert_cmpstr(g->trust_group, ==, "tenant-a");
    g_assert_cmpint(g->pid, ==, 42);
    g_assert_cmpuint(g->sketch->n, ==, 64);
    g_assert_cmpuint(g->sketch->pages, ==, 1000);
    g_assert_cmpuint(g->sketch->zero_pages, ==, 5);
    const KsmFingerprintGuest *h = g_ptr_array_index(fp->guests, 1);
    g_assert_null(h->name);
    g_assert_null(h->trust_group);
    g_assert_true(ksm_sketch_is_exact(h->sketch));
    g_assert_cmpfloat(ksm_sketch_intersection(g->sketch, g->sketch, NULL), ==,
                      ksm_sketch_distinct(g->sketch));
    /* Written again, the same text (time included: it is kept). */
    g_autofree char *again = ksm_fingerprint_to_json(fp);
    g_assert_cmpstr(again, ==, text);
}

static char *replace(const char *text, const char *from, const char *to)
{
    const char *at = strstr(text, from);
    g_assert_nonnull(at);
    return g_strdup_printf("%.*s%s%s", (int)(at - text), text, to, at + strlen(from));
}

/* Each malformed variant is refused, and the message says what is wrong. */
static void test_file_malformed(void)
{
    g_autofree char *good = sample_file();
    g_autofree char *deep = g_strnfill(10000, '[');
    g_autofree char *deep_in = g_strdup_printf("{\"format\": %s}", deep);
    /* A hash list whose order is wrong: swap the first two base64 quads
     * changes bytes of hash 1 only; replace the whole value instead. */
    g_autofree char *desc_b64 = NULL;
    {
        guint64 h[2] = { GUINT64_TO_LE(5), GUINT64_TO_LE(3) };
        desc_b64 = g_base64_encode((const guchar *)h, sizeof(h));
    }
    g_autofree char *two = replace(good, "\"count\" : 10,", "\"count\" : 2,");
    const char *marker = "\"hashes\" : \"";
    const char *last = g_strrstr(two, marker);
    const char *end = strchr(last + strlen(marker), '"');
    g_autofree char *descending = g_strdup_printf("%.*s%s%s", (int)(last + strlen(marker) - two),
                                                  two, desc_b64, end);
    struct {
        char *text;
        const char *expect;
    } cases[] = {
        { g_strdup("not json at all"), "not JSON" },
        { g_strdup("[1, 2]"), "not a JSON object" },
        { g_strdup(deep_in), "nested deeper" },
        { replace(good, "samepage-fingerprint/1", "samepage-fingerprint/2"), "format" },
        { replace(good, "\"format\" : \"samepage-fingerprint/1\",", ""), "\"format\"" },
        { replace(good, "\"page_size\" : 4096", "\"page_size\" : 4097"), "page_size" },
        { replace(good, "\"page_size\" : 4096", "\"page_size\" : \"4096\""), "page_size" },
        { replace(good, "\"hash\" : \"xxh3-64-secret\"", "\"hash\" : \"md5\""), "hash" },
        { replace(good, "\"k\" : 64", "\"k\" : 100000"), "\"k\"" },
        { replace(good, "\"count\" : 64", "\"count\" : 65"), "hashes" },
        { replace(good, "\"count\" : 64", "\"count\" : 63"), "hashes" },
        { replace(good, "\"pid\" : 42", "\"pid\" : -1"), "pid" },
        { replace(good, "\"pages\" : 1000", "\"pages\" : 1.5"), "pages" },
        { replace(good, "\"tenant-a\"", "\"tenant a;rm\""), "trust group" },
        { replace(good, "\"hashes\" : \"", "\"hashes\" : \"!!!!"), "base64" },
        { replace(good, "\"guests\" : [", "\"guests\" : 5, \"other\" : ["), "\"guests\"" },
        { replace(good, "\"key_id\" : \"", "\"key_id\" : \"X"), "key_id" },
        { g_strdup(descending), "ascending" },
    };
    for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autoptr(GError) error = NULL;
        g_autoptr(KsmFingerprint) fp = ksm_fingerprint_parse(cases[i].text, strlen(cases[i].text),
                                                             "bad.json", &error);
        g_test_message("case %u: %s", i, error ? error->message : "(accepted)");
        g_assert_null(fp);
        g_assert_error(error, KSM_ERROR, KSM_ERROR_INVALID);
        g_assert_nonnull(strstr(error->message, "bad.json"));
        g_assert_nonnull(strstr(error->message, cases[i].expect));
        g_free(cases[i].text);
    }
}

/* Found by fuzz-fingerprint-file: a full sketch of tiny hashes estimates
 * ~2^64 contents, which overflowed the integer written back.  No estimate
 * may exceed the pages it counts. */
static void test_estimates_bounded_by_pages(void)
{
    const char *text = "{\"format\":\"samepage-fingerprint/1\",\"hostname\":\"h\",\"time\":\"t\","
                       "\"key_id\":\"0123456789abcdef\",\"hash\":\"xxh3-64-secret\","
                       "\"page_size\":4096,\"guests\":[{\"name\":\"g\",\"pid\":1,"
                       "\"trust_group\":\"a\",\"pages\":3,\"zero_pages\":0,"
                       "\"distinct_estimate\":2,\"exact\":true,\"k\":2,\"count\":2,"
                       "\"hashes\":\"AQAAAAAAAAACAAAAAAAAAA==\"}]}";
    g_autoptr(GError) error = NULL;
    g_autoptr(KsmFingerprint) fp = ksm_fingerprint_parse(text, strlen(text), "tiny", &error);
    g_assert_no_error(error);
    const KsmFingerprintGuest *g = g_ptr_array_index(fp->guests, 0);
    g_assert_false(ksm_sketch_is_exact(g->sketch));
    g_assert_cmpfloat(ksm_sketch_distinct(g->sketch), <=, 3);
    g_assert_cmpfloat(ksm_sketch_intersection(g->sketch, g->sketch, NULL), <=, 3);
    g_autoptr(KsmHostSet) h = ksm_host_set_new(&g->sketch, 1);
    g_assert_cmpfloat(ksm_host_set_intersection(h, g->sketch, NULL), <=, 3);
    double est;
    ksm_rank_all(&h, 1, &g->sketch, 1, &est, NULL);
    g_assert_cmpfloat(est, <=, 3);
    g_autofree char *again = ksm_fingerprint_to_json(fp);
    g_assert_nonnull(strstr(again, "\"distinct_estimate\" : 3"));
}

static void test_file_load_rules(void)
{
    g_autofree char *dir = g_dir_make_tmp("samepage-fp-XXXXXX", NULL);
    g_autofree char *good = sample_file();
    g_autofree char *path = g_build_filename(dir, "a.json", NULL);
    g_autofree char *link = g_build_filename(dir, "link.json", NULL);
    g_assert_true(g_file_set_contents(path, good, -1, NULL));
    g_assert_cmpint(symlink(path, link), ==, 0);
    g_autoptr(GError) error = NULL;
    g_autoptr(KsmFingerprint) fp = ksm_fingerprint_load(path, &error);
    g_assert_no_error(error);
    g_assert_cmpstr(fp->path, ==, path);
    g_autoptr(KsmFingerprint) via_link = ksm_fingerprint_load(link, &error);
    g_assert_null(via_link);
    g_assert_nonnull(strstr(error->message, "symbolic link"));
    g_clear_error(&error);
    g_autoptr(KsmFingerprint) of_dir = ksm_fingerprint_load(dir, &error);
    g_assert_null(of_dir);
    g_assert_nonnull(strstr(error->message, "not a regular file"));
    unlink(link);
    unlink(path);
    rmdir(dir);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/fingerprint/key", test_key_rules);
    g_test_add_func("/fingerprint/sketch/exact-when-small", test_exact_when_small);
    g_test_add_func("/fingerprint/sketch/union", test_union_is_sketch_of_union);
    g_test_add_func("/fingerprint/sketch/estimate-error", test_estimate_error);
    g_test_add_func("/fingerprint/sketch/host-set", test_host_set);
    g_test_add_func("/fingerprint/file/roundtrip", test_file_roundtrip);
    g_test_add_func("/fingerprint/file/malformed", test_file_malformed);
    g_test_add_func("/fingerprint/file/load", test_file_load_rules);
    g_test_add_func("/fingerprint/file/estimates-bounded", test_estimates_bounded_by_pages);
    return g_test_run();
}
