/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fuzz-fingerprint-file.c: a fleet fingerprint file from another host
 * (policy/fingerprint/ksm-fingerprint-file.c), which samepage place reads.
 *
 * Input: the file's text.  Whatever is accepted must hold the sketch's
 * invariants, survive the estimates, and read back the same once written.
 */
#include <string.h>
#include <ksm/ksm-fingerprint.h>

#include "fuzz-common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_init();
    g_autoptr(GError) error = NULL;
    g_autoptr(KsmFingerprint) fp = ksm_fingerprint_parse((const char *)data, size, "fuzz",
                                                         &error);
    if (!fp) {
        g_assert(error && error->domain == KSM_ERROR);
        return 0;
    }
    g_autofree KsmSketch **sk = g_new0(KsmSketch *, MAX(fp->guests->len, 1));
    for (guint i = 0; i < fp->guests->len; i++) {
        const KsmFingerprintGuest *g = g_ptr_array_index(fp->guests, i);
        g_assert(g->sketch->n <= g->sketch->k && g->sketch->k <= KSM_SKETCH_MAX_K);
        for (guint j = 1; j < g->sketch->n; j++) {
            g_assert(g->sketch->hashes[j - 1] < g->sketch->hashes[j]);
        }
        g_assert(ksm_sketch_distinct(g->sketch) >= 0);
        sk[i] = g->sketch;
    }
    g_autoptr(KsmHostSet) h = ksm_host_set_new(sk, fp->guests->len);
    if (fp->guests->len > 0) {
        double est;
        ksm_rank_all(&h, 1, sk, 1, &est, NULL);
        g_assert(est == ksm_host_set_intersection(h, sk[0], NULL));
    }
    g_autofree char *text = ksm_fingerprint_to_json(fp);
    g_autoptr(KsmFingerprint) again = ksm_fingerprint_parse(text, strlen(text), "again", &error);
    g_assert(again && again->guests->len == fp->guests->len);
    g_autofree char *text2 = ksm_fingerprint_to_json(again);
    g_assert(strcmp(text, text2) == 0);
    return 0;
}
