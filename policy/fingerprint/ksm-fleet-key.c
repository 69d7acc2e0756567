/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ksm-fleet-key.c: the fleet key, and the keyed page hash made from it.
 *
 * XXH3_64bits_withSecret with a 192-byte secret derived from the key
 * (XXH3_generateSecret: any key bytes give a secret of the quality XXH3
 * needs), rather than the 64-bit seed variant: the seed variant's whole
 * secret is a function of 64 bits.  The key id is a SHA-256 of a label and
 * the key, so publishing it reveals nothing useful about the key.
 */
#include <string.h>
#define XXH_STATIC_LINKING_ONLY   /* XXH3_generateSecret */
#include <xxhash.h>
#ifdef HAVE_XXH3_DISPATCH
#include <xxh_x86dispatch.h>
#endif

#include <ksm/ksm.h>
#include <ksm/ksm-fingerprint.h>

#define SECRET_SIZE 192

struct KsmFleetKey {
    guint8 secret[SECRET_SIZE];
    char id[17];
};

KsmFleetKey *ksm_fleet_key_new(const void *bytes, gsize len, GError **error)
{
    if (len < KSM_FLEET_KEY_MIN || len > KSM_FLEET_KEY_MAX) {
        g_set_error(error, KSM_ERROR, KSM_ERROR_INVALID,
                    "the fleet key has %zu bytes; it must have %u to %u (make one with: "
                    "head -c 32 /dev/urandom > KEYFILE; chmod 600 KEYFILE)", len,
                    KSM_FLEET_KEY_MIN, KSM_FLEET_KEY_MAX);
        return NULL;
    }
    KsmFleetKey *key = g_new0(KsmFleetKey, 1);
    if (XXH3_generateSecret(key->secret, SECRET_SIZE, bytes, len) != XXH_OK) {
        g_free(key);
        g_set_error(error, KSM_ERROR, KSM_ERROR_INVALID, "cannot derive a secret from the key");
        return NULL;
    }
    g_autoptr(GChecksum) sum = g_checksum_new(G_CHECKSUM_SHA256);
    static const char label[] = "samepage fleet key id v1";
    g_checksum_update(sum, (const guchar *)label, sizeof(label));
    g_checksum_update(sum, bytes, (gssize)len);
    memcpy(key->id, g_checksum_get_string(sum), 16);
    key->id[16] = '\0';
    return key;
}

void ksm_fleet_key_free(KsmFleetKey *key)
{
    if (key) {
        memset(key->secret, 0, sizeof(key->secret));
        g_free(key);
    }
}

const char *ksm_fleet_key_id(const KsmFleetKey *key)
{
    return key->id;
}

guint64 ksm_fleet_key_hash(const KsmFleetKey *key, const void *page, gsize len)
{
    return XXH3_64bits_withSecret(page, len, key->secret, SECRET_SIZE);
}
