"""Benchmark 3: what watching KSM costs.

For QEMUs with 1, 4 and 8 GiB of merged guest RAM (the RAM filled with one
byte value through the qtest accelerator, no guest to boot, and merged by
the real ksmd):

  - query-ksm-stats's default answer (no walk of guest memory): call
    latency p50/p99;
  - its exact answer (per-backend counts from a walk in QEMU's worker
    thread): the latency of an answer with counts from a walk that started
    after the request, p50/p99, the walk's own duration, and the immediate
    round trip of an exact request;
  - the main-loop stall: query-status round trips on a second monitor, idle
    and while exact walks run back to back, p99.

The peers, on the same QEMU in the same run: the Proxmox-style read of
/proc/PID/smaps_rollup, and the kernel's own reads an exact per-backend
count cannot do without (/proc/PID/smaps for VmFlags "mg", /proc/PID/pagemap
over the RAM).  Then `samepage stats --json` with 1, 4 and 8 QEMU processes.
"""
import json
import subprocess
import time

from samepage_dev.bench.common import (ENV, BenchError, ksm_set, load_note, log, median,
                                       percentile, table)
from samepage_dev.knobs import settle_exited
from samepage_dev.paths import PAGE, GiB, MiB
from samepage_dev.bench.guest import Guest, stop_all_guests
from samepage_dev.qmp import QMP


class ProbeProcess:
    """query-status round trips on the second monitor, from a process of its
    own (no GIL shared with the caller polling the first monitor): start(),
    stop() -> list of ms."""

    def __init__(self, path, pause=0.005):
        import multiprocessing
        self.ctx = multiprocessing.get_context('fork')
        self.path, self.pause = path, pause
        self.stop_ev = self.ctx.Event()
        self.parent, child = self.ctx.Pipe()
        self.proc = self.ctx.Process(target=self._run, args=(child,), daemon=True)

    def _run(self, conn):
        q = QMP(self.path).connect(wait=10)
        rtts = []
        while not self.stop_ev.is_set():
            t0 = time.perf_counter()
            q.cmd('query-status')
            rtts.append((time.perf_counter() - t0) * 1000)
            self.stop_ev.wait(self.pause)
        q.close()
        conn.send(rtts)

    def start(self):
        self.proc.start()
        return self

    def stop(self):
        self.stop_ev.set()
        rtts = self.parent.recv() if self.parent.poll(30) else []
        self.proc.join(10)
        return rtts

# Guest-physical layout of -M pc: RAM above 3 GiB goes above 4 GiB when the
# machine has 3.5 GiB or more.
LOWMEM_SPLIT = 0xc0000000
LOWMEM_MAX = 0xe0000000


def ram_regions(mem):
    """[(guest-physical start, length)] of -M pc's RAM of mem bytes, without
    the first MiB (BIOS, VGA)."""
    low = mem if mem < LOWMEM_MAX else LOWMEM_SPLIT
    regions = [(MiB, low - MiB)]
    if mem > low:
        regions.append((1 << 32, mem - low))
    return regions


def kernel_reads(pid, start, length):
    """ms to read /proc/PID/smaps whole, and /proc/PID/pagemap over
    [start, start + length): the kernel's own cost of the two reads."""
    t0 = time.perf_counter()
    with open(f'/proc/{pid}/smaps', 'rb') as f:
        while f.read(1 << 20):
            pass
    t1 = time.perf_counter()
    with open(f'/proc/{pid}/pagemap', 'rb', buffering=0) as f:
        f.seek(start // PAGE * 8)
        left = length // PAGE * 8
        while left > 0:
            got = f.read(min(left, 1 << 20))
            if not got:
                break
            left -= len(got)
    t2 = time.perf_counter()
    return (t1 - t0) * 1000, (t2 - t1) * 1000


def smaps_rollup_ms(pid):
    """The Proxmox-style read: /proc/PID/smaps_rollup, whole."""
    t0 = time.perf_counter()
    with open(f'/proc/{pid}/smaps_rollup', 'rb') as f:
        f.read()
    return (time.perf_counter() - t0) * 1000


def merging_pages(pid):
    with open(f'/proc/{pid}/ksm_stat') as f:
        for line in f:
            if line.startswith('ksm_merging_pages '):
                return int(line.split()[1])
    return 0


def fresh_exact(qmp):
    """One exact answer with counts from a walk started after the request:
    (ms until it came, the last answer).  Polls every 2 ms."""
    t0 = time.perf_counter()
    while True:
        elapsed = (time.perf_counter() - t0) * 1000
        r = qmp.cmd('query-ksm-stats', exact=True, **{'max-age': int(elapsed)})
        age = r['count'].get('age')
        if age is not None and age <= elapsed:
            return (time.perf_counter() - t0) * 1000, r
        if elapsed > 600000:
            raise BenchError(f'no walk finished in 600 s: {r["count"]}')
        time.sleep(0.002)


def fill_and_merge(g, mem, want_bytes, smoke):
    """Fill the RAM with one byte value and let ksmd merge it until at least
    want_bytes of it are merged pages; returns the bytes filled.  ksmd
    stopped (run=0) on return."""
    filled = 0
    for start, length in ram_regions(mem):
        for off in range(0, length, 256 * MiB):
            n = min(256 * MiB, length - off)
            g.qtest_cmd(f'memset {start + off:#x} {n:#x} 0x5a')
            filled += n
    ksm_set('advisor_mode=none', 'pages_to_scan=20000', 'sleep_millisecs=0', 'run=1')
    want = want_bytes // PAGE
    deadline = time.monotonic() + (60 if smoke else 900)
    while merging_pages(g.pid) < want:
        if time.monotonic() > deadline:
            raise BenchError(f'{g.name}: {merging_pages(g.pid)} of {filled // PAGE} pages '
                             f'merged after the deadline')
        time.sleep(0.5)
    ksm_set('run=0')
    time.sleep(0.3)
    return filled


def one_size(gib, n, smoke):
    # At least gib GiB merged: fill 12% more, merge until gib GiB are.
    mem = int(gib * GiB * 1.12) // MiB * MiB + 64 * MiB
    g = Guest(f'stats{int(gib * 1024)}', mem // MiB, boot=False)
    g.start()
    row = {'gib': gib, 'n': n}
    probe_path = f'{g.dir}/qmp2.sock'
    try:
        ksm_set('run=0')
        log(f'stats: filling {mem // MiB} MiB and merging {gib:g} GiB of it')
        filled = fill_and_merge(g, mem, int(gib * GiB), smoke)
        row['filled_mib'] = filled // MiB
        start, end = g.ram_range()

        # Idle: query-status round trips on the second monitor, nothing else.
        idle = ProbeProcess(probe_path).start()
        time.sleep(2 if smoke else 5)
        row['idle_rtts'] = idle.stop()

        default = []
        for _ in range(n * 10):
            t, r = g.qmp.timed('query-ksm-stats')
            if 'error' in r:
                raise BenchError(f'query-ksm-stats: {r["error"]}')
            default.append(t * 1000)
        row['default_ms'] = default

        # Exact answers back to back, the probe on the second monitor and
        # nothing else running: the main-loop stall the walks cause.
        probe = ProbeProcess(probe_path).start()
        exact, calls, last = [], [], None
        for _ in range(n):
            t, last = fresh_exact(g.qmp)
            exact.append(t)
            t1, r = g.qmp.timed('query-ksm-stats', exact=True, **{'max-age': 10 ** 9})
            calls.append(t1 * 1000)
        row['during_rtts'] = probe.stop()
        row['exact_ms'], row['exact_call_ms'] = exact, calls
        # Then each walk and the kernel's reads of the same memory from
        # outside, interleaved: the same conditions for both.
        walks, smaps, pagemap = [], [], []
        for _ in range(n):
            t, last = fresh_exact(g.qmp)
            walks.append(last['count']['duration'])
            sm, pm = kernel_reads(g.pid, start, end - start)
            smaps.append(sm)
            pagemap.append(pm)
        row['walk_ms'], row['smaps_ms'], row['pagemap_ms'] = walks, smaps, pagemap
        b = last['backends'][0]
        row['resident'], row['merged'] = b.get('resident-pages'), b.get('merged-pages')
        row['counted_by'] = b.get('counted-by')
        row['rollup_ms'] = [smaps_rollup_ms(g.pid) for _ in range(n)]
    finally:
        g.stop()
        # ksmd forgets the stopped QEMU's KSM pages only when it passes over
        # it: let it, or they would stay counted in pages_sharing.
        ksm_set('run=1')
        settle_exited()
        ksm_set('run=0')
    return row


def cli_stats_times(counts, n):
    guests = []
    out = []
    try:
        for count in counts:
            while len(guests) < count:
                g = Guest(f'st{len(guests)}', 64, boot=False)
                g.start()
                guests.append(g)
            ts = []
            for i in range(n):
                t0 = time.perf_counter()
                r = subprocess.run([ENV.samepage, 'stats', '--json'], capture_output=True, text=True)
                ts.append((time.perf_counter() - t0) * 1000)
                if r.returncode != 0:
                    raise BenchError(f'samepage stats --json: {r.stderr.strip()}')
            seen = len(json.loads(r.stdout).get('processes', []))
            out.append({'qemus': count, 'seen': seen, 'ms': median(ts),
                        'p90': percentile(ts, 90), 'n': n})
    finally:
        stop_all_guests(guests)
    return out


def run(opts):
    n = 5 if opts.smoke else 20
    load = load_note()
    sizes = []
    for gib in opts.stats_gib:
        log(f'stats: query-ksm-stats with {gib:g} GiB of merged guest RAM')
        sizes.append(one_size(gib, n, opts.smoke))
    log('stats: samepage stats --json with 1, 4, 8 QEMU processes')
    cli = cli_stats_times([1, 4, 8], 5 if opts.smoke else 15)
    res = {'query': sizes, 'samepage': cli, 'load': load, 'load_after': load_note()}
    return res, render(res)


def p(values, q):
    return percentile(values, q)


def render(res):
    rows = []
    worst_default = worst_stall = worst_ratio = 0.0
    for r in res['query']:
        kernel = median(r['smaps_ms']) + median(r['pagemap_ms'])
        ratio = median(r['walk_ms']) / kernel if kernel else float('nan')
        stall = p(r['during_rtts'], 99) - p(r['idle_rtts'], 99)
        worst_default = max(worst_default, p(r['default_ms'], 99))
        worst_stall = max(worst_stall, stall)
        worst_ratio = max(worst_ratio, ratio)
        rows.append([f"{r['gib']:g}", f"{r['merged']}",
                     f"{p(r['default_ms'], 50):.2f} / {p(r['default_ms'], 99):.2f}",
                     f"{p(r['exact_ms'], 50):.1f} / {p(r['exact_ms'], 99):.1f}",
                     f"{median(r['walk_ms']):.0f}",
                     f"{p(r['exact_call_ms'], 50):.2f} / {p(r['exact_call_ms'], 99):.2f}",
                     f"{p(r['idle_rtts'], 99):.2f} -> {p(r['during_rtts'], 99):.2f}",
                     f"{median(r['rollup_ms']):.1f}",
                     f"{median(r['smaps_ms']):.1f} + {median(r['pagemap_ms']):.1f}",
                     f"{ratio:.2f}x"])
    n = res['query'][0]['n'] if res['query'] else 0
    text = table('Stats cost (benchmark 3): query-ksm-stats on merged guest RAM',
                 ['GiB', 'merged pages', 'default ms p50/p99', 'exact ms p50/p99',
                  'walk ms', 'exact call ms p50/p99', 'query-status p99 idle -> walking',
                  'smaps_rollup ms', 'kernel: smaps + pagemap ms', 'walk / kernel'], rows,
                 [f"load: {res['load']} (after: {res['load_after']}); {n * 10} default answers, "
                  f"{n} exact answers back to back per size",
                  'exact: from the request to an answer with counts from a walk that started '
                  'after it (the walk runs in QEMU\'s worker thread; the caller polls every '
                  '2 ms); exact call: one exact request\'s own round trip (it returns the '
                  'latest counts at once); walk: its duration as QEMU reports it',
                  'query-status: round trips on a second monitor from a process of its own, '
                  'idle (5 s after the merge) and while the exact answers ran back to back '
                  '(the main-loop stall); walk and kernel reads: a second series, each walk '
                  'followed by the kernel\'s reads',
                  'smaps_rollup: the Proxmox-style read of the same QEMU; kernel: its '
                  '/proc/PID/smaps and pagemap over the RAM read from outside, the floor of an '
                  'exact count through these files (the walk also reads kpageflags)'])
    ok_default = worst_default <= 2.0
    ok_stall = worst_stall <= 1.0
    ok_ratio = worst_ratio <= 1.3
    text += (f"  TARGET default answer <= 2 ms (p99) at every size: worst {worst_default:.2f} ms: "
             f"{'met' if ok_default else 'MISSED'}\n"
             f"  TARGET query-status p99 no more than 1 ms above idle while exact walks run: "
             f"worst +{worst_stall:.2f} ms: {'met' if ok_stall else 'MISSED'}\n"
             f"  TARGET exact walk within 1.3x of the kernel's smaps + pagemap reads: worst "
             f"{worst_ratio:.2f}x: {'met' if ok_ratio else 'MISSED'}\n")
    res['target'] = {'default_p99_ms': worst_default, 'default_met': ok_default,
                     'stall_ms': worst_stall, 'stall_met': ok_stall,
                     'walk_ratio': worst_ratio, 'walk_met': ok_ratio}
    rows = [[str(r['qemus']), str(r['seen']), f"{r['ms']:.1f}", f"{r['p90']:.1f}"]
            for r in res['samepage']]
    base = res['samepage'][0]['ms'] if res['samepage'] else None
    text += '\n' + table('Stats cost: samepage stats --json (a whole process: exec, read, print)',
                         ['QEMUs started', 'QEMU processes seen', 'median ms', 'p90 ms'], rows,
                         [f"8 vs 1 QEMU: {res['samepage'][-1]['ms'] / base:.2f}x" if base else ''])
    return text


def has_numbers(res):
    return bool(res.get('query')) and all(r['exact_ms'] and r['default_ms']
                                          for r in res['query']) and \
        len(res.get('samepage', [])) == 3
