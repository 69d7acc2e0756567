/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ksm-fingerprint.h: fleet fingerprints, compact sketches of the page
 * contents of guests, to predict how much two guests (or a guest and a
 * host's guests) would share under KSM if they ran on one host.
 *
 * What co-location saves: run apart, guests A and B cost one frame per
 * distinct content each; run together, a content both have costs one frame
 * instead of two.  So KSM's extra saving from putting them together is
 * |D_A ∩ D_B|, the number of distinct non-zero contents they have in common
 * (zero pages go to the shared zero page, or are one content, wherever the
 * guest runs: they are counted, not sketched).  For a guest G and a host H
 * it is |D_G ∩ D_H|, D_H the union of H's guests' contents.
 *
 * The sketch (a KMV / theta sketch): every non-zero page is hashed with a
 * keyed 64-bit hash (XXH3 with a 192-byte secret derived from the fleet key),
 * and the sketch keeps the k smallest distinct hashes (k <= 8192: 64 KiB).
 * Its threshold theta is the k-th smallest hash once k were seen (2^64, i.e.
 * exact, while fewer were); the hashes below theta are a uniform sample of
 * the contents at rate theta / 2^64.  For any set of sketches, with
 * theta = the smallest of their thresholds, every hash below theta of their
 * union is known to the sketches that hold it, so
 *   distinct(A)   = |{h in A : h < theta}| / (theta / 2^64)
 *   |A ∩ B|       = |{h in A and in B : h < theta}| / (theta / 2^64)
 *   |A ∪ B|       likewise; the union of sketches is itself a sketch
 * (exact when no threshold applies).  No estimate exceeds the pages it
 * counts (a hostile file's tiny hashes would otherwise estimate ~2^64).
 * Standard error of an estimate x from
 * c sampled hashes: about x / sqrt(c); c is about x * k / max(|A|, |B|).
 *
 * The key: a fleet-wide secret file (16 to 4096 bytes, e.g. 32 random
 * bytes); without it nobody can tell which content a hash stands for (short
 * of the secret), and hashes of different fleets cannot be compared.  Its
 * id (a SHA-256 of it, 64 bits) goes into every file so that fingerprints
 * made with different keys are refused together.  XXH3 is a fast keyed
 * hash, not a cryptographic MAC: the key must stay in the fleet.
 */
#ifndef KSM_FINGERPRINT_H
#define KSM_FINGERPRINT_H

#include <glib.h>
#include <sys/types.h>
#include <ksm/ksm-context.h>

G_BEGIN_DECLS

#define KSM_SKETCH_MAX_K        8192u    /* 8192 x 8 bytes = 64 KiB */
#define KSM_FLEET_KEY_MIN       16u
#define KSM_FLEET_KEY_MAX       4096u
#define KSM_FINGERPRINT_FORMAT  "samepage-fingerprint/1"
#define KSM_TRUST_GROUP_MAX     64u      /* as the libvirt hook's <ksm:policy group=> */

/* ---- the fleet key --------------------------------------------------------- */

typedef struct KsmFleetKey KsmFleetKey;

/* From the key file's bytes; an error when shorter or longer than allowed. */
KsmFleetKey *ksm_fleet_key_new(const void *bytes, gsize len, GError **error);
void ksm_fleet_key_free(KsmFleetKey *key);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(KsmFleetKey, ksm_fleet_key_free)
/* 16 hex digits, the same for every host of the fleet. */
const char *ksm_fleet_key_id(const KsmFleetKey *key);
guint64 ksm_fleet_key_hash(const KsmFleetKey *key, const void *page, gsize len);

/* ---- the sketch ------------------------------------------------------------ */

typedef struct {
    guint k;               /* capacity, 1..KSM_SKETCH_MAX_K */
    guint n;               /* hashes held, <= k */
    guint64 *hashes;       /* ascending, distinct */
    guint64 pages;         /* non-zero pages sketched */
    guint64 zero_pages;    /* zero pages seen (not sketched) */
    /* building: hashes waiting to be merged in (ksm_sketch_add) */
    guint64 *pending;
    guint n_pending;
} KsmSketch;

KsmSketch *ksm_sketch_new(guint k);
void ksm_sketch_free(KsmSketch *s);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(KsmSketch, ksm_sketch_free)
/* One non-zero page's hash (pages is counted by the caller or here: +1). */
void ksm_sketch_add(KsmSketch *s, guint64 hash);
/* Merge what is pending: every reader below does it first. */
void ksm_sketch_flush(KsmSketch *s);
/* theta as a fraction of 2^64: 1.0 while the sketch is exact. */
gboolean ksm_sketch_is_exact(const KsmSketch *s);
guint64 ksm_sketch_theta(const KsmSketch *s);     /* G_MAXUINT64 when exact */
double ksm_sketch_distinct(const KsmSketch *s);
/* The union, bounded to k (the smaller k of the two when k is 0). */
KsmSketch *ksm_sketch_union(const KsmSketch *a, const KsmSketch *b, guint k);
/*
 * The estimated number of contents in both; *samples (may be NULL) gets the
 * number of common hashes it rests on (its standard error is about
 * estimate / sqrt(samples)).
 */
double ksm_sketch_intersection(const KsmSketch *a, const KsmSketch *b, guint64 *samples);

/*
 * A host's contents: the union of its guests' sketches below the smallest
 * of their thresholds, unbounded (up to the sum of their sizes), with a
 * directory on the top bits of the hash for membership in O(1): the form
 * `samepage place` ranks against.
 */
typedef struct {
    guint64 theta;         /* G_MAXUINT64: exact */
    guint64 *hashes;       /* ascending, distinct, all < theta (or all, exact) */
    gsize n;
    guint32 *dir;          /* (1 << dir_bits) + 1 offsets into hashes */
    guint dir_bits;
    guint dir_shift;       /* slot of hash v: v >> dir_shift */
    guint64 pages;         /* the guests' pages: no estimate exceeds it */
} KsmHostSet;

KsmHostSet *ksm_host_set_new(KsmSketch *const *guests, guint n_guests);
void ksm_host_set_free(KsmHostSet *h);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(KsmHostSet, ksm_host_set_free)
double ksm_host_set_distinct(const KsmHostSet *h);
/* |D_G ∩ D_H|, estimated as ksm_sketch_intersection does. */
double ksm_host_set_intersection(const KsmHostSet *h, const KsmSketch *g, guint64 *samples);

/*
 * Every guest against every host in one join (ksm-rank.c): estimates[g *
 * n_hosts + h] = ksm_host_set_intersection(hosts[h], guests[g]), and
 * samples (may be NULL) likewise.  What `samepage place` uses: 1,000 guests
 * against 100 hosts in well under a second.
 */
void ksm_rank_all(KsmHostSet *const *hosts, guint n_hosts, KsmSketch *const *guests,
                  guint n_guests, double *estimates, guint64 *samples);

/* ---- fingerprint files ----------------------------------------------------- */

typedef struct {
    char *name;            /* guest name (QEMU -name), or NULL */
    gint64 pid;            /* 0 unknown */
    char *trust_group;     /* NULL unknown */
    KsmSketch *sketch;
} KsmFingerprintGuest;

typedef struct {
    char *hostname;
    char *time;            /* ISO 8601, UTC */
    char *key_id;
    guint64 page_size;
    GPtrArray *guests;     /* KsmFingerprintGuest* */
    char *path;            /* where it was read from, or NULL */
} KsmFingerprint;

KsmFingerprint *ksm_fingerprint_new(const char *hostname, const char *key_id, guint64 page_size);
void ksm_fingerprint_free(KsmFingerprint *fp);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(KsmFingerprint, ksm_fingerprint_free)
/* Takes sketch; name and group copied (may be NULL). */
void ksm_fingerprint_add_guest(KsmFingerprint *fp, const char *name, gint64 pid,
                               const char *trust_group, KsmSketch *sketch);

/* A trust group name as the libvirt hook accepts it. */
gboolean ksm_trust_group_valid(const char *group);

char *ksm_fingerprint_to_json(const KsmFingerprint *fp);
/*
 * A file from another host is hostile: its size, nesting, format version,
 * every type, bound and sketch invariant are checked.  The error
 * (KSM_ERROR_INVALID) names the file and what is wrong.
 */
KsmFingerprint *ksm_fingerprint_parse(const char *text, gsize len, const char *what,
                                      GError **error);
#define KSM_FINGERPRINT_MAX_FILE   (64u << 20)
#define KSM_FINGERPRINT_MAX_GUESTS 4096u
KsmFingerprint *ksm_fingerprint_load(const char *path, GError **error);

/* ---- fingerprinting processes ---------------------------------------------- */

typedef struct {
    guint k;                   /* 0: KSM_SKETCH_MAX_K */
    double rate_mib_s;         /* 0: unlimited; else reading is paced to this */
    gboolean mergeable_only;
} KsmFingerprintOptions;

/*
 * One sketch per pid, from the census's reading of /proc/PID/mem (only
 * present pages of private anonymous memory: see ksm-census.h).  *seconds
 * (may be NULL) gets the wall time, *bytes the bytes read.
 */
GPtrArray *ksm_fingerprint_processes(const KsmContext *ctx, const KsmFleetKey *key,
                                     const pid_t *pids, guint n_pids,
                                     const KsmFingerprintOptions *opts, double *seconds,
                                     guint64 *bytes, GError **error);

G_END_DECLS

#endif
