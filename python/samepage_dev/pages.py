"""A second opinion on KSM pages, to check libksm's figures against: counted
here from /proc/PID/pagemap, /proc/kpageflags, /proc/PID/mem and smaps
(the only readers of those files outside kernel/, and only in tests and
benchmarks), and where a guest's RAM is in its QEMU (/proc/PID/maps)."""
import os
import re
import struct

from samepage_dev.paths import PAGE

KPF_KSM = 21
KPF_ZERO_PAGE = 24
PM_PRESENT = 1 << 63
PFN_MASK = (1 << 55) - 1


def independent_range_count(pid, start, length):
    """KSM and zero pages of [start, start+length) of pid, counted here from
    /proc/PID/pagemap and /proc/kpageflags one page at a time."""
    ksm = zero = present = 0
    flags_cache = {}
    with open(f'/proc/{pid}/pagemap', 'rb') as pm, open('/proc/kpageflags', 'rb') as kpf:
        pm.seek(start // PAGE * 8)
        data = pm.read(length // PAGE * 8)
        for (entry,) in struct.iter_unpack('<Q', data):
            if not entry & PM_PRESENT:
                continue
            present += 1
            pfn = entry & PFN_MASK
            flags = flags_cache.get(pfn)
            if flags is None:
                kpf.seek(pfn * 8)
                flags = struct.unpack('<Q', kpf.read(8))[0]
                flags_cache[pfn] = flags
            if flags & (1 << KPF_ZERO_PAGE):
                zero += 1
            elif flags & (1 << KPF_KSM):
                ksm += 1
    return {'present': present, 'ksm': ksm, 'zero': zero}


FILL_MAGIC = b'SAMEPAGE'    # word 0 of every page of the guest's fill (scripts/guest/fill.c)


def fill_census(pid, start, length, seed):
    """Pages of [start, start+length) of pid that hold the guest's fill of
    `seed` (word 0 "SAMEPAGE", word 1 the seed: scripts/guest/fill.c), and
    how many of those are KSM pages, from /proc/PID/mem, pagemap and
    kpageflags.  Only present pages are read, so nothing is faulted in."""
    head = FILL_MAGIC + struct.pack('<Q', seed)
    fill = fill_ksm = 0
    mem = os.open(f'/proc/{pid}/mem', os.O_RDONLY)
    try:
        with open(f'/proc/{pid}/pagemap', 'rb') as pm, open('/proc/kpageflags', 'rb') as kpf:
            pm.seek(start // PAGE * 8)
            data = pm.read(length // PAGE * 8)
            for i, (entry,) in enumerate(struct.iter_unpack('<Q', data)):
                if not entry & PM_PRESENT:
                    continue
                if os.pread(mem, len(head), start + i * PAGE) != head:
                    continue
                fill += 1
                kpf.seek((entry & PFN_MASK) * 8)
                if struct.unpack('<Q', kpf.read(8))[0] & (1 << KPF_KSM):
                    fill_ksm += 1
    finally:
        os.close(mem)
    return {'fill': fill, 'fill_ksm': fill_ksm}


def ram_range(pid, size):
    """(start, length) of the one private anonymous mapping of exactly size
    bytes in pid (a guest's RAM block), from /proc/PID/maps."""
    found = []
    with open(f'/proc/{pid}/maps') as f:
        for line in f:
            parts = line.split()
            a, b = (int(x, 16) for x in parts[0].split('-'))
            if b - a >= size and len(parts) < 6:
                found.append((a, b - a))
    exact = [r for r in found if r[1] == size]
    return (exact or found)[0] if (exact or found) else None


def smaps_mergeable(pid, start, length):
    """Bytes of [start, start+length) of pid in areas whose VmFlags have
    "mg" (registered with KSM), read from /proc/PID/smaps."""
    total = 0
    area = None
    with open(f'/proc/{pid}/smaps') as f:
        for line in f:
            m = re.match(r'^([0-9a-f]+)-([0-9a-f]+) ', line)
            if m:
                area = (int(m.group(1), 16), int(m.group(2), 16))
            elif line.startswith('VmFlags:') and area and 'mg' in line.split()[1:]:
                total += max(0, min(area[1], start + length) - max(area[0], start))
    return total
