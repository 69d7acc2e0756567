"""Benchmark 1: merge convergence.

N guests filled with the same seed plus one with its own, on
memory-backend-ksm.  The census (samepage estimate --mergeable-only) says how
much merging could save: the bound.  Then, for each policy, from a clean
state (safe run=2 through samepage unmerge --all): time to 50/90/95% of the
bound and ksmd CPU seconds spent to get there, and ksmd's CPU share in the
seconds after 95% (what the policy costs once there is little left to do).

"Freed" is exact: build/bench/ksm-sample counts, in the guests' RAM, every
KSM frame mapped n > 1 times as n - 1 (pagemap + kpageflags through libksm),
a few times a second, plus the pages that went to the shared zero page since
the policy started.  The second part is KSM's work too, but its counters miss
it: to merge a page inside a transparent huge page KSM splits the huge page,
and the split (Linux 6.12+, remap_page with RMP_USE_SHARED_ZEROPAGE) maps
every zero-filled subpage to the shared zero page at once.  Guest RAM is
THP-advised, so ~11% of the bound here (the guests' zero pages) is freed
that way and never shows in pages_sharing.  A policy's bound is the census's
freeable pages minus what is already on the zero page when it starts (run=2
breaks KSM pages, not those mappings).
"""
import json
import os
import subprocess
import time

from samepage_dev.bench.common import (BenchError, PeerAbsent, fmt, ksm_clean, load_note, log,
                                       samepage, table)
from samepage_dev.paths import MiB, PAGE
from samepage_dev.bench.guest import Guest, start_all, stop_all_guests
from samepage_dev.bench.policies import Advisor, KernelDefaults, Ksmtuned, Samepage
from samepage_dev.bench.sampler import Sampler, crossing, value_at

LEVELS = (0.5, 0.9, 0.95)


def census_bound(guests):
    args = ['estimate', '--json', '--mergeable-only']
    for g in guests:
        args += ['--pid', str(g.pid)]
    r = samepage(*args, timeout=600)
    return json.loads(r.stdout)


def generic_disturbance(prev, s):
    """Another process changed KSM under a policy: run=2 (full_scans went
    down, KSM pages dropped), or ksmd stopped."""
    if prev and s.get('full_scans', 0) < prev.get('full_scans', 0):
        return 'KSM was reset under it (full_scans went down: run=2 by another process)'
    if s.get('run') not in (None, 1):
        return f"ksmd was stopped under it (run={s.get('run')})"
    return None


def with_freed(samples, other0):
    """Each sample's freed_pages: KSM's saved pages plus the pages mapped to
    the shared zero page since the policy started (see the top)."""
    for x in samples:
        if 'saved_pages' in x and 'freed_pages' not in x:
            x['freed_pages'] = x['saved_pages'] + max(x.get('other_saved_pages', 0) - other0, 0)
    return samples


def run_policy(policy, sampler, census_freeable, timeout, tail):
    """Start policy from a clean state; follow it until tail seconds after
    95% of the bound, or timeout, or another process disturbs KSM."""
    clean = ksm_clean()
    sampler.wait_next()
    s0 = sampler.wait_next()
    other0 = s0.get('other_saved_pages', 0)
    bound_pages = census_freeable - other0
    with_freed([s0], other0)
    note_before = load_note()
    t0 = time.monotonic()
    policy.start(None)
    deadline = t0 + timeout
    t95 = None
    disturbed = None
    prev = None
    while time.monotonic() < deadline:
        s = sampler.wait_next()
        if s['t'] > t0 + 1.5:
            disturbed = generic_disturbance(prev, s) or policy.disturbed(s, s['t'] - t0)
            if disturbed:
                break
        prev = s
        with_freed([s], other0)
        if t95 is None and s.get('freed_pages', 0) >= 0.95 * bound_pages:
            t95 = s['t']
            deadline = min(deadline, t95 + tail)
    t_end = time.monotonic()
    policy.stop()
    samples = with_freed([s0] + sampler.since(t0), other0)
    res = {
        'policy': policy.name, 'label': policy.label, 'settings': policy.settings,
        'bound_pages': bound_pages, 'zero_mapped_at_start': other0,
        'clean_ms': clean.get('duration_ms') if clean else None,
        'load': note_before, 'load_after': load_note(), 'timeout': timeout,
        'disturbed': disturbed, 'samples': samples, 't0': t0,
    }
    if disturbed:
        # Only what came before the disturbance counts.
        samples = [x for x in samples if x['t'] <= prev['t']] if prev else samples[:1]
        res['samples'] = samples
    cpu0 = value_at(samples, 'ksmd_cpu_s', t0)
    for level in LEVELS:
        t, _ = crossing(samples, 'freed_pages', level * bound_pages, t0)
        res[f't{int(level * 100)}'] = t
        res[f'cpu{int(level * 100)}'] = (value_at(samples, 'ksmd_cpu_s', t0 + t) - cpu0
                                         if t is not None else None)
    res['final_ratio'] = samples[-1].get('freed_pages', 0) / bound_pages if bound_pages else None
    res['final_ksm_ratio'] = (samples[-1].get('saved_pages', 0) / bound_pages
                              if bound_pages else None)
    res['cpu_total'] = samples[-1].get('ksmd_cpu_s', 0) - cpu0
    res['duration'] = t_end - t0
    # How long it was followed undisturbed: a lower bound for times not reached.
    res['observed'] = samples[-1]['t'] - t0 if len(samples) > 1 else 0.0
    if t95 is not None and samples[-1]['t'] - t95 > 1:
        w0 = t95
        w1 = samples[-1]['t']
        res['cpu_after'] = ((value_at(samples, 'ksmd_cpu_s', w1) -
                             value_at(samples, 'ksmd_cpu_s', w0)) / (w1 - w0) * 100)
    else:
        res['cpu_after'] = None
    pts = [s.get('pages_to_scan') for s in samples[1:] if s.get('pages_to_scan') is not None]
    res['pages_to_scan'] = (min(pts), max(pts)) if pts else None
    res['sleep_ms'] = sorted({s.get('sleep_millisecs') for s in samples[1:]} - {None})
    res['full_scans'] = samples[-1].get('full_scans')
    res['ksmd_cpu_at_start'] = cpu0
    # pages_to_scan before and after the first full scan (the advisor adapts there).
    for i, x in enumerate(samples[1:], 1):
        if x.get('full_scans', 0) >= 1:
            res['first_scan'] = {'t': x['t'] - t0,
                                 'pages_before': samples[i - 1].get('pages_to_scan'),
                                 'pages_after': (samples[i + 2] if i + 2 < len(samples)
                                                 else x).get('pages_to_scan')}
            break
    if hasattr(policy, 'decisions'):
        res['decisions'] = policy.decisions()
    return res


def plot(results, bound_mib, out_dir, title):
    """MiB freed over time per policy (gnuplot, PNG).  Returns the PNG path."""
    os.makedirs(out_dir, exist_ok=True)
    datas = []
    for r in results:
        if not r.get('samples'):
            continue
        path = os.path.join(out_dir, f'convergence-{r["policy"]}.dat')
        with open(path, 'w') as f:
            f.write('# seconds since the policy started, MiB freed in the guests (KSM pages '
                    'plus new zero-page mappings), ksmd CPU s\n')
            cpu0 = r['samples'][0].get('ksmd_cpu_s', 0)
            for s in r['samples']:
                f.write(f"{max(0.0, s['t'] - r['t0']):.3f} "
                        f"{s.get('freed_pages', 0) * PAGE / MiB:.2f} "
                        f"{s.get('ksmd_cpu_s', 0) - cpu0:.2f}\n")
        datas.append((path, r['label']))
    png = os.path.join(out_dir, 'convergence.png')
    script = os.path.join(out_dir, 'convergence.gp')
    xmax = max((r['duration'] for r in results if r.get('samples')), default=10)
    with open(script, 'w') as f:
        f.write(f"set terminal pngcairo size 1000,600 font ',10'\nset output '{png}'\n"
                f"set title \"{title}\"\nset xlabel 'seconds since the policy started'\n"
                "set ylabel 'MiB saved in the guests (exact)'\nset key bottom right\n"
                "set grid\nset logscale x\n"
                f"set xrange [0.5:{xmax * 1.05:.0f}]\nset yrange [0:{bound_mib * 1.08:.0f}]\n"
                f"set arrow from graph 0, first {bound_mib:.1f} to graph 1, first {bound_mib:.1f} "
                "nohead dt 2 lc rgb 'gray40'\n"
                f"set label 'achievable (census) {bound_mib:.0f} MiB' at graph 0.02, first "
                f"{bound_mib * 1.03:.1f} tc rgb 'gray40'\n")
        f.write('plot ' + ', \\\n     '.join(
            f"'{p}' using ($1 < 0.5 ? 0.5 : $1):2 with lines lw 2 title '{label}'"
            for p, label in datas) + '\n')
    r = subprocess.run(['gnuplot', script], capture_output=True, text=True)
    if r.returncode != 0:
        log(f'gnuplot failed: {r.stderr.strip()}')
        return None
    return png


def run(opts):
    """Returns (result dict, printable text, guests still running for reuse)."""
    n, mem, fill = opts.guests, opts.guest_mem, opts.fill_mib
    guests = [Guest(f'conv{i}', mem, workload='fill', mib=fill, seed=1) for i in range(n)]
    guests.append(Guest('conv-unique', mem, workload='fill', mib=fill, seed=1000003))
    log(f'convergence: booting {n} + 1 guests of {mem} MiB, filling {fill} MiB each')
    t = time.monotonic()
    start_all(guests, timeout=opts.boot_timeout)
    log(f'convergence: guests filled in {time.monotonic() - t:.1f} s')
    try:
        census = census_bound(guests)
    except Exception:
        stop_all_guests(guests)
        raise
    # What KSM can save: the census's achievable figure minus the sharing that
    # is already there and is not KSM's (pages only ever read, on the shared
    # zero page: they use no memory, so merging them saves nothing).
    other = census.get('shared_other_pages') or 0
    bound = census['freeable_pages'] - max(other, 0)
    bound_mib = bound * PAGE / MiB
    log(f'convergence: census {census["bytes_read"] / MiB:.0f} MiB read in '
        f'{census["seconds"]:.2f} s: achievable {bound_mib:.0f} MiB')

    policies = [KernelDefaults(), Ksmtuned(), Advisor(opts.advisor_target),
                Samepage(opts.tune_args)]
    if opts.policies:
        policies = [p for p in policies if p.name in opts.policies]
    ranges = [(g.pid, *g.ram_range()) for g in guests]
    # Each policy's first run, plus repeats of disturbed ones while this lasts.
    budget_end = time.monotonic() + opts.convergence_budget
    sampler = Sampler(ranges, interval_ms=opts.sample_ms)
    results = []
    try:
        for p in policies:
            log(f'convergence: {p.label} ({p.settings}); {load_note()}')
            try:
                best = None
                for attempt in range(1 + opts.retries):
                    r = run_policy(p, sampler, census['freeable_pages'], opts.policy_timeout,
                                   opts.tail)
                    r['attempts'] = attempt + 1
                    # Keep the attempt that says most: one that got to 95%, else
                    # the longest undisturbed stretch.
                    if best is None or (r.get('t95') is not None and best.get('t95') is None) \
                            or (best.get('t95') is None and r['observed'] > best['observed']):
                        best = r
                    best['attempts'] = attempt + 1
                    r = best
                    if not r.get('disturbed') or r.get('t95') is not None:
                        break   # undisturbed, or disturbed only after it reached 95%
                    # Repeat only within the time budget of this benchmark.
                    again = (attempt < opts.retries and
                             time.monotonic() + opts.policy_timeout < budget_end)
                    log(f'convergence: {p.label}: disturbed ({r["disturbed"]}); '
                        + ('again' if again else 'giving up'))
                    if not again:
                        break
                    if hasattr(p, 'cleanup'):
                        p.cleanup()
            except PeerAbsent as e:
                log(f'convergence: {p.label}: {e}')
                r = {'policy': p.name, 'label': p.label, 'settings': p.settings, 'absent': str(e)}
            except BenchError as e:
                log(f'convergence: {p.label}: {e}')
                r = {'policy': p.name, 'label': p.label, 'settings': p.settings, 'error': str(e)}
                try:
                    p.stop()
                except Exception:
                    pass
            finally:
                try:
                    p.stop()    # again: also after an interruption
                except Exception:
                    pass
                if hasattr(p, 'cleanup'):
                    p.cleanup()
            results.append(r)
            log(f'convergence: {p.label}: 95% at {fmt(r.get("t95"), ".1f")} s, '
                f'ksmd {fmt(r.get("cpu95"), ".2f")} CPU-s')
        # The sampler's exact count against the census's own, on the final state.
        try:
            last = sampler.wait_next()
            check = census_bound(guests)
            cross = {'sampler_saved_pages': last.get('saved_pages'),
                     'census_merged_pages': check.get('merged_pages')}
        except Exception as e:
            cross = {'error': str(e)}
    finally:
        sampler.close()

    png = plot(results, bound_mib, opts.out,
               f'Merge convergence: {n} x {fill} MiB shared + 1 unique, {mem} MiB guests')
    res = {'census': {k: census[k] for k in (
        'seconds', 'bytes_read', 'pages', 'zero_pages', 'distinct_contents', 'dup_within_pages',
        'dup_across_pages', 'freeable_pages', 'max_page_sharing', 'zero_pages_count_as',
        'zero_mapped_pages', 'shared_other_pages', 'merged_pages')},
        'bound_mib': bound_mib, 'policies': results, 'plot': png, 'cross_check': cross,
        'setup': {'guests': n, 'guest_mem_mib': mem, 'fill_mib': fill}}
    return res, render(res), guests


def render(res):
    rows = []
    byname = {r['policy']: r for r in res['policies']}
    for r in res['policies']:
        if 'error' in r:
            rows.append([r['label'], 'error: ' + r['error'][:60]] + [''] * 9)
            continue
        if 'absent' in r:
            rows.append([r['label'], r['absent'][:90]] + [''] * 9)
            continue
        pts = r.get('pages_to_scan')
        rows.append([
            r['label'],
            fmt(r['t50'], '.1f', f'>{r["observed"]:.0f}'), fmt(r['t90'], '.1f', f'>{r["observed"]:.0f}'),
            fmt(r['t95'], '.1f', f'>{r["observed"]:.0f}'),
            fmt(r['cpu50'], '.2f'),
            fmt(r['cpu95'], '.2f', f'>{fmt(r["cpu_total"], ".2f")}'),
            (f'{r["final_ratio"] * 100:.1f}% ({r["final_ksm_ratio"] * 100:.1f}%)'
             if r.get('final_ratio') is not None else '-'),
            fmt(r.get('cpu_after'), '.1f'),
            f'{pts[0]}-{pts[1]}' if pts else '-',
            '/'.join(str(x) for x in r.get('sleep_ms', [])),
            r['load'] + (' (*)' if r.get('disturbed') else ''),
        ])
    c = res['census']
    notes = [
        f"achievable (census of the guests' mergeable memory, {c['bytes_read'] / MiB:.0f} MiB "
        f"read in {c['seconds']:.2f} s): {res['bound_mib']:.0f} MiB = "
        f"{c['freeable_pages']} pages freeable ({c['dup_across_pages']} duplicated across guests, "
        f"{c['dup_within_pages']} within, {c['zero_pages']} zero pages counted as "
        f"{c['zero_pages_count_as']}, max_page_sharing {c['max_page_sharing']}) minus "
        f"{c.get('shared_other_pages') or 0} already shared without KSM (the zero page)",
        'tNN: seconds from the policy start (clean state: safe run=2) to NN% of that, '
        'interpolated between samples; freed = KSM pages (n-1 per KSM frame) plus pages that '
        'went to the shared zero page meanwhile (THP splits KSM makes to merge remap zero-filled '
        'subpages there: pages_sharing never counts them); each policy\'s bound is the '
        'achievable minus what is on the zero page when it starts',
        'final: freed/bound at the end (KSM pages alone in parentheses)',
        'CPU-s: ksmd utime+stime from the start to NN%; CPU% after: ksmd share of one CPU from '
        '95% to the end; pages_to_scan: the range seen',
    ]
    for r in res['policies']:
        notes.append(f"{r['label']}: {r['settings']}")
        if r.get('disturbed'):
            notes.append(f"  (*) {'after 95%' if r.get('t95') is not None else 'DISTURBED'}, "
                         f"attempt {r.get('attempts', 1)}: {r['disturbed']}; the figures are "
                         "from before that")
        fs = r.get('first_scan')
        if r['policy'] == 'advisor' and fs:
            notes.append(f"  its first full scan ended at {fs['t']:.1f} s: pages_to_scan "
                         f"{fs['pages_before']} -> {fs['pages_after']} (ksmd had used "
                         f"{r['ksmd_cpu_at_start']:.0f} CPU-s since boot when the advisor was "
                         "switched on; see the Performance notes)")
    # Peer ratios and the target.
    sp, adv = byname.get('samepage'), byname.get('advisor')
    ratio_lines = []
    for peer in ('defaults', 'ksmtuned', 'advisor'):
        p = byname.get(peer)
        if sp and p and sp.get('t95') and p.get('t95'):
            ratio_lines.append(f"samepage reaches 95% {p['t95'] / sp['t95']:.2f}x sooner than "
                               f"{p['label']} ({p['t95']:.1f} s vs {sp['t95']:.1f} s)")
        elif sp and p and sp.get('t95') and 'observed' in p:
            ratio_lines.append(f"samepage reaches 95% >{p['observed'] / sp['t95']:.2f}x sooner "
                               f"than {p['label']} (not reached in the {p['observed']:.0f} s it "
                               f"was followed{', disturbed' if p.get('disturbed') else ''})")
    if sp and adv and sp.get('cpu95') is not None and adv.get('cpu95') is not None:
        ratio_lines.append(f"ksmd CPU-s to 95%: samepage {sp['cpu95']:.2f} vs advisor "
                           f"{adv['cpu95']:.2f} ({sp['cpu95'] / adv['cpu95']:.2f}x)"
                           if adv['cpu95'] else '')
    text = table('Merge convergence (benchmark 1)',
                 ['policy', 't50 s', 't90 s', 't95 s', 'CPU-s to 50%', 'CPU-s to 95%', 'final',
                  'CPU% after', 'pages_to_scan', 'sleep ms', 'load at start'], rows, notes)
    text += ''.join(f'  {l}\n' for l in ratio_lines if l)
    text += target_text(res) + '\n'
    cc = res.get('cross_check', {})
    if cc.get('census_merged_pages') is not None:
        text += (f"  check: at the end the sampler counted {cc['sampler_saved_pages']} pages saved, "
                 f"the census {cc['census_merged_pages']} merged (exact, both)\n")
    if res.get('plot'):
        text += f"  plot: {res['plot']}\n"
    return text


def target_met(res):
    byname = {r['policy']: r for r in res['policies']}
    sp = byname.get('samepage')
    if not sp or sp.get('t95') is None:
        return False, 'samepage did not reach 95%'
    why = []
    ok = True
    for peer in ('defaults', 'ksmtuned'):
        p = byname.get(peer)
        if not p:
            continue
        if 'absent' in p:
            why.append(f'{peer}: not compared ({p["absent"]})')
            continue
        pt = p.get('t95') or p.get('observed')
        if not pt:
            why.append(f'{peer}: no figure')
            ok = False
            continue
        r = pt / sp['t95']
        bound = '' if p.get('t95') else '>'
        why.append(f'{bound}{r:.2f}x vs {peer}')
        ok = ok and r >= 2.0
    adv = byname.get('advisor')
    if adv and adv.get('cpu95') is not None and sp.get('cpu95') is not None:
        why.append(f'CPU to 95% {sp["cpu95"]:.2f} vs advisor {adv["cpu95"]:.2f} CPU-s')
        ok = ok and sp['cpu95'] <= adv['cpu95'] + 0.02   # two clock ticks of slack
    elif adv and 'error' not in adv and 'absent' not in adv:
        # The advisor did not get there: compare at the highest level it reached,
        # and with all it spent trying.
        level = next((l for l in (90, 50) if adv.get(f'cpu{l}') is not None), None)
        if level and sp.get(f'cpu{level}') is not None:
            why.append(f'advisor not at 95% in {adv["observed"]:.0f} s; CPU to {level}% '
                       f'{sp[f"cpu{level}"]:.2f} vs advisor {adv[f"cpu{level}"]:.2f} CPU-s')
            ok = ok and sp[f'cpu{level}'] <= adv[f'cpu{level}'] + 0.02
        why.append(f'CPU to 95% {sp["cpu95"]:.2f} vs advisor >{adv["cpu_total"]:.2f} CPU-s '
                   f'spent in {adv["observed"]:.0f} s without getting there')
        ok = ok and sp['cpu95'] <= adv['cpu_total']
    return ok, '; '.join(why)


def target_text(res):
    ok, why = target_met(res)
    return (f"  TARGET samepage 95% >= 2x sooner than defaults and ksmtuned, CPU-s <= advisor: "
            f"{why}: {'met' if ok else 'MISSED'}")


def has_numbers(res):
    """Smoke: a bound, and every policy ran and was sampled (saved pages and
    ksmd CPU time); at tiny sizes and a few seconds each, reaching 50% is not
    asked of the slow ones.  A peer that is not on this machine is left out
    (its row says why); samepage's own policy never is."""
    pols = [r for r in res.get('policies', []) if 'absent' not in r or r['policy'] == 'samepage']
    return res.get('bound_mib', 0) > 0 and bool(pols) and all(
        'error' not in r and len(r.get('samples', [])) >= 3 and
        all('saved_pages' in s and 'ksmd_cpu_s' in s for s in r['samples']) for r in pols)
