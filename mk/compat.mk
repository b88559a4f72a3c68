# mk/compat.mk: the compatibility suite, real programs under
# LD_PRELOAD=libobmem.so compared with the same runs on glibc's malloc
# (tests/compat/run.sh; docs/reliability/compat.md).
#   make test-compat        the full workloads (about 10 minutes on 2 cores)
#   make test-compat-quick  a bounded slice of the same cases (part of make test)
# Both install missing Debian packages (sqlite3, redis-server, ...) with apt-get.

.PHONY: test-compat test-compat-quick

test-compat: build
	bash tests/compat/run.sh

test-compat-quick: build
	bash tests/compat/run.sh --quick

TESTS += test-compat-quick
