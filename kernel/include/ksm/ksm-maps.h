/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ksm-maps.h: the one reader of /proc/PID/maps and /proc/PID/smaps text.
 *
 * Both list a process's areas, one header line each:
 *     start-end perms offset major:minor inode    name
 * smaps follows each header with "Key:   value" lines, among them Rss:,
 * KSM: (6.6+: the area's bytes in KSM pages) and VmFlags:, whose "mg" word
 * (VM_MERGEABLE) is the kernel's own word on whether the area is registered
 * with KSM.  A line is a header when it has no colon before its first space
 * (the device field "fd:01" comes later, and a path may hold colons).
 */
#ifndef KSM_MAPS_H
#define KSM_MAPS_H

#include <glib.h>

G_BEGIN_DECLS

typedef struct {
    guint64 start, end;
    char perms[8];          /* "rw-p"; "" when the header is only "start-end ..." */
    guint64 inode;
    const char *name;       /* path or [name], leading blanks skipped; "" if none.
                               Valid only during the callback. */
    gint64 rss_kb;          /* smaps "Rss:"; -1 without one (maps) */
    gint64 ksm_kb;          /* smaps "KSM:" (6.6+); -1 without one */
    int mergeable;          /* VmFlags has "mg": 1 or 0; -1 without VmFlags (maps) */
} KsmMapsArea;

typedef void (*KsmMapsAreaFunc)(const KsmMapsArea *area, gpointer opaque);

/*
 * Call fn once per area, in order, when its lines are all read.  Fails with
 * KSM_ERROR_PARSE, naming the line, on a line that is neither a header nor
 * a field, a field before any header, or a header whose end is below its
 * start; areas before that line have been passed to fn.
 */
gboolean ksm_maps_parse(const char *text, KsmMapsAreaFunc fn, gpointer opaque, GError **error);

G_END_DECLS

#endif
