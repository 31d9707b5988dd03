# Two commands on a fresh machine: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: install demo test test-fast lint layers bench results clean

# torch is installed first and pinned: an unpinned torch would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

# The tests also exercise the optional extras: SMAX (jaxmarl), PettingZoo's MPE, local
# Ray sweeps, Slurm sweeps through submitit's local executor, the aggregate statistics
# (rliable) and the W&B / MLflow trackers (offline).
$(TEST_STAMP): $(STAMP)
	$(PY) -m pip install -q -e '.[dev,smax,ray,pettingzoo,stats,trackers,slurm]'
	touch $(TEST_STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/ddn demo --out demo

# Two tiers (README.md, Development): `make test` runs everything, as CI does;
# `make test-fast` leaves out the tests marked slow (learning runs, subprocesses, Ray,
# JAX compilation, anything over about a second) for everyday work. Both spread the test
# files over one pytest-xdist worker per logical CPU (at most TEST_WORKERS); a file stays
# on one worker, so a module's shared fixtures are built once. TEST_WORKERS=0: one process.
TEST_WORKERS ?= 4
XDIST := $(if $(filter 0,$(TEST_WORKERS)),,-n logical --maxprocesses $(TEST_WORKERS) --dist loadfile)

test: $(TEST_STAMP)
	$(PY) -m pytest -q $(XDIST)

test-fast: $(TEST_STAMP)
	$(PY) -m pytest -q -m "not slow" $(XDIST)

lint: layers
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

# The import contracts of pyproject.toml's [tool.importlinter] (which layer may import which).
layers: $(STAMP)
	$(VENV)/bin/lint-imports --no-cache --no-logo

bench: $(STAMP)
	$(PY) benchmarks/env_throughput.py

# docs/results.md's tables and figures, regenerated from the committed run records alone:
# per experiment results/<name>/, the tables docs/results/<name>.md (and .csv; mean and
# 95% CI over seeds) and the
# learning curves docs/images/results/<name>.png (mean and 95% CI over seeds); an
# experiment with no run yet is skipped. docs/results/all.md: every table over all the
# records (Table 3's personalized row is results/table2's, its raw row results/table3's;
# runs of different settings are never pooled); docs/images/results/figure5_paper.png:
# the paper's Figure 5 (each base beside DDN on it; DDN on QMIX is part A.3's defaults);
# docs/results/table1_p_at_1m.md: Table 1 under protocol P, every method at 1.05M steps;
# docs/results/p_vs_r_cw_with_r.md: the P-vs-R check's CW-QMIX pair beside Figure 5 (R),
# both read at 500k steps.
# A run still training writes its record under results/ too: the tables would show it
# half done, so the target refuses while results/ differs from what git holds.
results: $(STAMP)
	@if git rev-parse --git-dir >/dev/null 2>&1 && [ -n "$$(git status --porcelain -- results)" ]; then \
	  git status --short -- results >&2; \
	  echo "make results: results/ holds uncommitted run records (above). Commit the finished runs (git add results/<experiment>/<run>) and wait for, or move out, the ones still training; the pages are drawn from committed records only." >&2; \
	  exit 1; \
	fi
	for dir in results/*/; do \
	  name=$$(basename $$dir); \
	  ls $$dir*/metrics.jsonl >/dev/null 2>&1 || continue; \
	  $(VENV)/bin/ddn report $$dir --interval ci --out docs/results/$$name || exit 1; \
	  $(VENV)/bin/ddn plot $$dir --band ci --out docs/images/results/$$name || exit 1; \
	done
	$(VENV)/bin/ddn report results --interval ci --out docs/results/all
	$(VENV)/bin/ddn plot results/figure5 results/ddn_choices/*-ddn-default-* --panels base \
	  --band ci --out docs/images/results/figure5_paper
	$(VENV)/bin/ddn plot results/table1_smac_limit/smax-3s_vs_5z-vdn-* \
	  results/p_vs_r_smax/smax-3s_vs_5z-vdn-* --band ci \
	  --out docs/images/results/p_vs_r_smax_with_r
	$(VENV)/bin/ddn report results/p_vs_r_smax results/table1_p results/table1_p_1m \
	  --until 1050000 --last 10 --interval ci --outcomes --out docs/results/table1_p_at_1m
	$(VENV)/bin/ddn plot results/p_vs_r_smax results/table1_p results/table1_p_1m \
	  --until 1050000 --band ci --out docs/images/results/table1_p_at_1m
	$(VENV)/bin/ddn report results/figure5 results/p_vs_r_cw --until 500000 --last 10 \
	  --interval ci --out docs/results/p_vs_r_cw_with_r
	$(VENV)/bin/ddn plot results/figure5/*cw_qmix-* results/p_vs_r_cw --until 500000 \
	  --band ci --out docs/images/results/p_vs_r_cw_with_r

clean:
	rm -rf $(VENV) demo runs
