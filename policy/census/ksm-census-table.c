/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ksm-census-table.c: the census's table of distinct page contents.
 *
 * Why a hand-written table and not a GHashTable: the census looks up one
 * key per page read, millions of times per run, and its speed target is
 * half the bandwidth of reading the memory at all.  A GHashTable would cost
 * a separate allocation per entry (40 bytes of data plus malloc overhead
 * plus GHashTable's own arrays, ~100 bytes per page for a 16 GiB guest),
 * an indirect call to hash and compare each key, and a pointer chase per
 * lookup.  Here the entries live in one array sized from the number of
 * pages to read (known from pagemap before reading), probed linearly: one
 * cache miss per lookup, no allocation per page.  Equal hashes may occur
 * several times (real collisions, or a page that changed under us): the
 * caller walks every entry with its hash and confirms each byte for byte.
 * There is no deletion, so linear probing needs no tombstones.
 */
#include <string.h>

#include "ksm-census-private.h"

/* Grow past this load: probes stay short (~2 slots on average at 0.7). */
#define LOAD_NUM 7
#define LOAD_DEN 10

/*
 * Spread the hash before mapping it to a slot: XXH3 is already uniform,
 * but a test hash (a constant, a few bits) must still work, and the
 * multiply costs nothing next to a cache miss.  The slot is then taken by
 * multiply-shift ("fastrange") so the capacity need not be a power of two
 * and the table is not up to twice as large as needed.
 */
guint64 census_table_home(const CensusTable *t, guint64 hash)
{
    guint64 mixed = hash * G_GUINT64_CONSTANT(0x9E3779B97F4A7C15);
    mixed ^= mixed >> 29;
    return (guint64)(((unsigned __int128)mixed * t->capacity) >> 64);
}

static guint64 capacity_for(guint64 entries)
{
    guint64 cap = entries / LOAD_NUM * LOAD_DEN + LOAD_DEN;
    return cap < 64 ? 64 : cap;
}

void census_table_init(CensusTable *t, guint64 expected)
{
    t->capacity = capacity_for(expected);
    /* calloc'd zero pages cost nothing until an entry lands in them. */
    t->slots = g_new0(CensusEntry, t->capacity);
    t->used = 0;
}

void census_table_clear(CensusTable *t)
{
    g_free(t->slots);
    memset(t, 0, sizeof(*t));
}

CensusEntry *census_table_next(CensusTable *t, guint64 hash, guint64 *pos)
{
    for (;;) {
        CensusEntry *e = &t->slots[*pos];
        if (e->count == 0) {
            return NULL;
        }
        if (++*pos == t->capacity) {
            *pos = 0;
        }
        if (e->hash == hash) {
            return e;
        }
    }
}

static CensusEntry *place(CensusTable *t, guint64 hash)
{
    guint64 pos = census_table_home(t, hash);

    while (t->slots[pos].count != 0) {
        if (++pos == t->capacity) {
            pos = 0;
        }
    }
    t->slots[pos].hash = hash;
    return &t->slots[pos];
}

static void grow(CensusTable *t)
{
    CensusTable old = *t;

    t->capacity = old.capacity * 2;
    t->slots = g_new0(CensusEntry, t->capacity);
    for (guint64 i = 0; i < old.capacity; i++) {
        if (old.slots[i].count != 0) {
            *place(t, old.slots[i].hash) = old.slots[i];
        }
    }
    g_free(old.slots);
}

CensusEntry *census_table_insert(CensusTable *t, guint64 hash)
{
    /* The process may have grown since pagemap was counted. */
    if ((t->used + 1) * LOAD_DEN > t->capacity * LOAD_NUM) {
        grow(t);
    }
    t->used++;
    CensusEntry *e = place(t, hash);
    /* The caller fills it in; count != 0 marks the slot as taken. */
    e->count = 1;
    return e;
}
