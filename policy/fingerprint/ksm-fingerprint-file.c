/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ksm-fingerprint-file.c: the fingerprint file, written and read back.
 *
 *   {
 *     "format": "samepage-fingerprint/1",
 *     "hostname": "host-a", "time": "2026-12-02T10:30:00Z",
 *     "key_id": "16 hex digits", "hash": "xxh3-64-secret", "page_size": 4096,
 *     "guests": [ { "name": "g1" | null, "pid": 1234, "trust_group": "t" | null,
 *                   "pages": N, "zero_pages": Z, "distinct_estimate": D,
 *                   "exact": bool, "k": 8192, "count": n,
 *                   "hashes": "base64 of n little-endian 64-bit hashes, ascending" } ]
 *   }
 *
 * One reader, and it trusts nothing: a file from another host may be
 * anything.  It checks the size, the nesting depth before json-glib parses
 * (json-glib recurses once per level), the format version, every member's
 * type and range, and the sketch's invariants (count <= k <= 8192, hashes
 * strictly ascending, exactly count of them); names must be valid UTF-8 of
 * bounded length and trust groups of the hook's alphabet.
 * "distinct_estimate" is written for people and ignored when read: it
 * follows from the hashes.
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <string.h>
#include <json-glib/json-glib.h>

#include <ksm/ksm.h>
#include <ksm/ksm-fingerprint.h>

#define MAX_DEPTH     8
#define MAX_NAME      1024
#define HASH_NAME     "xxh3-64-secret"

KsmFingerprint *ksm_fingerprint_new(const char *hostname, const char *key_id, guint64 page_size)
{
    KsmFingerprint *fp = g_new0(KsmFingerprint, 1);
    fp->hostname = g_strdup(hostname);
    fp->key_id = g_strdup(key_id);
    fp->page_size = page_size;
    g_autoptr(GDateTime) now = g_date_time_new_now_utc();
    fp->time = g_date_time_format(now, "%Y-%m-%dT%H:%M:%SZ");
    fp->guests = g_ptr_array_new();
    return fp;
}

static void guest_free(KsmFingerprintGuest *g)
{
    g_free(g->name);
    g_free(g->trust_group);
    ksm_sketch_free(g->sketch);
    g_free(g);
}

void ksm_fingerprint_free(KsmFingerprint *fp)
{
    if (!fp) {
        return;
    }
    g_free(fp->hostname);
    g_free(fp->time);
    g_free(fp->key_id);
    g_free(fp->path);
    if (fp->guests) {
        for (guint i = 0; i < fp->guests->len; i++) {
            guest_free(g_ptr_array_index(fp->guests, i));
        }
        g_ptr_array_unref(fp->guests);
    }
    g_free(fp);
}

void ksm_fingerprint_add_guest(KsmFingerprint *fp, const char *name, gint64 pid,
                               const char *trust_group, KsmSketch *sketch)
{
    KsmFingerprintGuest *g = g_new0(KsmFingerprintGuest, 1);
    g->name = g_strdup(name);
    g->pid = pid;
    g->trust_group = g_strdup(trust_group);
    ksm_sketch_flush(sketch);
    g->sketch = sketch;
    g_ptr_array_add(fp->guests, g);
}

gboolean ksm_trust_group_valid(const char *group)
{
    gsize len = group ? strlen(group) : 0;
    if (len == 0 || len > KSM_TRUST_GROUP_MAX || !g_ascii_isalnum(group[0])) {
        return FALSE;
    }
    for (gsize i = 0; i < len; i++) {
        if (!g_ascii_isalnum(group[i]) && !strchr("._-", group[i])) {
            return FALSE;
        }
    }
    return TRUE;
}

/* ---- writing ---------------------------------------------------------------- */

static void member_string(JsonBuilder *b, const char *name, const char *value)
{
    json_builder_set_member_name(b, name);
    if (value) {
        /* Names come from QEMU command lines: any bytes.  JSON needs UTF-8. */
        g_autofree char *valid = g_utf8_make_valid(value, -1);
        json_builder_add_string_value(b, valid);
    } else {
        json_builder_add_null_value(b);
    }
}

static void member_int(JsonBuilder *b, const char *name, gint64 value)
{
    json_builder_set_member_name(b, name);
    json_builder_add_int_value(b, value);
}

char *ksm_fingerprint_to_json(const KsmFingerprint *fp)
{
    g_autoptr(JsonBuilder) b = json_builder_new();

    json_builder_begin_object(b);
    member_string(b, "format", KSM_FINGERPRINT_FORMAT);
    member_string(b, "hostname", fp->hostname);
    member_string(b, "time", fp->time);
    member_string(b, "key_id", fp->key_id);
    member_string(b, "hash", HASH_NAME);
    member_int(b, "page_size", (gint64)fp->page_size);
    json_builder_set_member_name(b, "guests");
    json_builder_begin_array(b);
    for (guint i = 0; i < fp->guests->len; i++) {
        const KsmFingerprintGuest *g = g_ptr_array_index(fp->guests, i);
        KsmSketch *s = g->sketch;
        ksm_sketch_flush(s);
        json_builder_begin_object(b);
        member_string(b, "name", g->name);
        member_int(b, "pid", g->pid);
        member_string(b, "trust_group", g->trust_group);
        member_int(b, "pages", (gint64)s->pages);
        member_int(b, "zero_pages", (gint64)s->zero_pages);
        member_int(b, "distinct_estimate", (gint64)(ksm_sketch_distinct(s) + 0.5));
        json_builder_set_member_name(b, "exact");
        json_builder_add_boolean_value(b, ksm_sketch_is_exact(s));
        member_int(b, "k", s->k);
        member_int(b, "count", s->n);
        g_autofree guint64 *le = g_new(guint64, MAX(s->n, 1));
        for (guint j = 0; j < s->n; j++) {
            le[j] = GUINT64_TO_LE(s->hashes[j]);
        }
        g_autofree char *b64 = g_base64_encode((const guchar *)le, s->n * sizeof(guint64));
        member_string(b, "hashes", b64);
        json_builder_end_object(b);
    }
    json_builder_end_array(b);
    json_builder_end_object(b);

    g_autoptr(JsonGenerator) gen = json_generator_new();
    g_autoptr(JsonNode) root = json_builder_get_root(b);
    json_generator_set_pretty(gen, TRUE);
    json_generator_set_root(gen, root);
    g_autofree char *text = json_generator_to_data(gen, NULL);
    return g_strconcat(text, "\n", NULL);
}

/* ---- reading ---------------------------------------------------------------- */

static gboolean bad(GError **error, const char *what, const char *format, ...) G_GNUC_PRINTF(3, 4);

static gboolean bad(GError **error, const char *what, const char *format, ...)
{
    va_list ap;
    va_start(ap, format);
    g_autofree char *msg = g_strdup_vprintf(format, ap);
    va_end(ap);
    g_set_error(error, KSM_ERROR, KSM_ERROR_INVALID, "%s: not a usable fingerprint file: %s",
                what, msg);
    return FALSE;
}

/* Nesting depth, counted outside strings, before json-glib sees the text. */
static gboolean depth_ok(const char *text, gsize len)
{
    int depth = 0;
    gboolean in_string = FALSE;
    for (gsize i = 0; i < len; i++) {
        char c = text[i];
        if (in_string) {
            if (c == '\\') {
                i++;
            } else if (c == '"') {
                in_string = FALSE;
            }
        } else if (c == '"') {
            in_string = TRUE;
        } else if (c == '{' || c == '[') {
            if (++depth > MAX_DEPTH) {
                return FALSE;
            }
        } else if (c == '}' || c == ']') {
            depth--;
        }
    }
    return TRUE;
}

/* A member that must be a string (or null when nullable); *out borrowed. */
static gboolean get_string(JsonObject *o, const char *member, gboolean nullable, gsize max,
                           const char **out, const char *what, const char *where, GError **error)
{
    JsonNode *n = json_object_get_member(o, member);
    *out = NULL;
    if (!n || (JSON_NODE_HOLDS_NULL(n) && !nullable)) {
        return bad(error, what, "%s has no \"%s\"", where, member);
    }
    if (JSON_NODE_HOLDS_NULL(n)) {
        return TRUE;
    }
    if (!JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_STRING) {
        return bad(error, what, "%s: \"%s\" is not a string", where, member);
    }
    const char *s = json_node_get_string(n);
    if (strlen(s) > max) {
        return bad(error, what, "%s: \"%s\" is longer than %zu bytes", where, member, max);
    }
    *out = s;
    return TRUE;
}

static gboolean get_uint(JsonObject *o, const char *member, guint64 max, guint64 *out,
                         const char *what, const char *where, GError **error)
{
    JsonNode *n = json_object_get_member(o, member);
    if (!n || !JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_INT64) {
        return bad(error, what, "%s: \"%s\" is missing or not an integer", where, member);
    }
    gint64 v = json_node_get_int(n);
    if (v < 0 || (guint64)v > max) {
        return bad(error, what, "%s: \"%s\" is %" G_GINT64_FORMAT ", outside 0..%" G_GUINT64_FORMAT,
                   where, member, v, max);
    }
    *out = (guint64)v;
    return TRUE;
}

static gboolean parse_guest(JsonNode *node, guint index, KsmFingerprint *fp, const char *what,
                            GError **error)
{
    g_autofree char *where = g_strdup_printf("guest %u", index + 1);
    if (!JSON_NODE_HOLDS_OBJECT(node)) {
        return bad(error, what, "%s is not an object", where);
    }
    JsonObject *o = json_node_get_object(node);
    const char *name, *group, *b64;
    guint64 pid, pages, zero, k, count;
    if (!get_string(o, "name", TRUE, MAX_NAME, &name, what, where, error) ||
        !get_string(o, "trust_group", TRUE, KSM_TRUST_GROUP_MAX, &group, what, where, error) ||
        !get_uint(o, "pid", G_MAXINT32, &pid, what, where, error) ||
        !get_uint(o, "pages", G_GUINT64_CONSTANT(1) << 50, &pages, what, where, error) ||
        !get_uint(o, "zero_pages", G_GUINT64_CONSTANT(1) << 50, &zero, what, where, error) ||
        !get_uint(o, "k", KSM_SKETCH_MAX_K, &k, what, where, error) ||
        !get_uint(o, "count", KSM_SKETCH_MAX_K, &count, what, where, error) ||
        !get_string(o, "hashes", FALSE, (KSM_SKETCH_MAX_K * 8 + 2) / 3 * 4, &b64, what, where,
                    error)) {
        return FALSE;
    }
    if (name && !g_utf8_validate(name, -1, NULL)) {
        return bad(error, what, "%s: \"name\" is not valid UTF-8", where);
    }
    if (group && !ksm_trust_group_valid(group)) {
        return bad(error, what, "%s: \"trust_group\" is not a trust group name (1 to %u of "
                   "A-Z a-z 0-9 . _ -, starting with a letter or digit)", where,
                   KSM_TRUST_GROUP_MAX);
    }
    if (k == 0 || count > k) {
        return bad(error, what, "%s: sketch of %" G_GUINT64_FORMAT " hashes in a capacity of %"
                   G_GUINT64_FORMAT, where, count, k);
    }
    if (pages > (G_GUINT64_CONSTANT(1) << 60) / fp->page_size) {
        return bad(error, what, "%s: %" G_GUINT64_FORMAT " pages of %" G_GUINT64_FORMAT
                   " bytes is more than 1 EiB", where, pages, fp->page_size);
    }
    if (count > pages) {
        return bad(error, what, "%s: %" G_GUINT64_FORMAT " hashes from %" G_GUINT64_FORMAT
                   " pages", where, count, pages);
    }
    /* g_base64_decode accepts anything: check the alphabet and length first. */
    gsize b64_len = strlen(b64);
    if (b64_len != (count * 8 + 2) / 3 * 4 ||
        strspn(b64, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=") != b64_len) {
        return bad(error, what, "%s: \"hashes\" is not the base64 of %" G_GUINT64_FORMAT
                   " 64-bit hashes", where, count);
    }
    gsize len = 0;
    g_autofree guchar *raw = count ? g_base64_decode(b64, &len) : NULL;
    if (len != count * 8) {
        return bad(error, what, "%s: \"hashes\" holds %zu bytes, not %" G_GUINT64_FORMAT,
                   where, len, count * 8);
    }
    g_autoptr(KsmSketch) s = ksm_sketch_new((guint)k);
    for (guint64 j = 0; j < count; j++) {
        guint64 v;
        memcpy(&v, raw + j * 8, 8);
        v = GUINT64_FROM_LE(v);
        if (j > 0 && v <= s->hashes[j - 1]) {
            return bad(error, what, "%s: hashes are not strictly ascending (hash %" G_GUINT64_FORMAT
                       ")", where, j + 1);
        }
        s->hashes[j] = v;
    }
    s->n = (guint)count;
    s->pages = pages;
    s->zero_pages = zero;
    ksm_fingerprint_add_guest(fp, name, (gint64)pid, group, g_steal_pointer(&s));
    return TRUE;
}

KsmFingerprint *ksm_fingerprint_parse(const char *text, gsize len, const char *what,
                                      GError **error)
{
    if (len > KSM_FINGERPRINT_MAX_FILE) {
        bad(error, what, "larger than %u MiB", KSM_FINGERPRINT_MAX_FILE >> 20);
        return NULL;
    }
    if (!depth_ok(text, len)) {
        bad(error, what, "JSON nested deeper than %d levels", MAX_DEPTH);
        return NULL;
    }
    g_autoptr(JsonParser) parser = json_parser_new_immutable();
    g_autoptr(GError) local = NULL;
    if (!json_parser_load_from_data(parser, text, (gssize)len, &local)) {
        bad(error, what, "not JSON (%s)", local->message);
        return NULL;
    }
    JsonNode *root = json_parser_get_root(parser);
    if (!root || !JSON_NODE_HOLDS_OBJECT(root)) {
        bad(error, what, "the top level is not a JSON object");
        return NULL;
    }
    JsonObject *o = json_node_get_object(root);
    const char *format, *hostname, *time, *key_id, *hash;
    guint64 page_size;
    if (!get_string(o, "format", FALSE, 64, &format, what, "the file", error)) {
        return NULL;
    }
    if (strcmp(format, KSM_FINGERPRINT_FORMAT) != 0) {
        g_autofree char *shown = g_strescape(format, NULL);
        bad(error, what, "format \"%s\" is not %s (made by another samepage version: "
            "fingerprint every host with the same version)", shown, KSM_FINGERPRINT_FORMAT);
        return NULL;
    }
    if (!get_string(o, "hostname", FALSE, 255, &hostname, what, "the file", error) ||
        !get_string(o, "time", FALSE, 64, &time, what, "the file", error) ||
        !get_string(o, "key_id", FALSE, 16, &key_id, what, "the file", error) ||
        !get_string(o, "hash", FALSE, 64, &hash, what, "the file", error) ||
        !get_uint(o, "page_size", G_GUINT64_CONSTANT(1) << 30, &page_size, what, "the file",
                  error)) {
        return NULL;
    }
    if (!g_utf8_validate(hostname, -1, NULL) || !*hostname) {
        bad(error, what, "\"hostname\" is empty or not valid UTF-8");
        return NULL;
    }
    if (strlen(key_id) != 16 || strspn(key_id, "0123456789abcdef") != 16) {
        bad(error, what, "\"key_id\" is not 16 lower-case hex digits");
        return NULL;
    }
    if (strcmp(hash, HASH_NAME) != 0) {
        bad(error, what, "\"hash\" is not %s", HASH_NAME);
        return NULL;
    }
    if (page_size < 4096 || (page_size & (page_size - 1))) {
        bad(error, what, "\"page_size\" %" G_GUINT64_FORMAT " is not a power of two >= 4096",
            page_size);
        return NULL;
    }
    JsonNode *guests = json_object_get_member(o, "guests");
    if (!guests || !JSON_NODE_HOLDS_ARRAY(guests)) {
        bad(error, what, "\"guests\" is missing or not an array");
        return NULL;
    }
    JsonArray *arr = json_node_get_array(guests);
    guint n = json_array_get_length(arr);
    if (n > KSM_FINGERPRINT_MAX_GUESTS) {
        bad(error, what, "%u guests, more than %u", n, KSM_FINGERPRINT_MAX_GUESTS);
        return NULL;
    }
    g_autoptr(KsmFingerprint) fp = ksm_fingerprint_new(hostname, key_id, page_size);
    g_free(fp->time);
    fp->time = g_strdup(time);
    for (guint i = 0; i < n; i++) {
        if (!parse_guest(json_array_get_element(arr, i), i, fp, what, error)) {
            return NULL;
        }
    }
    return g_steal_pointer(&fp);
}

static gssize read_all(int fd, char *buf, gsize max)
{
    gsize done = 0;
    while (done < max) {
        gssize r = read(fd, buf + done, max - done);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0) {
            return -1;
        }
        if (r == 0) {
            break;
        }
        done += (gsize)r;
    }
    return (gssize)done;
}

KsmFingerprint *ksm_fingerprint_load(const char *path, GError **error)
{
    g_autofree char *text = NULL;
    gsize len = 0;
    g_autofree char *shown = g_strescape(path, NULL);

    /* A regular file, not through a link (a FIFO would block, a device
     * never end), read at most one byte past the limit. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    struct stat st;
    if (fd < 0) {
        g_set_error(error, KSM_ERROR, KSM_ERROR_FAILED, "cannot open %s: %s%s", shown,
                    g_strerror(errno), errno == ELOOP ? " (a symbolic link: give the file "
                    "itself)" : "");
        return NULL;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        g_set_error(error, KSM_ERROR, KSM_ERROR_INVALID, "%s is not a regular file", shown);
        return NULL;
    }
    text = g_malloc(KSM_FINGERPRINT_MAX_FILE + 2);
    gssize got = read_all(fd, text, KSM_FINGERPRINT_MAX_FILE + 1);
    int saved = errno;
    close(fd);
    if (got < 0) {
        g_set_error(error, KSM_ERROR, KSM_ERROR_FAILED, "cannot read %s: %s", shown,
                    g_strerror(saved));
        return NULL;
    }
    len = (gsize)got;
    text[len] = '\0';
    KsmFingerprint *fp = ksm_fingerprint_parse(text, len, shown, error);
    if (fp) {
        fp->path = g_strdup(path);
    }
    return fp;
}
