/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cmd-place.c: `samepage place`: where would a guest share the most?
 *
 *   samepage place --hosts DIR GUEST.json   rank the hosts whose fingerprints
 *                                           are in DIR for each guest of GUEST.json
 *   samepage place --pairs FILE...          the pairwise matrix of every guest
 *
 * The prediction for guest G on host H is |D_G ∩ D_H|: the distinct page
 * contents G has in common with H's guests, which is what KSM saves on top
 * of running G elsewhere (ksm/ksm-fingerprint.h).  A host where a guest of
 * another trust group runs is never ranked: it is listed as excluded, with
 * the reason (guests without a group count as "default", as in the libvirt
 * hook).  So is a host whose file was made with another fleet key or page
 * size.  Every file is hostile input (ksm_fingerprint_load checks it); names
 * from files are escaped before they are printed.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <json-glib/json-glib.h>
#include <ksm/ksm-fingerprint.h>

#include "cli.h"

#define MAX_HOSTS 100000

typedef struct {
    KsmFingerprint *fp;
    KsmHostSet *set;
    char *excluded;          /* why not for this guest (per guest, reset) */
} Host;

static const char *group_of(const KsmFingerprintGuest *g)
{
    return g->trust_group ? g->trust_group : "default";
}

static char *guest_label(const KsmFingerprintGuest *g)
{
    return g->name ? cli_escape_text(g->name) : g_strdup_printf("pid %" G_GINT64_FORMAT, g->pid);
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The *.json files of dir, sorted; skip is left out (the guest's own file). */
static GPtrArray *list_dir(const char *dir, const char *skip, GError **error)
{
    g_autoptr(GDir) d = g_dir_open(dir, 0, error);
    if (!d) {
        return NULL;
    }
    GPtrArray *paths = g_ptr_array_new_with_free_func(g_free);
    const char *name;
    while ((name = g_dir_read_name(d))) {
        if (!g_str_has_suffix(name, ".json") || name[0] == '.') {
            continue;
        }
        char *path = g_build_filename(dir, name, NULL);
        g_autofree char *real = realpath(path, NULL);
        if (skip && real && strcmp(real, skip) == 0) {
            g_free(path);
            continue;
        }
        if (paths->len >= MAX_HOSTS) {
            g_free(path);
            g_ptr_array_unref(paths);
            g_set_error(error, KSM_ERROR, KSM_ERROR_INVALID, "more than %d files in the "
                        "directory", MAX_HOSTS);
            return NULL;
        }
        g_ptr_array_add(paths, path);
    }
    qsort(paths->pdata, paths->len, sizeof(char *), compare_names);
    return paths;
}

typedef struct {
    const Host *host;
    double shared;
    guint64 samples;
} Ranked;

static int compare_ranked(const void *a, const void *b)
{
    const Ranked *x = a, *y = b;
    if (x->shared != y->shared) {
        return x->shared > y->shared ? -1 : 1;
    }
    return strcmp(x->host->fp->hostname, y->host->fp->hostname);
}

/* Why guest g may not go to host h, or NULL. */
static char *exclusion(const KsmFingerprint *guest_fp, const KsmFingerprintGuest *g, const Host *h)
{
    if (strcmp(h->fp->key_id, guest_fp->key_id) != 0) {
        return g_strdup_printf("made with another fleet key (key id %s, the guest's %s)",
                               h->fp->key_id, guest_fp->key_id);
    }
    if (h->fp->page_size != guest_fp->page_size) {
        return g_strdup_printf("page size %" G_GUINT64_FORMAT ", the guest's %" G_GUINT64_FORMAT,
                               h->fp->page_size, guest_fp->page_size);
    }
    for (guint i = 0; i < h->fp->guests->len; i++) {
        const KsmFingerprintGuest *other = g_ptr_array_index(h->fp->guests, i);
        if (strcmp(group_of(other), group_of(g)) != 0) {
            g_autofree char *label = guest_label(other);
            return g_strdup_printf("runs guest '%s' of trust group '%s'; this guest is in '%s'",
                                   label, group_of(other), group_of(g));
        }
    }
    return NULL;
}

static void json_int(JsonBuilder *b, const char *name, gint64 v)
{
    json_builder_set_member_name(b, name);
    json_builder_add_int_value(b, v);
}

static void json_str(JsonBuilder *b, const char *name, const char *v)
{
    json_builder_set_member_name(b, name);
    if (v) {
        g_autofree char *valid = cli_utf8_valid(v);
        json_builder_add_string_value(b, valid);
    } else {
        json_builder_add_null_value(b);
    }
}

static char *json_text(JsonBuilder *b)
{
    g_autoptr(JsonGenerator) gen = json_generator_new();
    g_autoptr(JsonNode) root = json_builder_get_root(b);
    json_generator_set_pretty(gen, TRUE);
    json_generator_set_root(gen, root);
    g_autofree char *text = json_generator_to_data(gen, NULL);
    return g_strconcat(text, "\n", NULL);
}

static double pages_mib(double pages, guint64 page_size)
{
    return pages * (double)page_size / 1048576.0;
}

static KsmHostSet *host_set_of(const KsmFingerprint *fp)
{
    g_autofree KsmSketch **sk = g_new0(KsmSketch *, MAX(fp->guests->len, 1));
    for (guint i = 0; i < fp->guests->len; i++) {
        sk[i] = ((KsmFingerprintGuest *)g_ptr_array_index(fp->guests, i))->sketch;
    }
    return ksm_host_set_new(sk, fp->guests->len);
}

static void rank_table(GString *out, const KsmFingerprint *gfp, const KsmFingerprintGuest *g,
                       const Ranked *ranked, guint n_ranked, Host *hosts, guint n_hosts)
{
    g_autofree char *label = guest_label(g);
    g_autofree char *group = cli_escape_text(group_of(g));
    double distinct = ksm_sketch_distinct(g->sketch);
    g_string_append_printf(out, "Guest %s: %.0f distinct non-zero pages (%.1f MiB), trust group "
                           "%s\n", label, distinct, pages_mib(distinct, gfp->page_size), group);
    g_string_append_printf(out, "  %-4s %-24s %6s %14s %12s %8s\n", "RANK", "HOST", "GUESTS",
                           "SHARED-PAGES", "SHARED-MiB", "OF-GUEST");
    for (guint i = 0; i < n_ranked; i++) {
        const Ranked *r = &ranked[i];
        g_autofree char *hn = cli_escape_text(r->host->fp->hostname);
        g_string_append_printf(out, "  %-4u %-24s %6u %14.0f %12.1f %7.1f%%\n", i + 1, hn,
                               r->host->fp->guests->len, r->shared,
                               pages_mib(r->shared, gfp->page_size),
                               distinct > 0 ? 100.0 * r->shared / distinct : 0.0);
    }
    for (guint i = 0; i < n_hosts; i++) {
        if (hosts[i].excluded) {
            g_autofree char *hn = cli_escape_text(hosts[i].fp->hostname);
            g_autofree char *why = cli_escape_text(hosts[i].excluded);
            g_string_append_printf(out, "  excluded %s: %s\n", hn, why);
        }
    }
}

static void rank_json(JsonBuilder *b, const KsmFingerprint *gfp, const KsmFingerprintGuest *g,
                      const Ranked *ranked, guint n_ranked, Host *hosts, guint n_hosts)
{
    json_builder_begin_object(b);
    json_str(b, "name", g->name);
    json_int(b, "pid", g->pid);
    json_str(b, "trust_group", group_of(g));
    json_int(b, "distinct_estimate", (gint64)(ksm_sketch_distinct(g->sketch) + 0.5));
    json_builder_set_member_name(b, "hosts");
    json_builder_begin_array(b);
    for (guint i = 0; i < n_ranked; i++) {
        const Ranked *r = &ranked[i];
        json_builder_begin_object(b);
        json_int(b, "rank", i + 1);
        json_str(b, "hostname", r->host->fp->hostname);
        json_str(b, "file", r->host->fp->path);
        json_int(b, "guests", r->host->fp->guests->len);
        json_int(b, "predicted_shared_pages", (gint64)(r->shared + 0.5));
        json_int(b, "predicted_shared_bytes", (gint64)(r->shared * (double)gfp->page_size + 0.5));
        json_int(b, "samples", (gint64)r->samples);
        json_builder_end_object(b);
    }
    json_builder_end_array(b);
    json_builder_set_member_name(b, "excluded");
    json_builder_begin_array(b);
    for (guint i = 0; i < n_hosts; i++) {
        if (hosts[i].excluded) {
            json_builder_begin_object(b);
            json_str(b, "hostname", hosts[i].fp->hostname);
            json_str(b, "file", hosts[i].fp->path);
            json_str(b, "reason", hosts[i].excluded);
            json_builder_end_object(b);
        }
    }
    json_builder_end_array(b);
    json_builder_end_object(b);
}

static int place_hosts(const char *dir, const char *guest_path, const char *only,
                       gboolean as_json)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(KsmFingerprint) gfp = ksm_fingerprint_load(guest_path, &error);
    if (!gfp) {
        return cli_fail(CLI_EXIT_FAILURE, "%s", error->message);
    }
    g_autofree char *real_guest = realpath(guest_path, NULL);
    g_autoptr(GPtrArray) paths = list_dir(dir, real_guest, &error);
    if (!paths) {
        g_autofree char *shown = cli_escape_text(dir);
        return cli_fail(CLI_EXIT_FAILURE, "--hosts %s: %s", shown, error->message);
    }
    if (paths->len == 0) {
        g_autofree char *shown = cli_escape_text(dir);
        return cli_fail(CLI_EXIT_FAILURE, "--hosts %s: no *.json fingerprint file in it (make "
                        "them with: samepage fingerprint --host -o HOST.json)", shown);
    }
    Host *hosts = g_new0(Host, paths->len);
    guint n_hosts = 0;
    for (guint i = 0; i < paths->len; i++) {
        g_autoptr(GError) e = NULL;
        KsmFingerprint *fp = ksm_fingerprint_load(g_ptr_array_index(paths, i), &e);
        if (!fp) {
            /* One bad file does not hide the others: said, and left out. */
            g_printerr("samepage: warning: %s (left out)\n", e->message);
            continue;
        }
        hosts[n_hosts].fp = fp;
        hosts[n_hosts].set = host_set_of(fp);
        n_hosts++;
    }

    /* Every guest of the file against every host, in one join (ksm_rank_all). */
    guint n_guests = gfp->guests->len;
    g_autofree KsmHostSet **sets = g_new0(KsmHostSet *, MAX(n_hosts, 1));
    g_autofree KsmSketch **sketches = g_new0(KsmSketch *, MAX(n_guests, 1));
    for (guint h = 0; h < n_hosts; h++) {
        sets[h] = hosts[h].set;
    }
    for (guint gi = 0; gi < n_guests; gi++) {
        sketches[gi] = ((KsmFingerprintGuest *)g_ptr_array_index(gfp->guests, gi))->sketch;
    }
    g_autofree double *est = g_new0(double, (gsize)MAX(n_guests, 1) * MAX(n_hosts, 1));
    g_autofree guint64 *smp = g_new0(guint64, (gsize)MAX(n_guests, 1) * MAX(n_hosts, 1));
    ksm_rank_all(sets, n_hosts, sketches, n_guests, est, smp);

    g_autoptr(JsonBuilder) b = json_builder_new();
    GString *out = g_string_new(NULL);
    g_autofree Ranked *ranked = g_new0(Ranked, MAX(n_hosts, 1));
    guint placed = 0;
    json_builder_begin_object(b);
    json_str(b, "guest_file", guest_path);
    json_builder_set_member_name(b, "guests");
    json_builder_begin_array(b);
    for (guint gi = 0; gi < gfp->guests->len; gi++) {
        const KsmFingerprintGuest *g = g_ptr_array_index(gfp->guests, gi);
        if (only && (!g->name || strcmp(g->name, only) != 0)) {
            continue;
        }
        guint n_ranked = 0;
        for (guint h = 0; h < n_hosts; h++) {
            g_clear_pointer(&hosts[h].excluded, g_free);
            hosts[h].excluded = exclusion(gfp, g, &hosts[h]);
            if (!hosts[h].excluded) {
                Ranked *r = &ranked[n_ranked++];
                r->host = &hosts[h];
                r->shared = est[(gsize)gi * n_hosts + h];
                r->samples = smp[(gsize)gi * n_hosts + h];
            }
        }
        qsort(ranked, n_ranked, sizeof(Ranked), compare_ranked);
        if (as_json) {
            rank_json(b, gfp, g, ranked, n_ranked, hosts, n_hosts);
        } else {
            if (placed) {
                g_string_append_c(out, '\n');
            }
            rank_table(out, gfp, g, ranked, n_ranked, hosts, n_hosts);
        }
        placed++;
    }
    json_builder_end_array(b);
    json_builder_end_object(b);
    for (guint h = 0; h < n_hosts; h++) {
        g_free(hosts[h].excluded);
        ksm_host_set_free(hosts[h].set);
        ksm_fingerprint_free(hosts[h].fp);
    }
    g_free(hosts);
    if (placed == 0) {
        g_string_free(out, TRUE);
        g_autofree char *shown = cli_escape_text(guest_path);
        if (only) {
            g_autofree char *shown_only = cli_escape_text(only);
            return cli_fail(CLI_EXIT_FAILURE, "%s has no guest named '%s'", shown, shown_only);
        }
        return cli_fail(CLI_EXIT_FAILURE, "%s holds no guest to place", shown);
    }
    if (as_json) {
        g_autofree char *text = json_text(b);
        fputs(text, stdout);
    } else {
        fputs(out->str, stdout);
    }
    g_string_free(out, TRUE);
    return CLI_EXIT_OK;
}

/* ---- --pairs ---------------------------------------------------------------- */

static int place_pairs(char **files, gboolean as_json)
{
    g_autoptr(GPtrArray) fps = g_ptr_array_new_with_free_func((GDestroyNotify)ksm_fingerprint_free);
    g_autoptr(GPtrArray) guests = g_ptr_array_new();     /* KsmFingerprintGuest*, borrowed */
    g_autoptr(GPtrArray) owners = g_ptr_array_new();     /* their KsmFingerprint* */

    for (guint i = 0; files[i]; i++) {
        g_autoptr(GError) error = NULL;
        KsmFingerprint *fp = ksm_fingerprint_load(files[i], &error);
        if (!fp) {
            return cli_fail(CLI_EXIT_FAILURE, "%s", error->message);
        }
        g_ptr_array_add(fps, fp);
        const KsmFingerprint *first = g_ptr_array_index(fps, 0);
        if (strcmp(fp->key_id, first->key_id) != 0 || fp->page_size != first->page_size) {
            g_autofree char *a = cli_escape_text(files[0]), *b = cli_escape_text(files[i]);
            return cli_fail(CLI_EXIT_FAILURE, "%s and %s were made with different fleet keys "
                            "or page sizes: their hashes cannot be compared", a, b);
        }
        for (guint g = 0; g < fp->guests->len; g++) {
            g_ptr_array_add(guests, g_ptr_array_index(fp->guests, g));
            g_ptr_array_add(owners, fp);
        }
    }
    guint n = guests->len;
    if (n == 0) {
        return cli_fail(CLI_EXIT_FAILURE, "the files hold no guest");
    }
    const KsmFingerprint *first = g_ptr_array_index(fps, 0);
    g_autofree double *m = g_new0(double, (gsize)n * n);
    for (guint i = 0; i < n; i++) {
        const KsmFingerprintGuest *a = g_ptr_array_index(guests, i);
        m[(gsize)i * n + i] = ksm_sketch_distinct(a->sketch);
        for (guint j = i + 1; j < n; j++) {
            const KsmFingerprintGuest *b = g_ptr_array_index(guests, j);
            m[(gsize)i * n + j] = m[(gsize)j * n + i] =
                ksm_sketch_intersection(a->sketch, b->sketch, NULL);
        }
    }
    if (as_json) {
        g_autoptr(JsonBuilder) b = json_builder_new();
        json_builder_begin_object(b);
        json_int(b, "page_size", (gint64)first->page_size);
        json_builder_set_member_name(b, "guests");
        json_builder_begin_array(b);
        for (guint i = 0; i < n; i++) {
            const KsmFingerprintGuest *g = g_ptr_array_index(guests, i);
            json_builder_begin_object(b);
            json_str(b, "name", g->name);
            json_int(b, "pid", g->pid);
            json_str(b, "hostname", ((KsmFingerprint *)g_ptr_array_index(owners, i))->hostname);
            json_str(b, "trust_group", group_of(g));
            json_builder_end_object(b);
        }
        json_builder_end_array(b);
        json_builder_set_member_name(b, "shared_pages");
        json_builder_begin_array(b);
        for (guint i = 0; i < n; i++) {
            json_builder_begin_array(b);
            for (guint j = 0; j < n; j++) {
                json_builder_add_int_value(b, (gint64)(m[(gsize)i * n + j] + 0.5));
            }
            json_builder_end_array(b);
        }
        json_builder_end_array(b);
        json_builder_end_object(b);
        g_autofree char *text = json_text(b);
        fputs(text, stdout);
        return CLI_EXIT_OK;
    }
    printf("Predicted shared distinct pages for each pair (diagonal: the guest's own distinct "
           "pages); pairs of different trust groups marked *\n");
    printf("%-4s %-20s", "", "GUEST");
    for (guint j = 0; j < n; j++) {
        printf(" %9u", j + 1);
    }
    putchar('\n');
    for (guint i = 0; i < n; i++) {
        const KsmFingerprintGuest *a = g_ptr_array_index(guests, i);
        g_autofree char *label = guest_label(a);
        printf("%-4u %-20.20s", i + 1, label);
        for (guint j = 0; j < n; j++) {
            const KsmFingerprintGuest *b = g_ptr_array_index(guests, j);
            gboolean other = strcmp(group_of(a), group_of(b)) != 0;
            printf(" %8.0f%s", m[(gsize)i * n + j], other ? "*" : " ");
        }
        putchar('\n');
    }
    return CLI_EXIT_OK;
}

int cli_cmd_place(CliGlobal *global, int argc, char **argv)
{
    g_autofree char *hosts_dir = NULL, *guest_name = NULL;
    gboolean pairs = FALSE, as_json = FALSE;
    const GOptionEntry entries[] = {
        { "hosts", 'H', 0, G_OPTION_ARG_FILENAME, &hosts_dir,
          "Rank the hosts whose fingerprints (*.json) are in DIR", "DIR" },
        { "guest", 'G', 0, G_OPTION_ARG_STRING, &guest_name,
          "Only the guest NAME of GUEST.json", "NAME" },
        { "pairs", 0, 0, G_OPTION_ARG_NONE, &pairs,
          "The pairwise matrix of every guest in FILE...", NULL },
        { "json", 'j', 0, G_OPTION_ARG_NONE, &as_json, "Print one JSON object", NULL },
        { NULL },
    };
    g_autoptr(GOptionContext) octx =
        cli_option_context_new(global, "place", "--hosts DIR GUEST.json | --pairs FILE...",
                               "Predict the pages a guest would share on each host, from\n"
                               "fleet fingerprints (samepage fingerprint): hosts ranked by\n"
                               "predicted shared pages, hosts of other trust groups excluded.",
                               entries);

    if (!cli_parse_options(octx, &argc, &argv)) {
        return CLI_EXIT_USAGE;
    }
    if (pairs == (hosts_dir != NULL)) {
        return cli_fail(CLI_EXIT_USAGE, "say one of --hosts DIR GUEST.json or --pairs FILE...");
    }
    if (pairs) {
        if (argc < 2) {
            return cli_fail(CLI_EXIT_USAGE, "--pairs needs at least one fingerprint file");
        }
        return place_pairs(argv + 1, as_json);
    }
    if (argc != 2) {
        return cli_fail(CLI_EXIT_USAGE, "--hosts DIR needs exactly one GUEST.json (the "
                        "fingerprint of the guest to place)");
    }
    return place_hosts(hosts_dir, argv[1], guest_name, as_json);
}
