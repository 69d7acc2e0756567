"""Benchmark: a fleet demonstration of samepage place (issue 16, item 4).

Three simulated hosts, each a set of busybox guests that is run and
fingerprinted in turn (KSM is global on this machine: hosts that ran at once
would share pages with each other), then a new guest, run alone and
fingerprinted.  `samepage place --hosts DIR new.json` ranks the hosts; a
placement by free memory (what Proxmox, oVirt, KubeVirt and OpenStack do)
picks the host with the most RAM left.  Then the new guest is run with each
host's guests in turn, KSM converges, and what KSM merged between the new
guest and that host's guests (census frames: the whole set minus the host's
guests alone minus the new guest alone) is set beside the prediction.

The hosts (simulated capacity 1024 MiB each; guests 224 MiB, 96 MiB filled: the
guest kernel and initramfs take ~90 MiB, a smaller guest OOMs):
  host-a  one guest of its own image: the most free memory
  host-b  two guests of image "web" and one of another
  host-c  two guests of two other images
The new guest is a "web" guest with 25% of its fill its own: samepage place
should pick host-b, free memory host-a.
"""
import json
import os
import shutil
import tempfile

from samepage_dev.bench.bench_fleet import across_merged, converge, fingerprint, make_key
from samepage_dev.bench.common import ksm_clean, ksm_set, load_note, log, samepage, table
from samepage_dev.bench.guest import Guest, start_all, stop_all_guests
from samepage_dev.paths import PAGE, MiB

CAPACITY_MIB = 1024
WEB = 8200

HOSTS = {
    'host-a': [dict(seed=8300)],
    'host-b': [dict(seed=WEB), dict(seed=WEB), dict(seed=8400)],
    'host-c': [dict(seed=8500), dict(seed=8600)],
}
NEW = dict(seed=WEB, seed2=8999, share=75)


def guests_for(host, mem, fill):
    return [Guest(f'{host}-{i}', mem, workload='fill', mib=fill, **spec)
            for i, spec in enumerate(HOSTS[host])]


def run(o):
    d = tempfile.mkdtemp(prefix='samepage-bench-fleet-demo-')
    try:
        return run_in(o, d)
    finally:
        shutil.rmtree(d, ignore_errors=True)     # the key and the fingerprints


def run_in(o, d):
    mem, fill = (128, 32) if o.smoke else (224, 96)
    load = load_note()
    hosts_dir = os.path.join(d, 'hosts')
    os.mkdir(hosts_dir)
    key = make_key(d)
    free = {}

    # 1. Each host's guests, run and fingerprinted in turn.
    for host in HOSTS:
        gs = guests_for(host, mem, fill)
        try:
            start_all(gs)
            fingerprint(key, os.path.join(hosts_dir, f'{host}.json'), [g.pid for g in gs], host)
        finally:
            stop_all_guests(gs)
        free[host] = CAPACITY_MIB - mem * len(gs)
        log(f'fleet-demo: {host}: {len(gs)} guests fingerprinted, {free[host]} MiB free')

    # 2. The new guest, alone.
    new = Guest('new-guest', mem, workload='fill', mib=fill, **NEW)
    try:
        start_all([new])
        new_fp = fingerprint(key, os.path.join(d, 'new.json'), [new.pid], 'new')
    finally:
        stop_all_guests([new])

    # 3. The placements.
    ranked = json.loads(samepage('place', '--hosts', hosts_dir, '--json', new_fp).stdout)
    ranking = ranked['guests'][0]['hosts']
    place_text = samepage('place', '--hosts', hosts_dir, new_fp).stdout
    predicted = {h['hostname']: h['predicted_shared_pages'] for h in ranking}
    by_sharing = ranking[0]['hostname']
    by_free = max(free, key=lambda h: (free[h], h))
    log(f'fleet-demo: samepage place picks {by_sharing}, free memory picks {by_free}')

    # 4. The new guest with each host's guests: what KSM merges between them.
    measured = {}
    for host in HOSTS:
        gs = guests_for(host, mem, fill)
        ng = Guest('new-guest', mem, workload='fill', mib=fill, **NEW)
        try:
            ksm_clean()
            start_all(gs + [ng])
            secs, conv = converge(o.fleet_timeout)
            measured[host] = (across_merged([g.pid for g in gs], [ng.pid]), secs, conv)
        finally:
            stop_all_guests(gs + [ng])
            ksm_set('run=0', check=False)
        log(f'fleet-demo: {host}: predicted {predicted.get(host)}, KSM merged {measured[host][0]}')

    def mib(pages):
        return f'{pages * PAGE / MiB:.1f}'

    rows = []
    for host in HOSTS:
        m, secs, conv = measured[host]
        p = predicted.get(host)
        err = f'{100.0 * (p - m) / m:+.1f}%' if p is not None and m else '-'
        picks = ' '.join(x for x, h in (('place', by_sharing), ('free-memory', by_free)) if h == host)
        rows.append([host, len(HOSTS[host]), free[host], p if p is not None else 'excluded',
                     mib(p or 0), m, mib(m), err, f"{secs:.0f}{'' if conv else ' (not converged)'}",
                     picks or '-'])
    gain = measured[by_sharing][0] - measured[by_free][0]
    text = table('Fleet demonstration: a new guest placed by samepage place vs by free memory '
                 f'(3 simulated hosts, guests {mem} MiB with {fill} MiB filled)',
                 ['host', 'guests', 'free MiB', 'predicted pages', 'MiB', 'KSM merged pages',
                  'MiB', 'error', 'KSM s', 'chosen by'], rows,
                 ['predicted: samepage place --hosts (the new guest\'s contents in common with '
                  'the host\'s guests);',
                  'KSM merged: after the new guest ran with that host\'s guests and KSM converged, '
                  'pages merged between them (census frames).',
                  f'load: {load}'])
    text += '\n  samepage place output:\n' + ''.join('    ' + line + '\n'
                                                    for line in place_text.rstrip().split('\n'))
    text += (f'  samepage place picks {by_sharing}: KSM merged {measured[by_sharing][0]} pages '
             f'({mib(measured[by_sharing][0])} MiB) between it and the new guest; free memory '
             f'picks {by_free}: {measured[by_free][0]} pages ({mib(measured[by_free][0])} MiB); '
             f'gain {gain} pages ({mib(gain)} MiB)\n')
    res = {'predicted': predicted, 'measured': {h: v[0] for h, v in measured.items()},
           'free_mib': free, 'by_sharing': by_sharing, 'by_free': by_free, 'gain_pages': gain,
           'load': load, 'place_output': place_text}
    return res, text


def has_numbers(res):
    return bool(res.get('measured'))
