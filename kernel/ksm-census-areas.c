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
 * needs.  One parser reads both.
 */
#include <stdio.h>
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
    gboolean pending;       /* an accepted header waiting for its VmFlags */
    KsmCensusArea area;
} AreaParse;

static void flush(AreaParse *p)
{
    if (!p->pending) {
        return;
    }
    p->pending = FALSE;
    if (p->mergeable_only && !p->area.mergeable) {
        return;
    }
    if (p->start || p->end) {
        p->area.start = MAX(p->area.start, p->start);
        p->area.end = MIN(p->area.end, p->end);
        if (p->area.start >= p->area.end) {
            return;
        }
    }
    g_array_append_val(p->areas, p->area);
}

GArray *ksm_census_parse_areas(const char *text, gboolean mergeable_only,
                               guint64 start, guint64 end, GError **error)
{
    AreaParse p = { .mergeable_only = mergeable_only, .start = start, .end = end };
    g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
    gboolean saw_vmflags = FALSE;

    p.areas = g_array_new(FALSE, FALSE, sizeof(KsmCensusArea));
    for (guint i = 0; lines[i]; i++) {
        const char *line = lines[i];
        unsigned long long lo, hi, offset, inode;
        unsigned major, minor;
        char perms[8];
        int name_at = 0;

        if (g_str_has_prefix(line, "VmFlags:")) {
            saw_vmflags = TRUE;
            if (p.pending) {
                p.area.mergeable = ksm_vmflags_has(line + strlen("VmFlags:"), "mg");
            }
            continue;
        }
        if (sscanf(line, "%llx-%llx %7s %llx %x:%x %llu %n", &lo, &hi, perms, &offset, &major,
                   &minor, &inode, &name_at) != 7) {
            continue;   /* an smaps "Key: value" line, or a blank one */
        }
        flush(&p);
        const char *name = name_at ? line + name_at : "";
        while (*name == ' ' || *name == '\t') {
            name++;
        }
        if (strlen(perms) != 4 || perms[1] != 'w' || perms[3] != 'p' || inode != 0 ||
            !anonymous_name(name) || hi <= lo) {
            continue;
        }
        memset(&p.area, 0, sizeof(p.area));
        p.area.start = lo;
        p.area.end = hi;
        g_strlcpy(p.area.name, name, sizeof(p.area.name));
        p.pending = TRUE;
    }
    flush(&p);

    if (mergeable_only && !saw_vmflags && p.areas->len == 0 && strchr(text, '-')) {
        /* A maps text has no VmFlags: the caller meant smaps. */
        g_array_unref(p.areas);
        g_set_error(error, KSM_ERROR, KSM_ERROR_PARSE,
                    "mergeable areas are only known from smaps (VmFlags), not maps");
        return NULL;
    }
    return p.areas;
}
