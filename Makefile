# The two commands of README.rst: `make demo` and `make test`. Each creates .venv and installs what it needs itself.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test venv bench fuzz mutate clean

$(STAMP): setup.cfg setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# compat mode puts this directory on sys.path, so twistd finds twisted/plugins/.
	$(BIN)/pip install --quiet -e '.[test]' --config-settings editable_mode=compat
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/cmsv6 demo

test: $(STAMP)
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/python bench/codec.py

fuzz: $(STAMP)
	$(BIN)/python bench/fuzz.py

# Before a release: every one-line mutation of a core behaviour must be caught by the tests.
mutate: $(STAMP)
	$(BIN)/python bench/mutate.py

clean:
	rm -rf $(VENV) var build *.egg-info
