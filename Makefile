# mrsqc developer targets. Only python3.11 needs to be present; everything else is installed into .venv.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv test soak demo bench fixtures screenshot clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

test: venv
	$(BIN)/python -m pytest -m "not slow"

soak: venv
	$(BIN)/python -m pytest -m slow

demo: venv
	$(BIN)/mrsqc demo

bench: venv
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python bench/run_all.py
	$(BIN)/python bench/daemon_bench.py
	$(BIN)/python bench/tui_bench.py
	$(BIN)/python bench/bridge_bench.py
	$(BIN)/python bench/study_bench.py
	$(BIN)/python bench/scan_end_bench.py

fixtures: venv
	$(BIN)/mrsqc simulate --preset fixtures --out fixtures

screenshot: venv
	$(BIN)/python -m tui.screenshot docs/screenshot.svg
	$(BIN)/mrsqc check fixtures/demo_drift_motion.dat --out build/report-snapshot -q > /dev/null
	chromium --headless=new --no-sandbox --disable-gpu --hide-scrollbars --window-size=1150,2350 \
	    --screenshot=docs/report.png build/report-snapshot/report.html

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
