# tap-merge.awk: one test's stdout -> lines of the guest's single TAP stream.
#   awk -v name=NAME -v n=LAST_NUMBER -v st=EXIT_STATUS -v secs=S -v limit=L -f tap-merge.awk OUT
# Each "ok"/"not ok" line the test printed (GTest --tap, kt-harness) is
# renumbered from n+1 and prefixed with NAME.  A test that printed none is one
# line by its exit status (0 ok, 77 skip with its reason, else not ok).  A test
# that exited non-zero (not 77) without a "not ok" of its own gets one more
# "not ok", as meson's TAP parser would fail it.
BEGIN { seen = 0; failed = 0; reason = "" }

/^(not )?ok([ \t]|$)/ {
    bad = ($0 ~ /^not ok/)
    rest = $0
    sub(/^(not )?ok[ \t]*[0-9]*[ \t]*(- )?/, "", rest)
    n++; seen++
    if (bad && rest !~ /#[ \t]*TODO/) failed++
    printf "%s %d - %s: %s\n", bad ? "not ok" : "ok", n, name, rest
    next
}
/^1\.\.0[ \t]*#/ { r = $0; sub(/^1\.\.0[ \t]*#[ \t]*(SKIP|skip)?[ \t]*/, "", r); reason = r; next }
/^SKIP: / { reason = substr($0, 7); next }
/^Bail out!/ { bail = $0; next }
NF { last = $0 }

function why() {
    if (st == 137 && secs >= limit) return "killed after the " limit " s timeout"
    if (bail != "") return bail
    return "exit status " st
}

END {
    if (seen == 0) {
        n++
        if (st == 0) {
            printf "ok %d - %s\n", n, name
        } else if (st == 77) {
            if (reason == "") reason = last
            gsub(/#/, "", reason)
            printf "ok %d - %s # SKIP %s\n", n, name, reason
        } else {
            printf "not ok %d - %s: %s\n", n, name, why()
        }
    } else if (st != 0 && st != 77 && failed == 0) {
        n++
        printf "not ok %d - %s: %s\n", n, name, why()
    }
}
