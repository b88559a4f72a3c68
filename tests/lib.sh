# tests/lib.sh: the PASS/FAIL bookkeeping the test runners share. Source it
# (bash), then:
#   pass NAME               prints "PASS NAME" and counts it;
#   fail NAME WHY [LOG...]  prints "FAIL NAME (WHY)" and the first
#                           $TEST_LOG_LINES lines (default 40) of each
#                           non-empty LOG, named when there are several;
#   finish                  prints the failed names and "N passed, M failed";
#                           its status is 1 if any failed, so a runner can
#                           end with it.
passed=0
failed=0
failed_names=()

pass() {
    echo "PASS $1"
    passed=$((passed + 1))
}

fail() {
    local name=$1 why=$2 f
    shift 2
    echo "FAIL $name ($why)"
    for f in "$@"; do
        [[ -n $f && -s $f ]] || continue
        (($# > 1)) && echo "    --- ${f##*/}:"
        head -n "${TEST_LOG_LINES:-40}" "$f" | cut -c1-300 | sed -e 's/^/    /'
    done
    failed=$((failed + 1))
    failed_names+=("$name")
}

finish() {
    ((failed == 0)) || echo "failed: ${failed_names[*]}"
    echo "$passed passed, $failed failed"
    ((failed == 0))
}
