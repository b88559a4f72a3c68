# tests/lib.sh: the PASS/FAIL bookkeeping the test runners share. Source it
# (bash), then:
#   pass NAME               prints "PASS NAME" and counts it;
#   fail NAME WHY [LOG...]  prints "FAIL NAME (WHY)" and the first
#                           $TEST_LOG_LINES lines (default 40) of each
#                           non-empty LOG, named when there are several;
#   finish                  prints the failed names and "N passed, M failed";
#                           its status is 1 if any failed, so a runner can
#                           end with it.
# and installs what a runner needs, on a machine that lacks it:
#   apt_install PKG...      installs Debian packages with apt-get (as root,
#                           else through `sudo -n`), after one
#                           `apt-get update` per run; apt-get's output goes
#                           to $APT_LOG (default build/apt.log). Status 1 if
#                           it cannot (no apt-get, neither root nor
#                           password-less sudo, or apt-get failed).
#   need_cmd CMD PKG        CMD on the PATH, installing PKG if it is not;
#                           status 1 if it is still missing.
#   require_cmd CMD PKG     need_cmd, and if CMD is still missing a FAIL
#                           line "needs-PKG" saying so (never a silent
#                           skip); status 1 then.
# tests/compat/run.sh and benches/allocators.sh use the first two as well.
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

APT_LOG=${APT_LOG:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/build/apt.log}
apt_updated=0

apt_install() {
    local sudo=()
    if ((EUID != 0)); then
        command -v sudo >/dev/null 2>&1 || return 1
        sudo=(sudo -n)
    fi
    command -v apt-get >/dev/null 2>&1 || return 1
    mkdir -p "$(dirname "$APT_LOG")"
    echo "installing $* with apt-get${sudo[*]:+ (through sudo -n)}; log in $APT_LOG" >&2
    if ((apt_updated == 0)); then
        # (A failed update may leave old lists that still serve.)
        ${sudo[@]+"${sudo[@]}"} apt-get update -q >>"$APT_LOG" 2>&1 || true
        apt_updated=1
    fi
    ${sudo[@]+"${sudo[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        --no-install-recommends "$@" >>"$APT_LOG" 2>&1
}

need_cmd() {
    command -v "$1" >/dev/null 2>&1 && return 0
    apt_install "$2" || true
    command -v "$1" >/dev/null 2>&1
}

require_cmd() {
    need_cmd "$1" "$2" && return 0
    fail "needs-$2" "$1 is missing and the Debian package $2 could not be installed: \
install it (apt-get install $2, as root), or run as root or with password-less sudo (apt-get's log: $APT_LOG)"
    return 1
}
