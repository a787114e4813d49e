# hisbridge — everything from a clean clone: `make demo` (local stack + one change end to end), `make test`.
# Needs: Python 3.11+, Java 17, Maven 3.8, PostgreSQL 15 binaries (/usr/lib/postgresql/15/bin); MariaDB's server
# binaries are installed by `make mariadb` (Debian packages, no system service) when missing.
SHELL  := /bin/bash
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
HB     := $(VENV)/bin/hisbridge
JARS_STAMP := deploy/lib/.fetched

.PHONY: install jars mariadb prometheus up down status test faults chaos demo bench clean distclean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

# Jars from Maven Central into deploy/lib (git-ignored); offline first so a warm ~/.m2 needs no network.
jars: $(JARS_STAMP)

$(JARS_STAMP): deploy/pom.xml $(wildcard deploy/jars/*/pom.xml)
	mvn -q -B -Dstyle.color=never -o -f deploy/pom.xml initialize >/dev/null 2>&1 || mvn -q -B -Dstyle.color=never -f deploy/pom.xml initialize
	touch $@

# The local MariaDB HIS's server binaries (mariadb-server-core, mariadb-client) and the mysql user; a no-op when present.
mariadb:
	@bash deploy/install-mariadb.sh

# Prometheus and promtool (Debian's package, its own service disabled): the stack runs its own under var/.
prometheus:
	@bash deploy/install-prometheus.sh

up: install jars mariadb prometheus
	$(HB) stack up

down:
	@if [ -x $(HB) ]; then $(HB) stack down; fi

status: install
	-$(HB) stack status --rss

# Unit and stack tests against the real stack; the stack is stopped afterwards whatever happens.
test: install jars mariadb prometheus
	@trap '$(HB) stack down' EXIT; \
	$(HB) stack up && \
	$(VENV)/bin/pytest tests/ -q -p no:cacheprovider -W ignore::DeprecationWarning --durations=25

# Every fault scenario of tests/faults (≤ 40 min; the fast ones also run in `make test`), each ending with the
# HIS-side reconcile; the stack is stopped afterwards.
faults: install jars mariadb prometheus
	@trap '$(HB) stack down' EXIT; \
	$(HB) stack up && \
	$(VENV)/bin/pytest tests/faults -q -s -p no:cacheprovider -W ignore::DeprecationWarning -m 'faults_full or not faults_full'

# One simulated day with 20 faults drawn at random (seeded; the seed is printed), reconciled against the HIS.
SEED ?= 1
chaos: install jars mariadb prometheus
	@trap '$(HB) stack down' EXIT; \
	$(HB) stack up && \
	$(PY) tests/faults/chaos.py --seed $(SEED)

# One simulated hospital day D across 18:00 into the front-end tables, reconciled (deploy/demo.py says how).
# A few minutes; the stack and the worker stay up (`make down` stops them). A re-run simulates the next day
# while that day is in the past (a first run simulates yesterday: DEMO_DAY=YYYY-MM-DD starts further back).
demo: up
	$(PY) deploy/demo.py

# bench_flush and bench_worker use the local stack's PostgreSQL and Kafka: started if not running.
# bench_scale loads 2,000,000 patients through Connect (≈ 12 GB of Kafka data, about an hour on 2 cores).
bench: up
	@set -e; for script in bench/*.py; do echo "== $$script"; $(PY) $$script; done

clean: down
	rm -rf var deploy/lib

distclean: clean
	rm -rf $(VENV)
