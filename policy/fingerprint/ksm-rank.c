/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ksm-rank.c: every guest against every host at once.
 *
 * Pair by pair, each estimate probes a few thousand of the guest's hashes
 * into the host's set: 1,000 guests x 100 hosts is 10^5 pairs, and the
 * hosts' sets (tens of MiB) no longer fit in the caches, so that runs at
 * memory latency (about 10 s, measured by bench/fleet-speed).  Sorting all
 * the hashes for one merge join was still over a second (13 M records).
 *
 * So a partitioned hash join, which needs no sort because every list is
 * sorted already: the hash range is cut into P partitions (by the top bits
 * of the hash), each about 8,192 host hashes; every host's and guest's list
 * is walked partition by partition with a cursor.  For each partition the
 * hosts' hashes go into a small open-addressing table (one slot per
 * distinct hash, with the chain of hosts that have it: a hash common to
 * many hosts costs one probe, not one per host; the table fits in L2), then
 * each guest's hashes of that partition are looked up and each host in the
 * chain counts one sample for that (guest, host) pair.  The cost is one pass over every
 * list, a table insert per host hash, a lookup per guest hash and the
 * matches themselves, which any method must count.
 *
 * Only hashes below the list's own threshold take part (a host set holds
 * only those; a full guest sketch's last hash is its threshold), and a hash
 * below both thresholds is below their minimum: the counts are exactly
 * those of ksm_host_set_intersection, and so are the estimates.
 */
#include <string.h>

#include <ksm/ksm-fingerprint.h>

#define TWO64 18446744073709551616.0
#define PER_PARTITION 8192

/* One distinct hash of the partition; its hosts are a chain of Links. */
typedef struct {
    guint64 v;
    guint32 head;        /* first link of the chain */
    guint32 used;        /* 0: empty slot */
} Slot;

typedef struct {
    guint32 host;
    guint32 next;        /* G_MAXUINT32: end */
} Link;

static double scale(guint64 theta)
{
    return theta == G_MAXUINT64 ? 1.0 : (double)theta / TWO64;
}

static guint bits_for(guint64 x)
{
    return x == 0 ? 0 : 64 - (guint)__builtin_clzll(x);
}

/* The partition of v: its top bits.  One partition (shift 64) is number 0. */
static gsize partition_of(guint64 v, guint shift)
{
    return shift >= 64 ? 0 : (gsize)(v >> shift);
}

void ksm_rank_all(KsmHostSet *const *hosts, guint n_hosts, KsmSketch *const *guests,
                  guint n_guests, double *estimates, guint64 *samples)
{
    gsize nh = 0;
    guint64 maxv = 0;
    g_autofree gsize *glen = g_new0(gsize, MAX(n_guests, 1));

    for (guint h = 0; h < n_hosts; h++) {
        nh += hosts[h]->n;
        if (hosts[h]->n) {
            maxv = MAX(maxv, hosts[h]->hashes[hosts[h]->n - 1]);
        }
    }
    for (guint g = 0; g < n_guests; g++) {
        const KsmSketch *s = guests[g];
        ksm_sketch_flush(guests[g]);
        glen[g] = ksm_sketch_is_exact(s) ? s->n : s->n - 1;   /* below theta */
        if (glen[g]) {
            maxv = MAX(maxv, s->hashes[glen[g] - 1]);
        }
    }
    /* Partitions: the top pbits of [0, 2^range_bits), about PER_PARTITION host hashes each. */
    guint range_bits = MAX(bits_for(maxv), 1);
    guint pbits = 0;
    while (pbits < range_bits && pbits < 20 && ((gsize)PER_PARTITION << pbits) < nh) {
        pbits++;
    }
    guint shift = range_bits - pbits;
    gsize n_parts = (gsize)1 << pbits;

    /* The largest partition decides the table's size: count first. */
    g_autofree guint32 *part_count = g_new0(guint32, n_parts);
    for (guint h = 0; h < n_hosts; h++) {
        for (gsize j = 0; j < hosts[h]->n; j++) {
            part_count[partition_of(hosts[h]->hashes[j], shift)]++;
        }
    }
    guint32 most = 1;
    for (gsize p = 0; p < n_parts; p++) {
        most = MAX(most, part_count[p]);
    }
    guint tbits = MAX(bits_for((guint64)most * 2 - 1), 4);
    guint64 mask = ((guint64)1 << tbits) - 1;
    g_autofree Slot *table = g_new0(Slot, mask + 1);
    g_autofree guint64 *filled = g_new(guint64, most);
    g_autofree Link *links = g_new(Link, most);

    g_autofree gsize *hpos = g_new0(gsize, MAX(n_hosts, 1));
    g_autofree gsize *gpos = g_new0(gsize, MAX(n_guests, 1));
    g_autofree guint32 *count = g_new0(guint32, (gsize)MAX(n_guests, 1) * MAX(n_hosts, 1));

    for (gsize p = 0; p < n_parts; p++) {
        gsize n_filled = 0;
        guint32 n_links = 0;
        for (guint h = 0; h < n_hosts; h++) {
            const KsmHostSet *hs = hosts[h];
            gsize j = hpos[h];
            for (; j < hs->n && partition_of(hs->hashes[j], shift) == p; j++) {
                guint64 v = hs->hashes[j], i = v & mask;
                while (table[i].used && table[i].v != v) {
                    i = (i + 1) & mask;
                }
                if (!table[i].used) {
                    table[i] = (Slot){ v, G_MAXUINT32, 1 };
                    filled[n_filled++] = i;
                }
                links[n_links] = (Link){ h, table[i].head };
                table[i].head = n_links++;
            }
            hpos[h] = j;
        }
        for (guint g = 0; g < n_guests; g++) {
            const guint64 *gh = guests[g]->hashes;
            guint32 *row = count + (gsize)g * n_hosts;
            gsize j = gpos[g];
            for (; j < glen[g] && partition_of(gh[j], shift) == p; j++) {
                guint64 v = gh[j], i = v & mask;
                while (table[i].used && table[i].v != v) {
                    i = (i + 1) & mask;
                }
                for (guint32 l = table[i].used ? table[i].head : G_MAXUINT32; l != G_MAXUINT32;
                     l = links[l].next) {
                    row[links[l].host]++;
                }
            }
            gpos[g] = j;
        }
        for (gsize f = 0; f < n_filled; f++) {
            table[filled[f]].used = 0;
        }
    }

    for (guint g = 0; g < n_guests; g++) {
        guint64 tg = ksm_sketch_theta(guests[g]);
        for (guint h = 0; h < n_hosts; h++) {
            gsize k = (gsize)g * n_hosts + h;
            estimates[k] = MIN((double)count[k] / scale(MIN(tg, hosts[h]->theta)),
                               (double)MIN(guests[g]->pages, hosts[h]->pages));
            if (samples) {
                samples[k] = count[k];
            }
        }
    }
}
