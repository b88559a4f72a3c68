# Coverage-guided fuzzing of the whole C API (fuzz/, docs/reliability/fuzz.md).
#
#   make fuzz          fuzz for FUZZ_SECONDS (default 300) with libFuzzer;
#                      installs clang and its libFuzzer runtime if missing
#   make fuzz-replay   replay the committed corpora (gcc, release libobmem.so;
#                      no clang) in every harness mode; part of make test
#   make fuzz-corpus   merge what `make fuzz` found into fuzz/corpus, minimized
#   make fuzz-corpus-threads  the same for fuzz/corpus-threads
#   make fuzz-coverage per source file coverage of obmem by fuzz/corpus
#   make fuzz-coverage-threads  the same for fuzz/corpus-threads
#   make fuzz-tsan     replay fuzz/corpus-threads with the harness built with
#                      -fsanitize=thread
#
# FUZZ_MODE=plain|hooks|debug picks the mode of fuzz/fuzz_api.c (one thread
# drives the whole API); FUZZ_MODE=threads|threads-debug runs
# fuzz/fuzz_threads.c (2-4 threads, cross-thread frees, thread exits),
# plain or under the debug hooks. FUZZ_INSTRUMENT=0 links the uninstrumented
# release libobmem.a instead (libFuzzer then sees only the harness's
# branches); FUZZ_ARGS adds libFuzzer flags.

FUZZ_SECONDS    ?= 300
FUZZ_MODE       ?= plain
FUZZ_INSTRUMENT ?= 1
FUZZ_ARGS       ?=
FUZZ_MAX_LEN    ?= 4096
FUZZ_CLANG      ?= clang
FUZZ_OUT        := $(BUILD)/fuzz
FUZZ_TRIPLE     := $(shell rustc -vV 2>/dev/null | sed -n 's/^host: //p')
FUZZ_LIBA       := target/fuzz/$(FUZZ_TRIPLE)/release/libobmem.a
# SanitizerCoverage in obmem itself: 8-bit counters, the PC table and
# comparison tracing, the instrumentation clang's -fsanitize=fuzzer adds.
FUZZ_RUSTFLAGS  := -Cpasses=sancov-module \
  -Cllvm-args=-sanitizer-coverage-level=3 \
  -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
  -Cllvm-args=-sanitizer-coverage-pc-table \
  -Cllvm-args=-sanitizer-coverage-trace-compares
FUZZ_CFLAGS     := -O2 -g -Wall -Wextra -Iinclude -fsanitize=fuzzer
FUZZ_REPLAY     := $(FUZZ_OUT)/replay
FUZZ_REPLAY_T   := $(FUZZ_OUT)/replay_threads
FUZZ_MODES      := plain hooks debug
FUZZ_TMODES     := plain debug
# The target, its mode and its corpus for FUZZ_MODE.
ifneq ($(filter threads threads-debug,$(FUZZ_MODE)),)
FUZZ_BIN        := $(FUZZ_OUT)/fuzz_threads_bin
FUZZ_ENV_MODE   := $(if $(filter threads-debug,$(FUZZ_MODE)),debug,plain)
FUZZ_CORPUS     := fuzz/corpus-threads
FUZZ_SEEDS      := $(FUZZ_OUT)/seeds-threads
else
FUZZ_BIN        := $(FUZZ_OUT)/fuzz_api_bin
FUZZ_ENV_MODE   := $(FUZZ_MODE)
FUZZ_CORPUS     := fuzz/corpus
FUZZ_SEEDS      := $(FUZZ_OUT)/seeds
endif

.PHONY: fuzz fuzz-build fuzz-clang fuzz-lib fuzz-seeds fuzz-replay fuzz-corpus \
  fuzz-corpus-threads fuzz-coverage fuzz-coverage-threads fuzz-tsan

TESTS += fuzz-replay

# clang with libFuzzer: Debian's clang, plus the compiler-rt package of the
# same version when the runtime is missing (it holds libclang_rt.fuzzer).
fuzz-clang:
	@probe='int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { (void)d; (void)n; return 0; }'; \
	if ! echo "$$probe" | $(FUZZ_CLANG) -x c - -fsanitize=fuzzer -o /dev/null >/dev/null 2>&1; then \
	  echo "==> installing clang and its libFuzzer runtime (apt-get, tests/lib.sh)"; \
	  if ! command -v $(FUZZ_CLANG) >/dev/null 2>&1; then \
	    bash -c 'source tests/lib.sh && apt_install clang' || exit 1; \
	  fi; \
	  v=$$($(FUZZ_CLANG) --version | sed -n 's/.*clang version \([0-9]*\).*/\1/p' | head -1); \
	  echo "$$probe" | $(FUZZ_CLANG) -x c - -fsanitize=fuzzer -o /dev/null >/dev/null 2>&1 || \
	    bash -c "source tests/lib.sh && apt_install libclang-rt-$$v-dev" || exit 1; \
	  echo "$$probe" | $(FUZZ_CLANG) -x c - -fsanitize=fuzzer -o /dev/null || \
	    { echo "clang $$v cannot link -fsanitize=fuzzer"; exit 1; }; \
	fi

# obmem as a static library with SanitizerCoverage. --target keeps the flags
# off the build scripts; a non-LTO build with several codegen units.
fuzz-lib:
	RUSTFLAGS="$(FUZZ_RUSTFLAGS)" CARGO_PROFILE_RELEASE_LTO=false \
	  CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
	  cargo rustc --release --lib --crate-type staticlib --features c-library --target $(FUZZ_TRIPLE) \
	  --target-dir target/fuzz

# The libFuzzer binary. libobmem.a defines malloc & co, so the whole fuzzer
# process (libFuzzer's own allocations included) runs on obmem. No ASan:
# it would replace malloc itself.
ifeq ($(FUZZ_INSTRUMENT),0)
fuzz-build: fuzz-clang build
	@mkdir -p $(FUZZ_OUT)
	$(FUZZ_CLANG) $(FUZZ_CFLAGS) fuzz/fuzz_api.c $(LIBDIR)/libobmem.a -lpthread -ldl \
	  -o $(FUZZ_OUT)/fuzz_api_noinst
	$(FUZZ_CLANG) $(FUZZ_CFLAGS) fuzz/fuzz_threads.c $(LIBDIR)/libobmem.a -lpthread -ldl \
	  -o $(FUZZ_OUT)/fuzz_threads_noinst
	@ln -sf fuzz_api_noinst $(FUZZ_OUT)/fuzz_api_bin
	@ln -sf fuzz_threads_noinst $(FUZZ_OUT)/fuzz_threads_bin
else
fuzz-build: fuzz-clang fuzz-lib
	@mkdir -p $(FUZZ_OUT)
	$(FUZZ_CLANG) $(FUZZ_CFLAGS) fuzz/fuzz_api.c $(FUZZ_LIBA) -lpthread -ldl \
	  -o $(FUZZ_OUT)/fuzz_api
	$(FUZZ_CLANG) $(FUZZ_CFLAGS) fuzz/fuzz_threads.c $(FUZZ_LIBA) -lpthread -ldl \
	  -o $(FUZZ_OUT)/fuzz_threads
	@ln -sf fuzz_api $(FUZZ_OUT)/fuzz_api_bin
	@ln -sf fuzz_threads $(FUZZ_OUT)/fuzz_threads_bin
endif

# New inputs go to $(FUZZ_OUT)/corpus-$(FUZZ_MODE); the committed corpus is
# read only. Crashes land in $(FUZZ_OUT)/artifacts/ (keep real bugs in
# fuzz/crashes/).
fuzz: fuzz-build fuzz-seeds
	@mkdir -p $(FUZZ_OUT)/corpus-$(FUZZ_MODE) $(FUZZ_OUT)/artifacts $(FUZZ_CORPUS)
	OBMEM_FUZZ_MODE=$(FUZZ_ENV_MODE) $(FUZZ_BIN) \
	  -max_total_time=$(FUZZ_SECONDS) -max_len=$(FUZZ_MAX_LEN) -timeout=30 \
	  -rss_limit_mb=3072 -print_final_stats=1 \
	  -artifact_prefix=$(FUZZ_OUT)/artifacts/ $(FUZZ_ARGS) \
	  $(FUZZ_OUT)/corpus-$(FUZZ_MODE) $(FUZZ_CORPUS) $(FUZZ_SEEDS)

# Hand-made inputs for the deep cases (fuzz/make_seeds.py).
fuzz-seeds:
	@rm -rf $(FUZZ_OUT)/seeds $(FUZZ_OUT)/seeds-threads
	python3 fuzz/make_seeds.py $(FUZZ_OUT)/seeds
	python3 fuzz/make_seeds.py --threads $(FUZZ_OUT)/seeds-threads

# Rebuilds fuzz/corpus from itself, the seeds and everything `make fuzz`
# found: the inputs that add edge coverage (libFuzzer -merge=1
# -use_counters=0). -merge prefers small inputs, which leaves many tiny
# ones; starting from the FUZZ_CORPUS_BIG largest of a first merge halves
# the count for the same coverage. Then inputs adding coverage in the hooks
# and debug modes are added.
FUZZ_CORPUS_BIG ?= 80
FUZZ_MERGE      := $(FUZZ_OUT)/merge
fuzz-corpus: fuzz-build fuzz-seeds
	@rm -rf $(FUZZ_MERGE) && mkdir -p $(FUZZ_MERGE)/all $(FUZZ_MERGE)/final fuzz/corpus
	@cand="fuzz/corpus $(FUZZ_OUT)/seeds $(wildcard $(addprefix $(FUZZ_OUT)/corpus-,$(FUZZ_MODES)))"; \
	OBMEM_FUZZ_MODE=plain $(FUZZ_OUT)/fuzz_api_bin -merge=1 -use_counters=0 \
	  -max_len=$(FUZZ_MAX_LEN) $(FUZZ_MERGE)/all $$cand 2>&1 | grep 'MERGE-OUTER: [0-9]* new' || exit 1; \
	cp $$(ls -S -d $(FUZZ_MERGE)/all/* | head -$(FUZZ_CORPUS_BIG)) $(FUZZ_MERGE)/final/; \
	for m in plain hooks debug; do \
	  OBMEM_FUZZ_MODE=$$m $(FUZZ_OUT)/fuzz_api_bin -merge=1 -use_counters=0 \
	    -max_len=$(FUZZ_MAX_LEN) $(FUZZ_MERGE)/final $(FUZZ_MERGE)/all $$cand 2>&1 | \
	    sed -n "s/^MERGE-OUTER: \([0-9]* new.*\)/$$m: \1/p"; \
	done
	rm -rf fuzz/corpus && mv $(FUZZ_MERGE)/final fuzz/corpus
	@echo "fuzz/corpus: $$(ls fuzz/corpus | wc -l) files, $$(cat fuzz/corpus/* | wc -c) bytes"

# The same for fuzz/corpus-threads, but starting from the FUZZ_TCORPUS_BIG
# largest candidates (long scripts: many operations, exits and phases per
# input), then the inputs that add coverage in the plain and debug modes.
# The merges run every phase sequenced (OBMEM_FUZZ_SEQUENCED=1): the
# coverage of a concurrent phase depends on the interleaving, and a merge
# would keep inputs for that noise.
FUZZ_TCORPUS_BIG ?= 24
fuzz-corpus-threads: fuzz-build fuzz-seeds
	@rm -rf $(FUZZ_MERGE) && mkdir -p $(FUZZ_MERGE)/final fuzz/corpus-threads
	@cand="fuzz/corpus-threads $(FUZZ_OUT)/seeds-threads $(wildcard $(FUZZ_OUT)/corpus-threads $(FUZZ_OUT)/corpus-threads-debug)"; \
	cp $$(for d in $$cand; do find $$d -type f; done | xargs ls -S | head -$(FUZZ_TCORPUS_BIG)) $(FUZZ_MERGE)/final/; \
	for m in $(FUZZ_TMODES); do \
	  OBMEM_FUZZ_SEQUENCED=1 OBMEM_FUZZ_MODE=$$m $(FUZZ_OUT)/fuzz_threads_bin -merge=1 -use_counters=0 \
	    -max_len=$(FUZZ_MAX_LEN) $(FUZZ_MERGE)/final $$cand 2>&1 | \
	    sed -n "s/^MERGE-OUTER: \([0-9]* new.*\)/$$m: \1/p"; \
	done
	rm -rf fuzz/corpus-threads && mv $(FUZZ_MERGE)/final fuzz/corpus-threads
	@echo "fuzz/corpus-threads: $$(ls fuzz/corpus-threads | wc -l) files, $$(cat fuzz/corpus-threads/* | wc -c) bytes"

# Per source file coverage of obmem by the committed corpus, in all modes.
fuzz-coverage: fuzz-build
	@for m in $(FUZZ_MODES); do \
	  OBMEM_FUZZ_MODE=$$m $(FUZZ_OUT)/fuzz_api_bin -runs=0 -use_counters=0 \
	    -print_coverage=1 fuzz/corpus > $(FUZZ_OUT)/coverage-$$m.txt 2>&1; \
	  echo "$$m: $$(grep -oE 'INITED cov: [0-9]+ ft: [0-9]+' $(FUZZ_OUT)/coverage-$$m.txt)"; \
	done
	python3 fuzz/coverage.py $(addprefix $(FUZZ_OUT)/coverage-,$(addsuffix .txt,$(FUZZ_MODES)))

fuzz-coverage-threads: fuzz-build
	@for m in $(FUZZ_TMODES); do \
	  OBMEM_FUZZ_MODE=$$m $(FUZZ_OUT)/fuzz_threads_bin -runs=0 -use_counters=0 \
	    -print_coverage=1 fuzz/corpus-threads > $(FUZZ_OUT)/coverage-threads-$$m.txt 2>&1; \
	  echo "threads $$m: $$(grep -oE 'INITED cov: [0-9]+ ft: [0-9]+' $(FUZZ_OUT)/coverage-threads-$$m.txt)"; \
	done
	python3 fuzz/coverage.py $(addprefix $(FUZZ_OUT)/coverage-threads-,$(addsuffix .txt,$(FUZZ_TMODES)))

# The harness built with gcc -Werror and linked with -lobmem as a user
# would; the corpus replayed in each mode. A model mismatch aborts.
$(FUZZ_REPLAY): fuzz/fuzz_api.c fuzz/fuzz_common.h fuzz/replay.c include/obmem.h | build
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Iinclude fuzz/fuzz_api.c fuzz/replay.c $(LINK) -o $@

$(FUZZ_REPLAY_T): fuzz/fuzz_threads.c fuzz/fuzz_common.h fuzz/replay.c include/obmem.h | build
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Iinclude fuzz/fuzz_threads.c fuzz/replay.c $(LINK) -o $@

fuzz-replay: build $(FUZZ_REPLAY) $(FUZZ_REPLAY_T)
	@for m in $(FUZZ_MODES); do \
	  OBMEM_FUZZ_MODE=$$m timeout 300 $(FUZZ_REPLAY) fuzz/corpus || \
	    { echo "fuzz-replay: mode $$m failed"; exit 1; }; \
	done
	@for m in $(FUZZ_TMODES); do \
	  OBMEM_FUZZ_MODE=$$m timeout 300 $(FUZZ_REPLAY_T) fuzz/corpus-threads || \
	    { echo "fuzz-replay: threads mode $$m failed"; exit 1; }; \
	done

# fuzz_threads.c built with ThreadSanitizer (clang), linked with the release
# libobmem.so: the malloc family is then TSan's, so the harness drives the
# obm_* domains only, and checks its own synchronisation and that no two
# threads use one block unordered. Replays fuzz/corpus-threads and what
# `make fuzz FUZZ_MODE=threads` found.
FUZZ_TSAN_BIN := $(FUZZ_OUT)/replay_threads_tsan
fuzz-tsan: fuzz-clang build
	@mkdir -p $(FUZZ_OUT)
	$(FUZZ_CLANG) -O1 -g -fsanitize=thread -Wall -Wextra -Iinclude fuzz/fuzz_threads.c \
	  fuzz/replay.c $(LINK) -o $(FUZZ_TSAN_BIN)
	TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 $(TSAN_OPTIONS)" timeout 900 \
	  $(FUZZ_TSAN_BIN) fuzz/corpus-threads $(wildcard $(FUZZ_OUT)/corpus-threads)
