/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ksm-maps.c: the maps/smaps reader (see ksm/ksm-maps.h).
 */
#include <stdio.h>
#include <string.h>

#include "ksm-private.h"

gboolean ksm_vmflags_has(const char *flags, const char *flag)
{
    g_auto(GStrv) words = g_strsplit_set(flags, " \t", -1);
    for (guint i = 0; words[i]; i++) {
        if (strcmp(words[i], flag) == 0) {
            return TRUE;
        }
    }
    return FALSE;
}

/* "7f00...-7f01... rw-p 00000000 00:00 0   name" */
static gboolean parse_header(const char *line, KsmMapsArea *area)
{
    char *dash, *space;
    guint64 a = g_ascii_strtoull(line, &dash, 16);

    if (dash == line || *dash != '-') {
        return FALSE;
    }
    guint64 b = g_ascii_strtoull(dash + 1, &space, 16);
    if (space == dash + 1 || (*space != ' ' && *space != '\0') || b < a) {
        return FALSE;
    }
    *area = (KsmMapsArea){ .start = a, .end = b, .name = "",
                           .rss_kb = -1, .ksm_kb = -1, .mergeable = -1 };

    unsigned long long lo, hi, offset, inode;
    unsigned major, minor;
    char perms[8];
    int name_at = 0;
    if (sscanf(line, "%llx-%llx %7s %llx %x:%x %llu %n", &lo, &hi, perms, &offset, &major,
               &minor, &inode, &name_at) == 7) {
        g_strlcpy(area->perms, perms, sizeof(area->perms));
        area->inode = inode;
        const char *name = name_at ? line + name_at : "";
        while (*name == ' ' || *name == '\t') {
            name++;
        }
        area->name = name;
    }
    return TRUE;
}

gboolean ksm_maps_parse(const char *text, KsmMapsAreaFunc fn, gpointer opaque, GError **error)
{
    g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
    KsmMapsArea area = { 0 };
    gboolean in_area = FALSE;

    for (guint i = 0; lines[i]; i++) {
        const char *line = lines[i];
        const char *colon = strchr(line, ':');
        const char *space = strchr(line, ' ');

        if (!*line) {
            continue;
        }
        if (!colon || (space && space < colon)) {
            KsmMapsArea next;
            if (!parse_header(line, &next)) {
                g_set_error(error, KSM_ERROR, KSM_ERROR_PARSE,
                            "smaps line %u is neither an area nor a field: '%s'", i + 1, line);
                return FALSE;
            }
            if (in_area) {
                fn(&area, opaque);
            }
            area = next;
            in_area = TRUE;
        } else if (!in_area) {
            g_set_error(error, KSM_ERROR, KSM_ERROR_PARSE,
                        "smaps line %u comes before any area: '%s'", i + 1, line);
            return FALSE;
        } else if (g_str_has_prefix(line, "VmFlags:")) {
            area.mergeable = ksm_vmflags_has(colon + 1, "mg");
        } else if (g_str_has_prefix(line, "KSM:") || g_str_has_prefix(line, "Rss:")) {
            gint64 kb = g_ascii_strtoll(colon + 1, NULL, 10);   /* "Rss:   123 kB" */
            /* More than the area maps is no kernel's figure (and kb * 1024
             * would overflow: fuzz/corpus/ksm-smaps/regress-ksm-kb-overflow). */
            if (kb > 0 && (guint64)kb > (area.end - area.start) / 1024) {
                g_set_error(error, KSM_ERROR, KSM_ERROR_PARSE,
                            "smaps line %u: %.4s %" G_GINT64_FORMAT " kB is more than its "
                            "area's %" G_GUINT64_FORMAT " kB", i + 1, line, kb,
                            (area.end - area.start) / 1024);
                return FALSE;
            }
            if (line[0] == 'K') {
                area.ksm_kb = kb >= 0 ? kb : 0;
            } else {
                area.rss_kb = kb >= 0 ? kb : 0;
            }
        }
    }
    if (in_area) {
        fn(&area, opaque);
    }
    return TRUE;
}
