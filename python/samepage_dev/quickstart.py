"""scripts/quickstart: see samepage work on this machine, in a few minutes.

  scripts/quickstart [--image busybox|debian] [--guests N] [--size MiB]
                     [--fill MiB] [--qemu 7.2|10.0] [--accel tcg|kvm]
                     [--timeout S] [--no-live]

1. Sets up what is missing, all cached: scripts/setup (Debian packages), the
   meson build of samepage, scripts/build-qemu (QEMU with memory-backend-ksm;
   ~8 minutes the first time), scripts/make-guest (the guest).
2. Saves the host's KSM knobs (samepage save), boots N guests on
   memory-backend-ksm, then turns KSM on with demo scan settings (samepage set).
   --image busybox (default; 3 x 256 MiB): the small test guest; all but the
   last fill --fill MiB (default size - 96: 160 MiB; the guest's own kernel
   needs the rest) with the same seed, the last with a seed of its own (with
   --guests 2 both share).
   --image debian (3 x 768 MiB): real Debian 12 systems of one image
   (systemd, nginx, PostgreSQL; scripts/make-guest --image debian, about 3
   minutes the first time), each up once it says so on its serial console
   and its nginx answers on a forwarded loopback port.  Their web servers
   are polled from the host from then on, and the requests, failures and
   latency reported.
3. Shows a live view (redrawn in place; plain lines when stdout is not a
   terminal or with --no-live) of what each guest has merged and what the
   host saves, from QMP query-ksm-stats, with a bar toward the achievable
   sharing (samepage estimate's page census of the guests; the shared fill if
   that is unavailable), until sharing converges.  Converged means one thing
   everywhere: the host's saving reached 95% of the achievable; the time
   given is that of the first sample at or past 95% (a line of the table),
   and the view stops once the guests' merged pages then hold still for 3 s.
   Otherwise the view stops after 10 s without progress, or at --timeout,
   and says that sharing did not converge, and where it stopped.
4. Unmerges one guest with QMP ksm-unmerge (a job, in that QEMU: the safe
   way), showing its progress (and for Debian guests, its web server's
   answers meanwhile); stops the guests, restores the knobs, and prints a
   summary.

Ctrl-C (SIGINT), SIGTERM or SIGHUP at any point clean up the same way: guests
stopped through QEMUMachine (QMP quit, then kill by PID), knobs restored.
Run as root (KSM knobs, apt-get).  Exit status 0 done, 1 failed,
130 interrupted.  The build directory is $SAMEPAGE_BUILD or build/; the log
of the setup steps is quickstart.log there.
"""
import argparse
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from samepage_dev.guest import Guest, guest_accel
from samepage_dev.knobs import settle_exited
from samepage_dev.paths import BUILD, ROOT, MiB
from samepage_dev.web import WebPoller

SAMEPAGE_CLI = os.path.join(BUILD, 'cli', 'samepage')
# Fill seeds of this run: KSM merges across the host, and other guests of the
# same image (tests, another quickstart) may use small seeds.
SHARED_SEED = os.getpid() * 10 + 7
# Fast enough to merge a few hundred MiB in seconds on this kind of host; the
# saved knobs come back at the end.
DEMO_KNOBS = {'pages_to_scan': 1500, 'sleep_millisecs': 20}
# Smart scan (Linux 6.7+) off for the demo: with it on, guest pages that sat
# unchanged while the guests booted are looked at once every 9 scans, and two
# guests' copies looked at in different scans never merge
# (kernel/tests/kt-r21-smart-scan-phase.c).
NO_SMART_SCAN = {'smart_scan': 0}
GUEST_OVERHEAD_MIB = 80      # what the guest's kernel and initramfs keep for themselves
DEBIAN_MIN_MIB = 384         # a Debian guest's systemd, nginx and PostgreSQL
CONVERGED = 0.95             # of the achievable bound
SAVED_WHAT = ('pages_sharing + ksm_zero_pages host-wide, + the guests\' pages newly on the '
              'zero page')
STALL_S = 10                 # no progress for this long: converged as far as it goes
SETTLE_S = 3                 # past the bound, the guests' merged pages hold still this long


class Interrupted(Exception):
    pass


def on_signal(signum, frame):
    raise Interrupted(signal.Signals(signum).name)


class Out:
    """Progress lines, and a block of lines redrawn in place when live.
    Output that cannot be written (stdout closed: `| head`) is dropped, so
    that it never stops the cleanup."""

    def __init__(self, live):
        self.live = live
        self.drawn = 0
        self.last_plain = 0.0

    @staticmethod
    def write(text):
        try:
            sys.stdout.write(text)
            sys.stdout.flush()
        except (OSError, ValueError):
            pass

    def say(self, text=''):
        self.end_block()
        self.write(text + '\n')

    def block(self, lines, plain, force=False):
        """Redraw `lines` in place when live; else print the one line
        `plain` every 2 s (and when forced: the last state)."""
        if self.live:
            width = shutil.get_terminal_size().columns - 1
            lines = [line[:width] for line in lines]
            up = f'\x1b[{self.drawn}F' if self.drawn else ''
            self.write(up + '\x1b[?25l' + ''.join(f'\x1b[2K{line}\n' for line in lines)
                       + '\x1b[J')
            self.drawn = len(lines)
        elif force or time.monotonic() - self.last_plain >= 2:
            self.last_plain = time.monotonic()
            self.write(plain + '\n')

    def end_block(self):
        if self.live and self.drawn:
            self.write('\x1b[?25h')
        self.drawn = 0

    def restore_cursor(self):
        if self.live:
            self.write('\x1b[?25h')


def bar(fraction, width=30):
    fraction = max(0.0, min(1.0, fraction))
    full = int(round(fraction * width))
    return '[' + '#' * full + '.' * (width - full) + ']'


def mib(pages, page=4096):
    return pages * page / MiB


def step(out, n, total, what, argv, log, parse=False):
    """Run one setup step, its output into log; returns stdout's k=v lines.
    The step runs in a process group of its own, which an interrupt ends
    whole (a build's compilers included)."""
    t0 = time.monotonic()
    out.write(f'[{n}/{total}] {what} ... ')
    with open(log, 'ab') as f:
        f.write(f'\n$ {" ".join(argv)}\n'.encode())
        f.flush()
        p = subprocess.Popen(argv, stdout=subprocess.PIPE if parse else f, stderr=f, cwd=ROOT,
                             start_new_session=True)
        try:
            stdout, _ = p.communicate()
        except BaseException:
            for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
                try:
                    os.killpg(p.pid, sig)
                    p.wait(wait)
                    break
                except ProcessLookupError:
                    break
                except subprocess.TimeoutExpired:
                    continue
            out.write('interrupted\n')
            raise
    if p.returncode != 0:
        out.write('FAILED\n')
        raise RuntimeError(f'{what} failed (exit {p.returncode}); see {log}')
    out.write(f'ok ({time.monotonic() - t0:.1f} s)\n')
    vals = {}
    if parse:
        for line in stdout.decode().splitlines():
            k, _, v = line.partition('=')
            if v:
                vals[k.strip()] = v.strip()
    return vals


def samepage(*args, check=True, lock_wait=120):
    """Run samepage.  A knob change waits for the samepage host lock while
    another samepage process (an unmerge, the libvirt hook) holds it."""
    deadline = time.monotonic() + lock_wait
    while True:
        r = subprocess.run([SAMEPAGE_CLI, *args], capture_output=True, text=True, timeout=300)
        if r.returncode == 0 or 'lock' not in r.stderr or time.monotonic() > deadline:
            break
        time.sleep(1)
    if check and r.returncode != 0:
        raise RuntimeError(f'samepage {" ".join(args)}: {r.stderr.strip() or r.returncode}')
    return r


def host_knobs():
    return json.loads(samepage('stats', '--json').stdout)['knobs']


def estimate_bound(guests):
    """Pages KSM could free across the guests' mergeable memory, from
    `samepage estimate` (page census: zero pages and duplicates within and
    across the processes), or None when that is unavailable."""
    argv = ['estimate', '--json', '--mergeable-only']
    for g in guests:
        argv += ['--pid', str(g.pid)]
    try:
        r = samepage(*argv, check=False)
        if r.returncode == 0:
            pages = json.loads(r.stdout).get('freeable_pages')
            if isinstance(pages, int) and pages > 0:
                return pages
    except (OSError, ValueError, subprocess.TimeoutExpired):
        pass
    return None


def main():
    ap = argparse.ArgumentParser(prog='scripts/quickstart', description=__doc__.split('\n\n')[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--image', choices=('busybox', 'debian'), default='busybox',
                    help='busybox: the small test guest with a synthetic fill (default); '
                         'debian: real Debian 12 systems with nginx and PostgreSQL')
    ap.add_argument('--guests', type=int, default=3, help='guests to boot (>= 2; default 3)')
    ap.add_argument('--size', type=int, default=None,
                    help='RAM per guest, MiB (default 256; 768 for --image debian)')
    ap.add_argument('--fill', type=int, default=None,
                    help='MiB each busybox guest fills (default: size - 96, i.e. 160 for 256)')
    ap.add_argument('--qemu', choices=('7.2', '10.0'), default='7.2', help='QEMU version')
    ap.add_argument('--accel', choices=('tcg', 'kvm'), default='tcg',
                    help='kvm is used only if the guest really boots with it')
    ap.add_argument('--timeout', type=int, default=300, help='seconds to wait for sharing')
    ap.add_argument('--no-live', action='store_true', help='plain lines, no redrawn view')
    args = ap.parse_args()
    if args.guests < 2:
        ap.error('--guests must be at least 2 (two guests share a seed)')
    if args.image == 'debian':
        if args.fill is not None:
            ap.error('--fill is for --image busybox: the Debian guests run their services')
        if args.size is None:
            args.size = 768
        if args.size < DEBIAN_MIN_MIB:
            ap.error(f'--size must be at least {DEBIAN_MIN_MIB} MiB for --image debian '
                     '(systemd, nginx and PostgreSQL)')
    else:
        if args.size is None:
            args.size = 256
        if args.fill is None:
            args.fill = args.size - 96
        if args.fill < 1 or args.fill > args.size - GUEST_OVERHEAD_MIB:
            ap.error(f'--fill must be 1..{args.size - GUEST_OVERHEAD_MIB} MiB for --size '
                     f'{args.size}: the guest itself needs about {GUEST_OVERHEAD_MIB} MiB')
    if os.geteuid() != 0:
        print('quickstart: run as root (KSM knobs, apt-get, /proc/PID/pagemap)', file=sys.stderr)
        return 1

    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)
    out = Out(live=sys.stdout.isatty() and not args.no_live)
    state = {'guests': [], 'saved': None, 'summary': [], 'outcome': 'done'}
    status = 0
    try:
        run(args, out, state)
    except Interrupted as e:
        out.say(f'\ninterrupted ({e}): cleaning up')
        state['outcome'] = f'interrupted ({e})'
        status = 130
    except Exception as e:  # noqa: BLE001 - reported, then the same cleanup
        cause = e
        while cause is not None and not isinstance(cause, Interrupted):
            cause = cause.__cause__ or cause.__context__
        if cause is not None:    # e.g. QEMUMachine.launch wraps what interrupted it
            out.say(f'\ninterrupted ({cause}): cleaning up')
            state['outcome'] = f'interrupted ({cause})'
            status = 130
        else:
            out.say(f'\nquickstart: {e}')
            state['outcome'] = f'failed: {e}'
            status = 1
    finally:
        # No second signal may cut the cleanup short.
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, signal.SIG_IGN)
        cleanup(out, state)
    return status


def cleanup(out, state):
    """Guests stopped, then the knobs restored (in that order: restoring
    run=2 with the guests still there would unmerge them host-wide); only
    then is anything printed."""
    said = []
    stopped = []
    for p in state.get('polls', {}).values():
        p.stop()
    for g in state['guests']:
        pid = g.pid
        err = g.shutdown(timeout=20)     # QMP quit; SIGKILL by QEMUMachine if need be
        stopped.append(f'{g.short} (pid {pid}){" killed" if err else ""}')
    if stopped:
        said.append('stopped guests: ' + ', '.join(stopped))
    saved = state['saved']
    if saved:
        try:
            # ksmd drops the stopped guests' KSM metadata only when it passes
            # over them: let it, or run=0 would keep their pages_sharing.
            settle_exited()
            r = samepage('restore', '--file', saved, check=False)
            if r.returncode != 0:
                raise RuntimeError(r.stderr.strip() or f'exit {r.returncode}')
            fd, now = tempfile.mkstemp(prefix='samepage-quickstart-check-')
            os.close(fd)
            samepage('save', '--file', now, check=False)
            with open(saved) as a, open(now) as b:
                same = a.read() == b.read()
            os.unlink(now)
            os.unlink(saved)
            said.append('KSM knobs restored' + ('' if same else
                        ' (they differ from the saved ones now: something else changed them)'))
        except Exception as e:  # noqa: BLE001 - say how to finish by hand
            said.append(f'samepage restore failed: {e}; the saved knobs are in {saved}: '
                        f'run  {SAMEPAGE_CLI} restore --file {saved}')
    elif state.get('tmp'):               # interrupted while saving: nothing changed yet
        os.unlink(state['tmp'])
    out.restore_cursor()
    for line in said:
        out.say(line)
    if state['summary']:
        out.say('\n'.join(['', 'summary', *state['summary'], f'  outcome: {state["outcome"]}']))


def run(args, out, state):
    os.makedirs(BUILD, exist_ok=True)
    log = os.path.join(BUILD, 'quickstart.log')
    with open(log, 'w') as f:
        f.write(f'scripts/quickstart {" ".join(sys.argv[1:])}\n')
    out.say(f'samepage quickstart (log: {log})')
    step(out, 1, 5, 'scripts/setup (Debian packages)', [os.path.join(ROOT, 'scripts', 'setup')], log)
    if not os.path.exists(os.path.join(BUILD, 'build.ninja')):
        step(out, 2, 5, 'meson setup', ['meson', 'setup', BUILD, ROOT], log)
    step(out, 2, 5, 'build samepage (meson/ninja)', ['ninja', '-C', BUILD, 'cli/samepage'], log)
    cached = subprocess.run([os.path.join(ROOT, 'scripts', 'build-qemu'), '--qemu', args.qemu,
                             '--print'], capture_output=True).returncode == 0
    qemu = step(out, 3, 5, f'scripts/build-qemu --qemu {args.qemu}' +
                ('' if cached else ' (not built yet: about 8 minutes)'),
                [os.path.join(ROOT, 'scripts', 'build-qemu'), '--qemu', args.qemu], log, parse=True)
    make_guest = [os.path.join(ROOT, 'scripts', 'make-guest'), '--image', args.image]
    cached = subprocess.run([*make_guest, '--print'], capture_output=True).returncode == 0
    guest = step(out, 4, 5, f'scripts/make-guest --image {args.image}' +
                 ('' if cached or args.image == 'busybox' else
                  ' (not built yet: debootstrap, about 3 minutes)'),
                 make_guest, log, parse=True)
    if 'qemu' not in qemu or 'kernel' not in guest:
        raise RuntimeError(f'build-qemu or make-guest printed no paths; see {log}')

    logging.getLogger('qemu').setLevel(logging.CRITICAL)   # we report what happens ourselves

    # --- from here on the host is changed: cleanup() puts it back ---
    fd, saved = tempfile.mkstemp(prefix='samepage-quickstart-knobs-')
    os.close(fd)
    state['tmp'] = saved
    samepage('save', '--file', saved)
    state['saved'] = saved
    knobs = host_knobs()
    out.say(f'[5/5] saved the host KSM knobs (run={knobs.get("run")} pages_to_scan='
            f'{knobs.get("pages_to_scan")} sleep_millisecs={knobs.get("sleep_millisecs")})')

    if args.accel == 'kvm':
        os.environ['SAMEPAGE_ACCEL'] = 'kvm'
    accel, why = guest_accel(qemu, guest) if args.image == 'busybox' else ('tcg', None)
    if args.accel == 'kvm' and args.image == 'debian':
        why = '--accel kvm is probed with the busybox guest only: TCG'
    if why:
        out.say(why)
    n = args.guests
    debian = args.image == 'debian'
    page = os.sysconf('SC_PAGE_SIZE')
    if debian:
        seeds = [None] * n
        sharing = n
    else:
        seeds = [SHARED_SEED] * (n - 1) + [SHARED_SEED + 1] if n >= 3 else [SHARED_SEED] * n
        sharing = seeds.count(SHARED_SEED)
        fill_pages = args.fill * MiB // page
    t0 = time.monotonic()
    if debian:
        out.say(f'\nbooting {n} Debian 12 guests ({args.size} MiB each, memory-backend-ksm, '
                f'QEMU {args.qemu}, {accel.upper()}): one image, systemd, nginx, PostgreSQL')
    else:
        out.say(f'\nbooting {n} guests ({args.size} MiB each, memory-backend-ksm, QEMU '
                f'{args.qemu}, {accel.upper()}): {sharing} fill {args.fill} MiB with seed '
                f'{SHARED_SEED}' + (f', 1 with seed {seeds[-1]}' if sharing < n else ''))
    for i, seed in enumerate(seeds):
        kw = {} if debian else dict(workload='fill', mib=args.fill, seed=seed)
        g = Guest(qemu, guest, f'samepage-qs-g{i + 1}-{os.getpid()}', mem=args.size,
                  accel=accel, own_session=True, args=['-name', f'samepage-g{i + 1}'], **kw)
        g.short, g.seed = f'g{i + 1}', seed
        state['guests'].append(g)
        g.launch()
    guests = state['guests']
    for g in guests:
        if debian:
            g.wait_ready(timeout=600)
            out.say(f'  {g.short} up after {time.monotonic() - t0:5.1f} s: console says '
                    f'SAMEPAGE-READY, nginx answers on 127.0.0.1:{g.http_port}')
        else:
            g.wait_filled(timeout=300)
    boot_s = time.monotonic() - t0
    if debian:
        # Their web servers, polled from the host from now on (a request
        # every 0.2 s each): the services keep working while KSM merges.
        state['polls'] = {g.short: WebPoller(g.http_port, pause=0.2).start() for g in guests}
        head = (f'  QEMU {args.qemu} ({accel.upper()}), {n} Debian 12 guests x {args.size} MiB '
                f'(systemd, nginx, PostgreSQL); all up (nginx answering) in {boot_s:.1f} s')
        out.say(f'guests up in {boot_s:.1f} s: ' +
                ', '.join(f'{g.short} pid {g.pid} http 127.0.0.1:{g.http_port}' for g in guests))
    else:
        head = (f'  QEMU {args.qemu} ({accel.upper()}), {n} guests x {args.size} MiB, fill '
                f'{args.fill} MiB (seeds {", ".join(str(s) for s in seeds)}); booted and filled '
                f'in {boot_s:.1f} s')
        out.say(f'guests filled in {boot_s:.1f} s: ' +
                ', '.join(f'{g.short} pid {g.pid} seed {g.seed}' for g in guests))
    state['summary'] = [head]

    bound = estimate_bound(guests)
    bound_what = 'samepage estimate: all duplicate and zero pages of the guests'
    if bound is None and not debian:
        bound = (sharing - 1) * fill_pages
        bound_what = f'the shared fill: {sharing - 1} x {args.fill} MiB'
    host0 = guests[0].ksm_stats(exact=False)['host']
    base = host0.get('pages-sharing', 0) + host0.get('ksm-zero-pages', 0)
    # To merge a page inside a transparent huge page KSM splits it, and the
    # split (Linux 6.12+) maps the zero-filled subpages to the shared zero
    # page: memory freed that pages_sharing never counts.  The guests' own
    # zero-page mappings (query-ksm-stats zero-pages) count it.
    zero0 = sum(g.backend().get('zero-pages', 0) for g in guests)

    settings = dict(DEMO_KNOBS, **(NO_SMART_SCAN if 'smart_scan' in knobs else {}))
    set_argv = (['advisor_mode=none'] if knobs.get('advisor_mode') == 'scan-time' else []) + \
        [f'{k}={v}' for k, v in settings.items()] + ['run=1']
    samepage('set', *set_argv)
    out.say(f'KSM on: samepage set {" ".join(set_argv)}')
    if bound:
        out.say(f'achievable: {mib(bound, page):.0f} MiB ({bound_what})\n')
    else:
        out.say('achievable: unknown (samepage estimate gave no census): the view stops when '
                'merging stops\n')

    # --- live view until sharing converges ---
    # Converged, here and in every line printed: the host's saving reached
    # CONVERGED of the achievable bound; its time is that of the first sample
    # at or past it (printed as a line of the table).  The view goes on until
    # the guests' merged pages hold still for SETTLE_S after that.
    t_on = time.monotonic()
    last_scans, scans = host0.get('full-scans', 0), 0
    ref, ref_t = 0, t_on         # our guests' merged pages when they last moved
    reached = None               # seconds after KSM went on when CONVERGED was reached
    ended = None
    bound_mib = f'{mib(bound, page):.0f}' if bound else '?'
    while True:
        now = time.monotonic()
        figures = [g.backend() for g in guests]
        host = guests[0].ksm_stats(exact=False)['host']
        # Host-wide, since the guests were up (0 if something unmerged more
        # than that meanwhile).
        saved_pages = max(0, host.get('pages-sharing', 0) + host.get('ksm-zero-pages', 0) - base)
        saved_pages += max(0, sum(f.get('zero-pages', 0) for f in figures) - zero0)
        # Progress is judged on our guests' own figures: the host's counters
        # also move with every other KSM user on the machine.
        ours = sum(f['merged-pages'] for f in figures)
        if abs(ours - ref) > max(1, (bound or ours) // 200):
            ref, ref_t = ours, now
        frac = saved_pages / bound if bound else 0
        elapsed = now - t_on
        first_past = False
        if bound and frac >= CONVERGED:
            if reached is None:
                reached, first_past = elapsed, True
        else:
            reached = None       # fell back below: not converged after all
        # full_scans since KSM went on (a run=2 elsewhere resets the counter).
        now_scans = host.get('full-scans', 0)
        scans += now_scans - last_scans if now_scans >= last_scans else now_scans
        last_scans = now_scans
        pct = f'{100 * frac:3.0f}%' if bound else '  ?%'
        lines = [f'  {"guest":6} {"merged MiB":>11}   (query-ksm-stats merged-pages)']
        for g, f in zip(guests, figures):
            if debian:
                what = web_brief(state['polls'][g.short])
            elif g.seed == SHARED_SEED:
                what = (f'seed {g.seed}: fill shared with {sharing - 1} other'
                        + ('s' if sharing > 2 else ''))
            else:
                what = f'seed {g.seed}: fill of its own'
            lines.append(f'  {g.short:6} {mib(f["merged-pages"], page):11.1f}   {what}')
        lines.append(f'  host saves {mib(saved_pages, page):5.1f} of {bound_mib} MiB '
                     f'{bar(frac, 20)} {pct}  scans +{scans}  {elapsed:5.1f} s')
        if host.get('run') != 1:
            lines.append(f'  ksmd is not running (run={host.get("run")}): something else on '
                         f'this host changed it; waiting')
        plain = (f'{elapsed:6.1f} s  host saves {mib(saved_pages, page):.1f} of {bound_mib} MiB '
                 f'({pct.strip()}), full scans +{scans}; merged MiB: '
                 + ', '.join(f'{g.short} {mib(f["merged-pages"], page):.1f}'
                             for g, f in zip(guests, figures))
                 + ('' if host.get('run') == 1 else f' (ksmd not running: run={host.get("run")})'))
        saved_line = (f'  host: {mib(saved_pages, page):.1f} MiB saved ({SAVED_WHAT}) of '
                      f'{bound_mib} MiB achievable; ')
        state['summary'] = [head, *[
            f'  {g.short}' + (f' (seed {g.seed})' if g.seed else '') +
            f': {mib(f["merged-pages"], page):.1f} MiB merged'
            for g, f in zip(guests, figures)], saved_line + f'not converged after {elapsed:.1f} s']
        if reached is not None and now - ref_t >= SETTLE_S:
            ended = (f'converged: {100 * CONVERGED:.0f}% of achievable reached at {reached:.1f} s')
        elif now - ref_t >= STALL_S and scans >= 2:
            ended = (f'not converged: {pct.strip()} of achievable, no progress since '
                     f'{ref_t - t_on:.1f} s' if bound else
                     f'merging stopped at {ref_t - t_on:.1f} s (no progress for {STALL_S} s)')
        elif elapsed >= args.timeout:
            ended = f'not converged: {pct.strip()} of achievable at the timeout ({args.timeout} s)'
        out.block(lines, plain, force=bool(ended) or first_past)
        if ended:
            break
        time.sleep(0.5)
    out.end_block()
    out.say(f'sharing {ended}; host saves {mib(saved_pages, page):.1f} MiB'
            + (f', {100 * frac:.0f}% of achievable' if bound else '') + '\n')
    state['summary'][-1] = saved_line + ended

    # --- unmerge one of the sharing guests, safely, as a QEMU job ---
    victim = guests[sharing - 1]
    vb = victim.backend()
    out.say(f'ksm-unmerge {victim.short} (backend {vb["id"]}, {mib(vb["merged-pages"], page):.1f}'
            f' MiB merged) while it runs' + (' and serves' if debian else ''))
    if debian:
        # Its web server polled without pause around the job (the job takes
        # a fraction of a second: the 0.2 s poll would miss it).
        close = WebPoller(victim.http_port).start()
        state['polls']['close'] = close
        time.sleep(1)
    r = victim.qmp('ksm-unmerge', id=vb['id'], **{'job-id': 'quickstart-unmerge',
                                                  'auto-dismiss': False})
    if 'error' in r:
        out.say(f'  refused: {r["error"]["desc"]}')
        state['summary'].append(f'  unmerge of {victim.short} refused: {r["error"]["desc"]}')
        return
    t_u = time.monotonic()
    state['summary'].append(f'  unmerge of {victim.short}: started, did not finish')
    deadline = t_u + 300
    job = None
    while time.monotonic() < deadline:
        jobs = [j for j in victim.cmd('query-jobs') if j['id'] == 'quickstart-unmerge']
        if jobs:
            job = jobs[0]
            done, total = job['current-progress'], job['total-progress'] or 1
            line = (f'  job {job["status"]:9} {bar(done / total)} {done >> 20:4}/'
                    f'{total >> 20} MiB   {time.monotonic() - t_u:5.2f} s')
            out.block([line], line, force=job['status'] == 'concluded')
            if job['status'] == 'concluded':
                break
        time.sleep(0.05)
    t_end = time.monotonic()
    unmerge_s = t_end - t_u
    out.end_block()
    if not job or job['status'] != 'concluded':
        raise RuntimeError('the ksm-unmerge job did not conclude within 300 s')
    victim.qmp('job-dismiss', id='quickstart-unmerge')
    after = victim.backend()
    unmerged = mib(vb['merged-pages'] - after['merged-pages'], page)
    if job.get('error'):
        line = f'  unmerge of {victim.short} failed after {unmerge_s:.2f} s: {job["error"]}'
    else:
        walked = job['total-progress'] >> 20
        line = (f'  unmerge {victim.short}: {unmerged:.1f} MiB unmerged in {unmerge_s:.2f} s '
                f'({unmerged / unmerge_s:.0f} MiB/s; the job walked all {walked} MiB, '
                f'{walked / unmerge_s:.0f} MiB/s); now {mib(after["merged-pages"], page):.1f} MiB '
                f'merged, merge={"on" if after["merge"] else "off"}')
    state['summary'][-1] = line
    out.say(line.strip())
    if debian:
        time.sleep(1)       # requests after the job too
        close.stop()
        for what, samples in (
                ('1 s before', close.window(None, t_u)),
                ('during', [x for x in close.samples if x[0] < t_end and x[0] + x[1] >= t_u]),
                ('1 s after', close.window(t_end, None))):
            line = (f'  {victim.short} nginx {what} the unmerge: '
                    f'{WebPoller.describe(WebPoller.summary(samples))}')
            out.say(line.strip())
            state['summary'].append(line)
        for g in guests:
            p = state['polls'][g.short].stop()
            state['summary'].append(f'  {g.short} nginx, a request every 0.2 s from boot on: '
                                    f'{WebPoller.describe(WebPoller.summary(p.samples))}')
    alive = victim.alive(timeout=20)
    out.say(f'{victim.short} still running: console answers "echo alive": {"yes" if alive else "NO"}')


def web_brief(poll):
    """The live view's word on a guest's web server (WebPoller)."""
    samples = list(poll.samples)
    if not samples:
        return 'nginx: no answer yet'
    failed = sum(1 for s in samples if s[2])
    return (f'nginx: {len(samples)} requests, {failed} failed, last {samples[-1][1] * 1000:.0f} ms'
            + (f' ({samples[-1][2]})' if samples[-1][2] else ''))


if __name__ == '__main__':
    sys.exit(main())
