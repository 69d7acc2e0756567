/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ksm-census-areas.c: which mappings of a process the census reads.
 *
 * KSM merges private anonymous memory only (mm/ksm.c refuses shared,
 * PFN/IO, hugetlb and DAX areas, and merges nothing but anonymous pages).
 * A maps line is
 *     start-end perms offset major:minor inode    name
 * and an area is read when perms are "?w?p" (writable, private), the inode
 * is 0 (no file) and the name is empty, [heap], [stack], [stack:TID] (old
 * kernels) or [anon:NAME] (prctl PR_SET_VMA_ANON_NAME).  Every other
 * bracketed name is a kernel area ([vvar], [vvar_vclock], [vdso],
 * [vsyscall], [uprobes], ...) whose pages KSM never merges.  Writable
 * because a read-only anonymous area holds nothing but the zero page.
 *
 * smaps has the same header lines, each followed by "Key: value" lines;
 * VmFlags lists "mg" for areas registered with KSM, which mergeable_only
 * needs.  libksm's one maps/smaps reader (ksm/ksm-maps.h) reads both.
 */
#include <string.h>

#include "ksm-census-private.h"

static gboolean anonymous_name(const char *name)
{
    return *name == '\0' || strcmp(name, "[heap]") == 0 || strcmp(name, "[stack]") == 0 ||
           g_str_has_prefix(name, "[stack:") || g_str_has_prefix(name, "[anon:");
}

typedef struct {
    GArray *areas;
    gboolean mergeable_only;
    guint64 start, end;
    gboolean saw_vmflags;
} AreaParse;

static void take_area(const KsmMapsArea *m, gpointer opaque)
{
    AreaParse *p = opaque;

    if (m->mergeable >= 0) {
        p->saw_vmflags = TRUE;
    }
    if (strlen(m->perms) != 4 || m->perms[1] != 'w' || m->perms[3] != 'p' || m->inode != 0 ||
        !anonymous_name(m->name) || m->end <= m->start) {
        return;
    }
    if (p->mergeable_only && m->mergeable != 1) {
        return;
    }
    KsmCensusArea area = { .start = m->start, .end = m->end, .mergeable = m->mergeable == 1 };
    g_strlcpy(area.name, m->name, sizeof(area.name));
    if (p->start || p->end) {
        area.start = MAX(area.start, p->start);
        area.end = MIN(area.end, p->end);
        if (area.start >= area.end) {
            return;
        }
    }
    g_array_append_val(p->areas, area);
}

GArray *ksm_census_parse_areas(const char *text, gboolean mergeable_only,
                               guint64 start, guint64 end, GError **error)
{
    AreaParse p = { .mergeable_only = mergeable_only, .start = start, .end = end };

    p.areas = g_array_new(FALSE, FALSE, sizeof(KsmCensusArea));
    if (!ksm_maps_parse(text, take_area, &p, error)) {
        g_array_unref(p.areas);
        return NULL;
    }
    if (mergeable_only && !p.saw_vmflags && p.areas->len == 0 && strchr(text, '-')) {
        /* A maps text has no VmFlags: the caller meant smaps. */
        g_array_unref(p.areas);
        g_set_error(error, KSM_ERROR, KSM_ERROR_PARSE,
                    "mergeable areas are only known from smaps (VmFlags), not maps");
        return NULL;
    }
    return p.areas;
}
