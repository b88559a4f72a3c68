# shellcheck shell=bash
# Installing and locating the allocators, sourced by benches/run.sh and
# benches/instr.sh.  The caller sets ROOT, BENCH_DIR, BUILD, CC, OBMEM_SO,
# OBMEM_NOSTATS_SO and the ALLOCATORS array, and defines say and note.
#
# Allocators (names as in BENCH_ALLOCATORS and in the tables):
#   glibc      no preload: the system malloc
#   obmem      $OBMEM_SO (default target/release/libobmem.so)
#   mimalloc3  mimalloc v3, built by cargo from benches/mimalloc3/ (the
#              libmimalloc-sys crate with its `override` feature) into
#              build/mimalloc3/; if that fails, the cmeel-mimalloc wheel
#              from PyPI (pip download), unpacked there
#   mimalloc2  Debian's libmimalloc2.0 (2.0.9); `mimalloc` is an alias
#   jemalloc   Debian's libjemalloc2
#   tcmalloc   Debian's libtcmalloc-minimal4

# the old name of Debian's mimalloc
for _i in "${!ALLOCATORS[@]}"; do
    [[ ${ALLOCATORS[$_i]} == mimalloc ]] && ALLOCATORS[$_i]=mimalloc2
done
unset _i

# ---------------------------------------------------------------- install --
declare -A PKG=([mimalloc2]=libmimalloc2.0 [jemalloc]=libjemalloc2 [tcmalloc]=libtcmalloc-minimal4)
declare -A SO_RE=([mimalloc2]='/libmimalloc\.so\.[0-9]+$' [jemalloc]='/libjemalloc\.so\.[0-9]+$'
                  [tcmalloc]='/libtcmalloc_minimal\.so\.[0-9]+$')

# apt_install (tests/lib.sh): as root, else through sudo -n.
source "$ROOT/tests/lib.sh"
APT_LOG=$BUILD/apt.log

pkg_installed() { [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true) == "install ok installed" ]]; }

# install_missing [PACKAGE...]: apt-get install the Debian packages of the
# allocators in ALLOCATORS that are missing, and the given extra packages
# (each given as PACKAGE or PACKAGE:COMMAND, installed if COMMAND is absent)
install_missing() {
    local missing=() a x
    for a in "${ALLOCATORS[@]}"; do
        [[ -n ${PKG[$a]:-} ]] && ! pkg_installed "${PKG[$a]}" && missing+=("${PKG[$a]}")
    done
    for x in "$@"; do
        command -v "${x#*:}" >/dev/null || missing+=("${x%%:*}")
    done
    ((${#missing[@]})) || return 0
    if [[ ${BENCH_NO_INSTALL:-0} == 1 ]]; then
        note "not installing ${missing[*]} (BENCH_NO_INSTALL=1)"
        return 0
    fi
    say "Installing ${missing[*]} ..."
    if ! apt_install "${missing[@]}"; then
        note "cannot install ${missing[*]} (apt-get as root or through sudo -n; see $APT_LOG); those runs are skipped"
    fi
}

# --------------------------------------------------------------- mimalloc3 --
MI3_DIR=$ROOT/build/mimalloc3
MI3_SO=""   # set by build_mimalloc3
MI3_HOW=""

# build_mimalloc3: builds (or finds already built) mimalloc v3 as a preload
# library; sets MI3_SO and MI3_HOW, or notes why not and returns 1.
build_mimalloc3() {
    local log=$MI3_DIR/build.log so ver
    mkdir -p "$MI3_DIR"
    # run in benches/mimalloc3/ so that its .cargo/config.toml (the C flags)
    # applies; no CC from the caller's environment
    if command -v cargo >/dev/null &&
        (cd "$BENCH_DIR/mimalloc3" && env -u CC -u CXX cargo build --release --locked \
            --target-dir "$MI3_DIR/target") >"$log" 2>&1; then
        so=$MI3_DIR/target/release/libmimalloc3.so
        ver=$(awk '/^name = "libmimalloc-sys"/ { getline; gsub(/[^0-9.]/, ""); print }' \
            "$BENCH_DIR/mimalloc3/Cargo.lock")
        MI3_HOW="crate libmimalloc-sys $ver, feature override, built by cargo"
    else
        note "mimalloc3: cargo build of benches/mimalloc3 failed (see ${log#"$ROOT"/}); trying the cmeel-mimalloc wheel"
        local wheel=$MI3_DIR/wheel py
        py=$(command -v python3 || true)
        rm -rf "$wheel"
        mkdir -p "$wheel"
        if [[ -z $py ]] ||
            ! "$py" -m pip download --no-deps --only-binary=:all: -d "$wheel" 'cmeel-mimalloc>=3,<4' >>"$log" 2>&1 ||
            ! "$py" -m zipfile -e "$wheel"/cmeel_mimalloc-*.whl "$wheel" >>"$log" 2>&1; then
            note "mimalloc3 skipped: neither cargo nor pip could provide it (see ${log#"$ROOT"/})"
            return 1
        fi
        so=$(ls "$wheel"/cmeel.prefix/lib/libmimalloc.so.3* 2>/dev/null | head -1 || true)
        MI3_HOW="PyPI wheel $(basename "$(ls "$wheel"/cmeel_mimalloc-*.whl)")"
    fi
    if [[ -z $so || ! -f $so ]]; then
        note "mimalloc3 skipped: no library after the build (see ${log#"$ROOT"/})"
        return 1
    fi
    MI3_SO=$so
}

# ------------------------------------------------------- locate allocators --
declare -A SO=()      # allocator -> .so path ("" for glibc)
declare -A EXPECT=()  # allocator -> basename malloc must resolve to
declare -A VERSION=()
declare -A ENVS=()    # extra environment of an allocator's runs
ACTIVE=()             # allocators that will be measured

# field KEY LINE: the value of KEY=value in a RESULT line of the benchmarks.
field() {
    local kv
    for kv in $2; do
        if [[ $kv == "$1="* ]]; then
            printf '%s' "${kv#*=}"
            return 0
        fi
    done
    return 0
}

exports_symbol() { nm -D --defined-only "$1" 2>/dev/null | awk -v s="$2" '$3 == s { f = 1 } END { exit !f }'; }

# mi_version_of SO: mimalloc's own version (mi_version()) as x.y.z, asked
# from a process that has SO preloaded, so it is the library measured
mi_version_of() {
    local info=$BUILD/allocinfo out v
    if [[ ! -x $info || $BENCH_DIR/allocinfo.c -nt $info ]]; then
        $CC -O2 -o "$info" "$BENCH_DIR/allocinfo.c" -ldl || return 0
    fi
    out=$(env LD_PRELOAD="$1" "$info" 2>/dev/null || true)
    v=$(sed -n 's/.*mi_version=\([0-9]*\).*/\1/p' <<<"$out")
    [[ -n $v && $v != 0 ]] || return 0
    # 2.0.9 reports 209, 3.3.2 reports 30302
    if ((v >= 10000)); then
        printf '%d.%d.%d' $((v / 10000)) $((v / 100 % 100)) $((v % 100))
    else
        printf '%d.%d.%d' $((v / 100)) $((v / 10 % 10)) $((v % 10))
    fi
}

locate_allocators() {
    local a so missing sym
    for a in "${ALLOCATORS[@]}"; do
        case $a in
        glibc)
            SO[$a]=""; EXPECT[$a]=$(basename "$(ldd /bin/true | awk '/libc\.so/ { print $3 }')")
            VERSION[$a]=$(ldd --version 2>/dev/null | awk 'NR == 1 { print $NF }')
            ;;
        obmem)
            if [[ ! -f $OBMEM_SO ]]; then
                note "obmem skipped: $OBMEM_SO not found (build it with 'make build')"
                continue
            fi
            missing=()
            for sym in malloc free realloc calloc; do
                exports_symbol "$OBMEM_SO" "$sym" || missing+=("$sym")
            done
            if ((${#missing[@]})); then
                note "obmem skipped: $OBMEM_SO does not export ${missing[*]} (preloading it would silently measure glibc or mix allocators)"
                continue
            fi
            missing=()
            for sym in posix_memalign aligned_alloc memalign malloc_usable_size; do
                exports_symbol "$OBMEM_SO" "$sym" || missing+=("$sym")
            done
            if ((${#missing[@]})); then
                note "obmem does not export ${missing[*]}: a program calling those gets glibc's version, which is wrong for obmem's blocks (measured anyway; none of the C workloads calls them)"
            fi
            SO[$a]=$OBMEM_SO; EXPECT[$a]=$(basename "$OBMEM_SO")
            local rev="?"
            if command -v git >/dev/null && rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null); then
                git -C "$ROOT" diff --quiet HEAD -- src 2>/dev/null || rev+="+dirty src"
            fi
            VERSION[$a]="git $rev, .so built $(date -r "$OBMEM_SO" '+%F %T')"
            # Variants measured on the rings only: the debug hooks' cost and
            # the statistics counters' cost.
            SO[obmem-debug]=$OBMEM_SO; EXPECT[obmem-debug]=$(basename "$OBMEM_SO")
            ENVS[obmem-debug]=OBMEM_MALLOC=debug
            if [[ -f $OBMEM_NOSTATS_SO ]]; then
                SO[obmem-nostats]=$OBMEM_NOSTATS_SO; EXPECT[obmem-nostats]=$(basename "$OBMEM_NOSTATS_SO")
            else
                note "obmem-nostats skipped: $OBMEM_NOSTATS_SO not found"
            fi
            ;;
        mimalloc3)
            build_mimalloc3 || continue
            missing=()
            for sym in malloc free realloc calloc; do
                exports_symbol "$MI3_SO" "$sym" || missing+=("$sym")
            done
            if ((${#missing[@]})); then
                note "mimalloc3 skipped: $MI3_SO does not export ${missing[*]}"
                continue
            fi
            SO[$a]=$MI3_SO; EXPECT[$a]=$(basename "$MI3_SO")
            VERSION[$a]="mi_version() $(mi_version_of "$MI3_SO"); $MI3_HOW"
            ;;
        mimalloc2 | jemalloc | tcmalloc)
            so=$(dpkg -L "${PKG[$a]}" 2>/dev/null | grep -E "${SO_RE[$a]}" | head -1 || true)
            if [[ -z $so || ! -f $so ]]; then
                note "$a skipped: package ${PKG[$a]} not installed"
                continue
            fi
            SO[$a]=$so; EXPECT[$a]=$(basename "$so")
            VERSION[$a]="Debian $(dpkg-query -W -f='${Version}' "${PKG[$a]}")"
            [[ $a == mimalloc2 ]] && VERSION[$a]+=", mi_version() $(mi_version_of "$so")"
            ;;
        *)
            note "unknown allocator '$a' ignored"
            continue
            ;;
        esac
        ACTIVE+=("$a")
    done
}
