"""samepage's Python helpers for the tests, the benchmarks and scripts/quickstart.

Imported as `samepage_dev` with python/ on PYTHONPATH, which whoever runs the
code sets: meson's test environment (tests/meson.build), bench/run,
scripts/quickstart.  No module here changes the import path.  (Named
samepage_dev, not samepage, so that it is never taken for the CLI.)

What is where:
    paths        the source and build trees, page size, scripts/build-qemu's
                 and scripts/make-guest's artefacts
    cli          running the samepage CLI; the host's KSM figures through it
    knobs        saving and restoring every KSM knob around a run
    waits        polling for a condition, for full KSM scans
    procs        processes we started: alive?, stop by PID; sockets, files
    cgroups      memory and pids cgroups a test makes and removes
    pages        a second opinion on KSM pages (pagemap, kpageflags, smaps)
    qmp          a synchronous QMP client over a socket (pipelining, events,
                 round-trip timing) and query-ksm-stats with fresh counts
    repeater     a thread doing one thing again and again until stopped
    qemu_python  QEMU's own python/qemu (qemu.machine) from a built QEMU tree
    console      a guest's serial console read into timed lines (both Guests)
    guest        a project guest (scripts/make-guest) in a built QEMU, through
                 QEMU's python/qemu (tests, quickstart); bench.guest is the
                 benchmarks' plain-process QEMU (no event loop near its QMP)
    web          polling a Debian guest's web server from the host
    taprunner    unittest modules reported in TAP (python3 -m samepage_dev.taprunner)
    testing      unittest helpers (skips, TAP notes), the guest test base
                 (testing.guesttest), the libvirt daemons (testing.libvirtd)
    bench        the benchmarks of bench/run (bench.run is its program)
    quickstart   the program of scripts/quickstart
"""
