# Fault injection, memory return and soak tests (tests/faults/, described in
# docs/reliability/faults.md). Included by the Makefile.
#
#   make test-faults               every fault and memory-return test (~1 min on 2 cores)
#   make soak SOAK_SECONDS=600     the multi-threaded stress, statistics checked at the end
#   make faults-full               longer variants: the full debug sweep, 1 GiB x 10 with
#                                  larger blocks, a 120 s drift run

SOAK_SECONDS ?= 600
DRIFT_SECONDS ?= 120

.PHONY: test-faults soak faults-full

test-faults: build
	bash tests/faults/run.sh

soak: build
	SOAK_SECONDS=$(SOAK_SECONDS) FAULTS_TIMEOUT=$$(( $(SOAK_SECONDS) + 300 )) \
	  bash tests/faults/run.sh soak

faults-full: build
	FAULTS_FULL=1 DRIFT_SECONDS=$(DRIFT_SECONDS) FAULTS_TIMEOUT=$$(( $(DRIFT_SECONDS) + 900 )) \
	  bash tests/faults/run.sh

TESTS += test-faults
