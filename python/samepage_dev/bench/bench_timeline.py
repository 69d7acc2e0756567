"""Benchmark: a host timeline on real guests (issue 13).

Real Debian 12 guests from one image (scripts/make-guest --image debian:
systemd, nginx, PostgreSQL; each on memory-backend-ksm with its own overlay
of the shared disk) come and go on a fixed timeline, and each scan policy
(kernel defaults, ksmtuned, the kernel advisor, samepage tune) replays the
same timeline from a clean KSM state:

    t = 0, every, 2 * every, ...   a guest starts (up to --timeline-guests)
    when the first is up           it runs pgbench against its PostgreSQL
                                   (rate-limited, until the end): the churn
    stop_at                        the third guest stops (mid-way)
    end                            the run ends; steady = the last
                                   (end - stop_at - 30) seconds

When a guest starts, the policies that are told of it in a deployment are
told here too: samepage tune gets SIGUSR1 (what the libvirt hook sends) and
ksmtuned gets SIGUSR1 (what its documentation asks of a guest start).

Measured, per policy:
  saved        KSM's saving inside the guests' RAM, exactly (build/bench/
               ksm-sample: every KSM frame the guests map n > 1 times counts
               n - 1), a few times a second
  bound        the census (samepage estimate --mergeable-only) of the guests
               running, just before each event and at the end: freeable pages
               minus those already on the shared zero page (pages only ever
               read: sharing that is not KSM's and that merging cannot add to)
  t95 after a start
               from a guest's start to the first sample where saved reaches
               95% of the bound of its segment (the census just before the
               next event: the achievable with that guest in), or of the
               bound in force if that fell lower (a guest stopped since)
  ksmd CPU-s   ksmd's utime + stime over the whole run
  steady CPU%  ksmd's share of one CPU over the steady window
  efficiency   saved MiB-hours (saved integrated over the run) per ksmd
               CPU-second

The runs of the policies may be split (--policies one at a time, same
--out): every policy's result is kept in OUT/timeline/POLICY.json and the
table is made from every result there with the same timeline, saying when
each was measured.
"""
import glob
import json
import os
import signal
import threading
import time

from samepage_dev.bench.common import (ENV, BenchError, PeerAbsent, fmt, ksm_clean, ksm_stats,
                                       load_note, log, table)
from samepage_dev.bench.convergence import census_bound, generic_disturbance
from samepage_dev.bench.guest import Guest
from samepage_dev.bench.policies import Advisor, KernelDefaults, Ksmtuned, Samepage
from samepage_dev.bench.sampler import Sampler, value_at
from samepage_dev.cli import stats_value
from samepage_dev.paths import PAGE, MiB

PEERS = ('defaults', 'ksmtuned', 'advisor')
COLORS = {'defaults': '#7f7f7f', 'ksmtuned': '#ff7f0e', 'advisor': '#2ca02c',
          'samepage': '#1f77b4'}

# Typed on the churning guest's root console once it is up: a pgbench
# database, then transactions at a fixed rate until the guest stops.  The
# markers are written as SAMEPAGE-""... so that the console's echo of the
# command line is not taken for them.
CHURN = ("(B=$(ls /usr/lib/postgresql/*/bin/pgbench 2>/dev/null | head -1); cd /tmp; "
         "if [ -x \"$B\" ] && runuser -u postgres -- createdb bench && "
         "runuser -u postgres -- \"$B\" -q -i -s {scale} bench >/dev/null 2>&1; then "
         "echo SAMEPAGE-\"\"CHURNING pgbench >/dev/ttyS0; "
         "exec runuser -u postgres -- \"$B\" -c 2 -R {rate} -T 100000 bench >/dev/null 2>&1; "
         "else echo SAMEPAGE-\"\"CHURNING no-pgbench >/dev/ttyS0; fi) &\n")


def timeline_setup(o):
    every, n = o.timeline_every, o.timeline_guests
    last = every * (n - 1)
    stop_at = o.timeline_stop_at if o.timeline_stop_at is not None else last + 60
    end = o.timeline_end if o.timeline_end is not None else stop_at + 90
    if n < 3:
        raise BenchError('the timeline needs at least 3 guests (the third one stops)')
    if not (last < stop_at < end - 30):
        raise BenchError(f'the timeline needs last start ({last} s) < stop ({stop_at} s) < end '
                         f'- 30 ({end - 30} s)')
    return {'guests': n, 'every_s': every, 'guest_mem_mib': o.timeline_mem, 'stop_at_s': stop_at,
            'stopped_guest': 'g3', 'churn_guest': 'g1', 'end_s': end,
            'steady_window_s': [stop_at + 30, end], 'pgbench_scale': o.timeline_pgbench_scale,
            'pgbench_rate': o.timeline_pgbench_rate}


def events_of(setup):
    ev = [(i * setup['every_s'], 'start', f'g{i + 1}') for i in range(setup['guests'])]
    ev.append((setup['stop_at_s'], 'stop', setup['stopped_guest']))
    return sorted(ev)


class TimelineSampler:
    """ksm-sample over the guests running now; started again (its samples
    kept) whenever the set of guests changes."""

    def __init__(self, interval_ms):
        self.interval_ms = interval_ms
        self.current = None
        self.samples = []

    def retarget(self, guests):
        self._close_current()
        ranges = [(g.pid, *g.ram_range()) for g in guests]
        self.current = Sampler(ranges, interval_ms=self.interval_ms)
        self.current.wait_next()

    def _close_current(self):
        if self.current:
            self.current.close()
            self.samples += self.current.since(0)
            self.current = None

    def last(self):
        return self.current.last() if self.current else None

    def close(self):
        self._close_current()
        return sorted(self.samples, key=lambda s: s['t'])


class GuestWatch:
    """A guest of the timeline: started, its readiness (console marker)
    followed by a thread, which starts the churn on the churning guest."""

    def __init__(self, name, mem, churn, setup, boot_timeout):
        self.g = Guest(name, mem, image='debian')
        self.name = name
        self.churn = churn
        self.setup = setup
        self.boot_timeout = boot_timeout
        self.t_start = None
        self.t_ready = None
        self.t_churn = None
        self.churn_kind = None
        self.t_stop = None
        self.error = None
        self.thread = None

    def start(self):
        self.g.start()
        self.t_start = self.g.t_start
        self.thread = threading.Thread(target=self._follow, daemon=True)
        self.thread.start()

    def _follow(self):
        try:
            self.t_ready = self.g.wait_marker('SAMEPAGE-READY', self.boot_timeout)
            if self.churn:
                self.g.send(CHURN.format(scale=self.setup['pgbench_scale'],
                                         rate=self.setup['pgbench_rate']))
                self.t_churn = self.g.wait_marker('SAMEPAGE-CHURNING', self.boot_timeout)
                text = self.g.marker_text('SAMEPAGE-CHURNING') or ''
                self.churn_kind = text.split()[1] if len(text.split()) > 1 else '?'
        except BenchError as e:
            if self.t_stop is None:
                self.error = str(e)

    def stop(self):
        if self.t_stop is None:
            self.t_stop = time.monotonic()
        self.g.stop()

    def summary(self, t0):
        rel = (lambda t: None if t is None else round(t - t0, 2))
        return {'name': self.name, 'start': rel(self.t_start), 'ready': rel(self.t_ready),
                'boot_s': (None if self.t_ready is None else round(self.t_ready - self.t_start, 2)),
                'churn_from': rel(self.t_churn), 'churn': self.churn_kind,
                'stop': rel(self.t_stop), 'error': self.error}


def census(guests, t0):
    c = census_bound([w.g for w in guests])
    other = max(c.get('shared_other_pages') or 0, 0)
    return {'t': round(time.monotonic() - t0, 2), 'guests': [w.name for w in guests],
            'bound_pages': c['freeable_pages'] - other, 'freeable_pages': c['freeable_pages'],
            'shared_other_pages': other, 'pages': c['pages'], 'zero_pages': c['zero_pages'],
            'dup_across_pages': c['dup_across_pages'], 'dup_within_pages': c['dup_within_pages'],
            'seconds': c['seconds']}


def run_policy(policy, setup, o):
    ksm_clean()
    note = load_note()
    # Left as the host has it, the same for every policy (see README: Smart scan).
    smart = stats_value(ksm_stats(), 'smart_scan')
    sampler = TimelineSampler(o.sample_ms)
    watches = {}
    running = []
    censuses = []
    disturbed = None
    t0 = time.monotonic()
    policy.start(None)
    try:
        for t_ev, kind, name in events_of(setup):
            # Until the event: watch for another process changing KSM under us.
            prev = None
            while time.monotonic() < t0 + t_ev:
                time.sleep(min(0.5, max(0.0, t0 + t_ev - time.monotonic())))
                s = sampler.last()
                if s and not disturbed and s['t'] > t0 + 2:
                    disturbed = generic_disturbance(prev, s) or policy.disturbed(s, s['t'] - t0)
                    if disturbed:
                        disturbed = f'at {s["t"] - t0:.0f} s: {disturbed}'
                        log(f'timeline: {policy.label}: disturbed {disturbed}')
                prev = s
            if running:
                censuses.append(census(running, t0))
            if kind == 'start':
                w = GuestWatch(name, setup['guest_mem_mib'], name == setup['churn_guest'], setup,
                               o.boot_timeout)
                watches[name] = w
                w.start()
                running.append(w)
                if hasattr(policy, 'kick'):
                    policy.kick()
            else:
                w = watches[name]
                running.remove(w)
                w.stop()
            sampler.retarget([w.g for w in running])
            log(f'timeline: {policy.label}: {t_ev:>4} s {kind} {name} '
                f'(at {time.monotonic() - t0:.1f} s; running: '
                f'{", ".join(w.name for w in running)})')
        while time.monotonic() < t0 + setup['end_s']:
            time.sleep(0.5)
        censuses.append(census(running, t0))
        t_end = time.monotonic()
    finally:
        policy.stop()
        samples = sampler.close()
        for w in running:
            try:
                w.stop()
            except Exception as e:   # keep stopping the others
                log(f'stopping {w.name}: {e}')
    guests = [watches[n].summary(t0) for n in sorted(watches)]
    res = {'policy': policy.name, 'label': policy.label, 'settings': policy.settings,
           'measured': time.strftime('%Y-%m-%d %H:%M:%S'), 'load': note,
           'load_after': load_note(), 'disturbed': disturbed, 'guests': guests,
           'censuses': censuses, 'duration': t_end - t0, 'smart_scan': smart}
    res['samples'] = [{'t': round(s['t'] - t0, 3), 'saved_pages': s.get('saved_pages'),
                       'ksmd_cpu_s': s.get('ksmd_cpu_s'), 'pages_to_scan': s.get('pages_to_scan'),
                       'sleep_millisecs': s.get('sleep_millisecs'),
                       'full_scans': s.get('full_scans')}
                      for s in samples if s['t'] >= t0 and s.get('saved_pages') is not None]
    if hasattr(policy, 'decisions'):
        res['decisions'] = policy.decisions()[-200:]
    metrics(res, setup)
    return res


def metrics(res, setup):
    """The figures of one policy's run, from its samples and censuses."""
    samples = res['samples']
    if len(samples) < 2:
        raise BenchError(f'{res["policy"]}: no samples')
    end = setup['end_s']
    starts = [t for t, kind, _ in events_of(setup) if kind == 'start']
    cuts = [t for t, _, _ in events_of(setup)][1:] + [end]
    # The bound in force at each time: the census taken at the end of that
    # segment (just before the next event, or at the end).
    bounds = []
    for cut in cuts:
        c = next((c for c in res['censuses'] if c['t'] >= cut - 1), None)
        bounds.append((cut, c['bound_pages'] if c else None))

    def bound_at(t):
        return next((b for cut, b in bounds if t < cut), bounds[-1][1])

    t95 = []
    for i, t_start in enumerate(starts):
        # From the guest's start until the saving reaches 95% of the
        # achievable with it in (its own segment's bound), even if that is
        # after the next event; if a guest stopped meanwhile and the bound in
        # force fell below it, of that lower bound.
        own = bound_at(t_start)
        hit = None
        for s in samples:
            b = min(own or 0, bound_at(s['t']) or 0)
            if s['t'] >= t_start and b and s['saved_pages'] >= 0.95 * b:
                hit = s['t'] - t_start
                break
        t95.append({'guest': f'g{i + 1}', 'bound_pages': own, 't95': hit,
                    'followed': end - t_start})
    res['t95'] = t95
    cpu0 = value_at(samples, 'ksmd_cpu_s', 0.0)
    res['cpu_total'] = value_at(samples, 'ksmd_cpu_s', end) - cpu0
    w0, w1 = setup['steady_window_s']
    res['steady_cpu_pct'] = ((value_at(samples, 'ksmd_cpu_s', w1) -
                              value_at(samples, 'ksmd_cpu_s', w0)) / (w1 - w0) * 100)
    area = 0.0
    for a, b in zip(samples, samples[1:]):
        if b['t'] > end:
            break
        area += (a['saved_pages'] + b['saved_pages']) / 2 * (b['t'] - a['t'])
    res['saved_mib_hours'] = area * PAGE / MiB / 3600
    res['efficiency'] = res['saved_mib_hours'] / res['cpu_total'] if res['cpu_total'] > 0 else None
    res['final_saved_mib'] = samples[-1]['saved_pages'] * PAGE / MiB
    last = res['censuses'][-1] if res['censuses'] else None
    res['final_bound_mib'] = last['bound_pages'] * PAGE / MiB if last else None
    res['bound_fraction'] = (last['bound_pages'] / last['pages']) if last and last['pages'] else None
    pts = [s['pages_to_scan'] for s in samples if s.get('pages_to_scan') is not None]
    res['pages_to_scan'] = (min(pts), max(pts)) if pts else None
    sl = [s['sleep_millisecs'] for s in samples if s.get('sleep_millisecs') is not None
          and w0 <= s['t'] <= w1]
    res['steady_sleep_ms'] = (min(sl), max(sl)) if sl else None
    res['steady_pages_to_scan'] = (lambda v: (min(v), max(v)) if v else None)(
        [s['pages_to_scan'] for s in samples if w0 <= s['t'] <= w1
         and s.get('pages_to_scan') is not None])


# ---- the policies and the runs ---------------------------------------------------------


def kick_samepage(self):
    # Its SIGUSR1 handler is in before its first line ("start"); a SIGUSR1
    # before that would end it (the hook blocks the signal until then).
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and self.proc and self.proc.poll() is None and \
            not any('"event":"start"' in line for line in self.decisions()):
        time.sleep(0.05)
    if self.proc and self.proc.poll() is None:
        os.kill(self.proc.pid, signal.SIGUSR1)


def kick_ksmtuned(self):
    if self.pid:
        try:
            os.kill(self.pid, signal.SIGUSR1)
        except ProcessLookupError:
            pass


def policies(o):
    sp = Samepage(o.tune_args)
    sp.kick = kick_samepage.__get__(sp)
    sp.settings += '; SIGUSR1 at each guest start (as the libvirt hook)'
    kt = Ksmtuned()
    kt.kick = kick_ksmtuned.__get__(kt)
    kt.settings += '; SIGUSR1 at each guest start too'
    pols = [KernelDefaults(), kt, Advisor(o.advisor_target), sp]
    if o.policies:
        pols = [p for p in pols if p.name in o.policies]
    return pols


def result_dir(o):
    return os.path.join(o.out, 'timeline')


def load_results(o, setup):
    """Every policy's result kept in OUT/timeline with this same timeline."""
    out = {}
    for path in sorted(glob.glob(os.path.join(result_dir(o), '*.json'))):
        try:
            with open(path) as f:
                r = json.load(f)
        except (OSError, ValueError) as e:
            log(f'timeline: ignoring {path}: {e}')
            continue
        if r.get('setup') == setup and r.get('policy'):
            if r.get('samples'):
                metrics(r, setup)   # this version's definitions, also for older results
            out[r['policy']] = r
    order = ['defaults', 'ksmtuned', 'advisor', 'samepage']
    return [out[k] for k in order if k in out]


def run(o):
    setup = timeline_setup(o)
    os.makedirs(result_dir(o), exist_ok=True)
    if not o.timeline_merge:
        if not ENV.debian:
            raise BenchError('the Debian guest is not built: scripts/make-guest --image debian')
        for p in policies(o):
            log(f'timeline: {p.label} ({p.settings}); {load_note()}')
            try:
                r = run_policy(p, setup, o)
            except PeerAbsent as e:
                r = {'policy': p.name, 'label': p.label, 'settings': p.settings, 'absent': str(e)}
            except BenchError as e:
                log(f'timeline: {p.label}: {e}')
                r = {'policy': p.name, 'label': p.label, 'settings': p.settings, 'error': str(e)}
            finally:
                try:
                    p.stop()
                except Exception:
                    pass
                if hasattr(p, 'cleanup'):
                    p.cleanup()
            r['setup'] = setup
            r['host'] = {'kernel': os.uname().release, 'cpus': os.cpu_count(),
                         'qemu': ENV.qemu, 'image': ENV.debian.get('disk') if ENV.debian else None}
            with open(os.path.join(result_dir(o), f'{p.name}.json'), 'w') as f:
                json.dump(r, f, indent=1)
            log(f'timeline: {p.label}: done; ksmd {fmt(r.get("cpu_total"), ".1f")} CPU-s, '
                f'steady {fmt(r.get("steady_cpu_pct"), ".2f")}%')
    results = load_results(o, setup)
    res = {'setup': setup, 'policies': results}
    res['plot'] = plot_svg(results, setup, os.path.join(o.out, 'timeline.svg'))
    return res, render(res)


# ---- the report --------------------------------------------------------------------------


def ratio_text(a, b, better_low):
    if a is None or b is None or a <= 0 or b <= 0:
        return '-'
    return f'{(b / a) if better_low else (a / b):.2f}x'


def mean_t95(r):
    """Mean over the starts of the time to 95%; a start never reached counts
    as the time it was followed (a lower bound: then the mean is one too)."""
    vals = [(x['t95'] if x['t95'] is not None else x['followed']) for x in r['t95']]
    lower = any(x['t95'] is None for x in r['t95'])
    return (sum(vals) / len(vals) if vals else None), lower


def compare(res):
    """samepage against the best peer on each target."""
    by = {r['policy']: r for r in res['policies'] if 'samples' in r}
    sp = by.get('samepage')
    peers = [by[p] for p in PEERS if p in by]
    out = []
    if not sp or not peers:
        return out, 'samepage or every peer is missing: no comparison'
    best_eff = max(peers, key=lambda r: r['efficiency'] or 0)
    ratio = sp['efficiency'] / best_eff['efficiency'] if best_eff['efficiency'] else None
    out.append(('efficiency >= 2x the best peer', ratio is not None and ratio >= 2,
                f"samepage {sp['efficiency']:.3f} vs {best_eff['label']} "
                f"{best_eff['efficiency']:.3f} MiB-h per CPU-s: {fmt(ratio, '.2f')}x"))
    low = min(peers, key=lambda r: r['steady_cpu_pct'])
    out.append(('steady ksmd CPU <= the lowest peer', sp['steady_cpu_pct'] <= low['steady_cpu_pct'],
                f"samepage {sp['steady_cpu_pct']:.2f}% vs {low['label']} "
                f"{low['steady_cpu_pct']:.2f}% "
                f"({ratio_text(sp['steady_cpu_pct'], low['steady_cpu_pct'], True)} lower)"))
    sm, s_lower = mean_t95(sp)
    pm = [(mean_t95(p), p) for p in peers]
    (best_m, best_lower), best = min(pm, key=lambda x: x[0][0])
    r95 = best_m / sm if sm else None
    per = ', '.join(
        f"{a['guest']} {fmt(a['t95'], '.1f', '>' + format(a['followed'], '.0f'))} vs "
        f"{fmt(b['t95'], '.1f', '>' + format(b['followed'], '.0f'))} s"
        for a, b in zip(sp['t95'], best['t95']))
    out.append(('time to 95% after a guest start >= 3x sooner than the best peer',
                (not s_lower) and r95 is not None and r95 >= 3,
                f"mean over the starts: samepage {'>' if s_lower else ''}{sm:.1f} s vs "
                f"{best['label']} {'>' if best_lower else ''}{best_m:.1f} s: "
                f"{'>' if best_lower and not s_lower else ''}{fmt(r95, '.2f')}x sooner "
                f"(per start, samepage vs it: {per})"))
    return out, None


def render(res):
    setup = res['setup']
    n = setup['guests']
    rows = []
    for r in res['policies']:
        if 'samples' not in r:
            rows.append([r['label'], (r.get('absent') or 'error: ' + r.get('error', '?'))[:90]]
                        + [''] * (n + 6))
            continue
        rows.append([r['label'] + (' (*)' if r.get('disturbed') else '')]
                    + [fmt(x['t95'], '.1f', f'>{x["followed"]:.0f}') for x in r['t95']]
                    + [f"{r['final_saved_mib']:.0f}/{fmt(r['final_bound_mib'], '.0f')}",
                       f"{r['cpu_total']:.1f}", f"{r['steady_cpu_pct']:.2f}",
                       f"{r['saved_mib_hours']:.2f}", fmt(r['efficiency'], '.3f'),
                       '/'.join(f"{g['boot_s']:.0f}" if g['boot_s'] is not None else '-'
                                for g in r['guests'])])
    notes = []
    for r in res['policies']:
        if 'censuses' not in r:
            continue
        cs = '; '.join(f"{c['t']:.0f} s {len(c['guests'])} guests {c['bound_pages'] * PAGE / MiB:.0f}"
                       f"/{c['pages'] * PAGE / MiB:.0f} MiB" for c in r['censuses'])
        notes.append(f"{r['label']}: measured {r['measured']} ({r['load']}, smart_scan "
                     f"{r.get('smart_scan')}); census bound/RAM scanned: {cs}")
        churn = next((g for g in r['guests'] if g['churn_from'] is not None), None)
        pts, spts, ssl = r.get('pages_to_scan'), r.get('steady_pages_to_scan'), r.get('steady_sleep_ms')
        notes.append(f"  pages_to_scan {pts[0]}-{pts[1]} in all; steady: pages_to_scan "
                     f"{spts[0]}-{spts[1]}, sleep_millisecs {ssl[0]}-{ssl[1]}"
                     if pts and spts and ssl else '  (no knob samples)')
        if churn:
            notes.append(f"  churn ({churn['churn']}) in {churn['name']} from {churn['churn_from']:.0f} s")
        if r.get('disturbed'):
            notes.append(f"  (*) disturbed {r['disturbed']}")
        for g in r['guests']:
            if g.get('error'):
                notes.append(f"  {g['name']}: {g['error'][:160]}")
        notes.append(f"  settings: {r['settings']}")
    last = next((r for r in reversed(res['policies']) if r.get('bound_fraction') is not None), None)
    head = (f"{n} Debian 12 guests x {setup['guest_mem_mib']} MiB (one image, TCG, "
            f"memory-backend-ksm), one starting every {setup['every_s']} s; {setup['churn_guest']} "
            f"runs pgbench (scale {setup['pgbench_scale']}, {setup['pgbench_rate']} tps) once up; "
            f"{setup['stopped_guest']} stops at {setup['stop_at_s']} s; end {setup['end_s']} s; "
            f"steady window {setup['steady_window_s'][0]}-{setup['steady_window_s'][1]} s")
    notes = [head] + ([
        f"achievable (census, the last one of the samepage run or the last policy): "
        f"{last['final_bound_mib']:.0f} MiB = {last['bound_fraction'] * 100:.1f}% of the running "
        "guests' RAM (freeable minus what is already on the zero page)"] if last else []) + [
        't95 gN: seconds from gN\'s start until the saving inside the guests reaches 95% of the '
        'census bound of its segment (taken just before the next event), or of the bound in force '
        'if a stop made that lower; >N: not within the N s followed',
        'saved/bound: MiB at the end; CPU-s: ksmd over the run; steady CPU%: ksmd over the '
        'steady window; MiB-h: saved integrated over the run; efficiency: MiB-h per ksmd CPU-s; '
        'boot s: each guest from start to its services answering'] + notes
    text = table('Host timeline on real guests (issue 13)',
                 ['policy'] + [f't95 g{i + 1} s' for i in range(n)]
                 + ['saved/bound MiB', 'ksmd CPU-s', 'steady CPU%', 'MiB-h', 'MiB-h/CPU-s',
                    'boot s'], rows, notes)
    lines, missing = compare(res)
    if missing:
        text += f'  {missing}\n'
    for what, ok, detail in lines:
        text += f"  TARGET {what}: {detail}: {'met' if ok else 'MISSED'}\n"
    if res.get('plot'):
        text += f"  plot: {res['plot']}\n"
    return text


def plot_svg(results, setup, path):
    """Saved MiB over time per policy, with each policy's census bound as
    dashed steps and the timeline's events: an SVG, standard library only."""
    runs = [r for r in results if r.get('samples')]
    if not runs:
        return None
    W, H, L, R, T, B = 1000, 560, 70, 200, 40, 50
    xmax = setup['end_s']
    ymax = max([s['saved_pages'] for r in runs for s in r['samples']] +
               [c['bound_pages'] for r in runs for c in r['censuses']] + [1]) * PAGE / MiB * 1.1
    X = (lambda t: L + (W - L - R) * min(max(t, 0), xmax) / xmax)
    Y = (lambda mib: H - B - (H - T - B) * mib / ymax)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{L}" y="22" font-size="15">Host timeline: MiB saved inside the guests '
           f'(exact), {setup["guests"]} Debian guests x {setup["guest_mem_mib"]} MiB</text>']
    step = 50 if ymax > 300 else 20 if ymax > 100 else 10
    v = 0
    while v <= ymax:
        out.append(f'<line x1="{L}" x2="{W - R}" y1="{Y(v):.1f}" y2="{Y(v):.1f}" stroke="#ddd"/>'
                   f'<text x="{L - 6}" y="{Y(v) + 4:.1f}" text-anchor="end">{v}</text>')
        v += step
    for t in range(0, int(xmax) + 1, 30):
        out.append(f'<text x="{X(t):.1f}" y="{H - B + 16}" text-anchor="middle">{t}</text>')
    out.append(f'<text x="{(L + W - R) / 2}" y="{H - 12}" text-anchor="middle">seconds since '
               'the policy started (clean state)</text>')
    out.append(f'<text x="16" y="{(T + H - B) / 2}" transform="rotate(-90 16 {(T + H - B) / 2})" '
               'text-anchor="middle">MiB saved</text>')
    for t, kind, name in events_of(setup):
        out.append(f'<line x1="{X(t):.1f}" x2="{X(t):.1f}" y1="{T}" y2="{H - B}" stroke="#bbb" '
                   f'stroke-dasharray="2,3"/><text x="{X(t) + 3:.1f}" y="{T + 12}" '
                   f'fill="#666">{name} {kind}s</text>')
    out.append(f'<rect x="{X(setup["steady_window_s"][0]):.1f}" y="{T}" '
               f'width="{X(setup["steady_window_s"][1]) - X(setup["steady_window_s"][0]):.1f}" '
               f'height="{H - T - B}" fill="#000" fill-opacity="0.04"/>')
    for i, r in enumerate(runs):
        color = COLORS.get(r['policy'], '#000')
        pts = ' '.join(f"{X(s['t']):.1f},{Y(s['saved_pages'] * PAGE / MiB):.1f}"
                       for s in r['samples'] if s['t'] <= xmax)
        out.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{pts}"/>')
        # The bound of each segment, measured at its end, drawn over the segment.
        cuts = [0] + [c['t'] for c in r['censuses']]
        seg = []
        for a, c in zip(cuts, r['censuses']):
            y = Y(c['bound_pages'] * PAGE / MiB)
            seg.append(f'{X(a):.1f},{y:.1f} {X(c["t"]):.1f},{y:.1f}')
        out.append(f'<polyline fill="none" stroke="{color}" stroke-width="1" '
                   f'stroke-dasharray="6,4" points="{" ".join(seg)}"/>')
        ly = T + 20 + 36 * i
        out.append(f'<line x1="{W - R + 12}" x2="{W - R + 40}" y1="{ly}" y2="{ly}" '
                   f'stroke="{color}" stroke-width="2"/><text x="{W - R + 46}" y="{ly + 4}">'
                   f'{_esc(r["policy"])}</text><text x="{W - R + 46}" y="{ly + 18}" fill="#666">'
                   f'{r["cpu_total"]:.1f} CPU-s, {fmt(r["efficiency"], ".3f")} MiB-h/CPU-s</text>')
    ly = T + 20 + 36 * len(runs)
    out.append(f'<line x1="{W - R + 12}" x2="{W - R + 40}" y1="{ly}" y2="{ly}" stroke="#000" '
               f'stroke-dasharray="6,4"/><text x="{W - R + 46}" y="{ly + 4}">census bound</text>')
    out.append('</svg>')
    with open(path, 'w') as f:
        f.write('\n'.join(out) + '\n')
    return path


def _esc(text):
    return (str(text).replace('&', '&amp;').replace('<', '&lt;').replace('>', '&gt;'))


def has_numbers(res):
    return any(r.get('samples') for r in res.get('policies', []))
