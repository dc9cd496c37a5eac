# Two entry points for a fresh machine: `make demo` and `make test`.
# Debian's python3 is preferred: snmpsim (the test SNMP agent) needs a Python with the gdbm module.
PYTHON ?= $(shell test -x /usr/bin/python3 && echo /usr/bin/python3 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
DEBIAN_PACKAGES := python3-venv python3-gdbm python3-dev snmp snmpd mosquitto prometheus prometheus-snmp-exporter nftables iproute2 systemd prometheus-alertmanager chromium nats-server fping wrk \
	libpango-1.0-0 libpangoft2-1.0-0 fonts-noto-core fonts-dejavu-core poppler-utils

.PHONY: demo demo-cluster test lint typecheck unit bench bench-cluster debian-deps clean catalogs

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test,pdf]'
	touch $@

debian-deps:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  missing=$$(for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	  if [ -n "$$missing" ]; then \
	    echo "installing Debian packages: $$missing"; \
	    apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing >/dev/null; \
	  fi; \
	else echo "not root: Debian packages ($(DEBIAN_PACKAGES)) must already be installed"; fi

demo: debian-deps $(VENV)/.installed
	$(BIN)/uptimewatch demo

# The same province watched by 3 uptimewatch processes over a 3-server NATS cluster on loopback
# (docs/cluster.md); the leader is killed with SIGKILL after 2 minutes to show the failover.
demo-cluster: debian-deps $(VENV)/.installed
	$(BIN)/uptimewatch demo --nodes 3 --kill-leader-at 120

lint: $(VENV)/.installed
	$(BIN)/ruff check src tests $(wildcard bench)
	$(BIN)/ruff format --check src tests $(wildcard bench)

typecheck: $(VENV)/.installed
	$(BIN)/mypy

unit: $(VENV)/.installed
	$(BIN)/pytest -q -ra

test: debian-deps $(VENV)/.installed lint typecheck unit

# the bench extra (py-spy) for the profile of each missed goal; the table, the profiles
# (var/bench/profiles/) and var/bench/latest.json; bench/README.md says what each row means
$(VENV)/.bench-installed: pyproject.toml | $(VENV)/.installed
	$(BIN)/pip install -q -e '.[bench]'
	touch $@

bench: debian-deps $(VENV)/.installed $(VENV)/.bench-installed
	$(BIN)/python bench/poll_bench.py

# 1 uptimewatch node against 2 over a 3-server NATS cluster on loopback, and the cost of one
# observation on the stream (issue 11; ~3 minutes; var/bench/cluster.json, bench/README.md)
bench-cluster: debian-deps $(VENV)/.installed
	$(BIN)/python bench/cluster_bench.py

clean:
	rm -rf $(VENV) build dist *.egg-info

# Gettext catalogs: extract each domain's strings from the source and merge them into every
# language's .po (new strings arrive untranslated; tests/test_i18n_catalogs.py fails until the
# Vietnamese msgstr is filled in). Domains: uptimewatch (emails, reports, reasons, CLI), status (the page).
LOCALE_DIR := src/uptimewatch/locale
I18N_DOMAINS := uptimewatch status
I18N_LANGUAGES := vi en
catalogs: $(VENV)/.installed
	@mkdir -p build/locale
	@for domain in $(I18N_DOMAINS); do \
	  $(BIN)/pybabel -q extract -F $(LOCALE_DIR)/$$domain.cfg --no-location --sort-output \
	    --add-comments=TRANSLATORS: --project=uptimewatch --copyright-holder="uptimewatch developers" \
	    -o build/locale/$$domain.pot src/uptimewatch || exit 1; \
	  for lang in $(I18N_LANGUAGES); do \
	    $(BIN)/pybabel -q update -D $$domain -l $$lang -i build/locale/$$domain.pot -d $(LOCALE_DIR) \
	      --init-missing --ignore-obsolete --no-fuzzy-matching || exit 1; \
	  done; \
	done
