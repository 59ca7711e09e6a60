# The two commands of README.rst: `make demo` and `make test`. Each creates .venv and installs what it needs itself.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test venv bench fuzz mutate clean client chromium npm

# The web client's third-party files: npm packages (package-lock.json) copied where the
# page loads them (cmsv6/web/client/vendor/, git-ignored).
VENDOR := cmsv6/web/client/vendor
VENDOR_STAMP := $(VENDOR)/.installed

# Debian packages, installed when missing and we are root (a fresh machine, CI); otherwise
# the command to run is said (and, for Chromium, the browser tests skip saying it too).
APT_INSTALL := DEBIAN_FRONTEND=noninteractive apt-get install -y -q
define apt
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "make: installing Debian's $(1) ($(2))"; \
	  $(APT_INSTALL) $(1) || { apt-get update -q && $(APT_INSTALL) $(1); }; \
	else \
	  echo "make: $(2) need Debian's $(1): sudo apt-get install -y $(1)"; exit $(3); \
	fi
endef

npm:
	@command -v npm >/dev/null || { $(call apt,npm,the web client's packages,1); }

# The browser tests (tests/browser) drive Debian's Chromium; a CJK font draws the plates.
chromium:
	@[ -x /usr/bin/chromium ] || { $(call apt,chromium fonts-wqy-microhei,the browser tests,0); }

$(VENDOR_STAMP): package.json package-lock.json | npm
	npm ci --no-audit --no-fund --loglevel=error
	rm -rf $(VENDOR)
	mkdir -p $(VENDOR)/leaflet $(VENDOR)/mpegts.js $(VENDOR)/uplot
	cp -r node_modules/leaflet/dist/leaflet.js node_modules/leaflet/dist/leaflet.css node_modules/leaflet/dist/images $(VENDOR)/leaflet/
	cp node_modules/mpegts.js/dist/mpegts.js $(VENDOR)/mpegts.js/
	cp node_modules/uplot/dist/uPlot.iife.min.js node_modules/uplot/dist/uPlot.min.css $(VENDOR)/uplot/
	touch $(VENDOR_STAMP)

client: $(VENDOR_STAMP)

$(STAMP): setup.cfg setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# compat mode puts this directory on sys.path, so twistd finds twisted/plugins/.
	$(BIN)/pip install --quiet -e '.[test]' --config-settings editable_mode=compat
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP) $(VENDOR_STAMP)
	$(BIN)/cmsv6 demo

test: $(STAMP) $(VENDOR_STAMP) chromium
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/python bench/codec.py

fuzz: $(STAMP)
	$(BIN)/python bench/fuzz.py

# Before a release: every one-line mutation of a core behaviour must be caught by the tests.
mutate: $(STAMP) $(VENDOR_STAMP)
	$(BIN)/python bench/mutate.py

clean:
	rm -rf $(VENV) var build *.egg-info node_modules $(VENDOR)
