# dgcn: set-up, tests, benchmarks and the stage pipelines.
# Every pipeline step is a file target, so a rerun only redoes what changed.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DGCN := $(VENV)/bin/dgcn
DEVICE ?= auto
# idle OpenMP threads sleep instead of spinning: see dgcn_cli/__init__.py
export OMP_WAIT_POLICY ?= PASSIVE

# $(call redo,FILES) in a recipe: --resume when one of FILES (what an interrupted run
# leaves: a .partial or last.pt) is newer than every prerequisite of the target, i.e.
# was started with these inputs; --overwrite otherwise. A resume with other options is
# refused by dgcn itself with a one-line error.
redo = $(if $(shell for f in $(1); do [ -e "$$f" ] || continue; ok=1; for p in $^; do [ "$$f" -nt "$$p" ] || ok=; done; [ -n "$$ok" ] && { echo y; break; }; done),--resume,--overwrite)

# $(call stamp,TEXT) in a recipe: write TEXT (a step's options, a pipeline's run list) to the
# target ($@) only when it differs from what the target holds, so what depends on the target is
# older than it exactly when TEXT changed. The target's rule takes $(FORCE), always considered.
stamp = mkdir -p $(@D) && printf '%s\n' '$(1)' > $@.new && if cmp -s $@.new $@; then rm $@.new; else mv $@.new $@; fi
FORCE := _force
# $(call adopt_stamps,DIR,STEPS,PREFIX) while make reads the makefiles: where DIR exists but
# DIR/.opts/<step> does not (outputs made before options were recorded, by an earlier dgcn),
# write it from $(PREFIX<step>) dated 1970, so those outputs stay current (a stamp first written
# by its rule counts as changed and would redo every step).
adopt_stamps = $(if $(wildcard $(1)),$(foreach step,$(2),$(shell f=$(1)/.opts/$(step); [ -e $$f ] || \
	{ mkdir -p $(1)/.opts && printf '%s\n' '$($(3)$(step))' > $$f && touch -t 197001020000 $$f; })))

.PHONY: install test test-fast test-slow bench demo clean-demo

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

## all tests, the slow end-to-end ones included
test: install
	$(PY) -m pytest -q

## unit tests only
test-fast: install
	$(PY) -m pytest -q -m "not slow"

## only the slow end-to-end tests
test-slow: install
	$(PY) -m pytest -q -m slow

## speed, as ratios against baselines measured in the same run; the graph cut is timed on
## random inputs and on a real batch through the demo's trained network (made first if missing)
BENCH_CKPT = runs/demo/graphcut-s0/train/final.pt
bench: install $(BENCH_CKPT)
	$(PY) benchmarks/bench_expanders.py --checkpoint $(BENCH_CKPT) --demo-root runs/demo/data --seeds runs/demo/seeds_train.h5
	$(PY) benchmarks/bench_train_step.py
	$(PY) benchmarks/bench_throughput.py
	$(PY) benchmarks/bench_cpu_stages.py --checkpoint $(BENCH_CKPT) --dataset demo --data-root runs/demo/data

# (its rule here, after the first target, so that `make` alone still means `make install`)
.PHONY: $(FORCE)
$(FORCE):

include pipelines.mk
include paper.mk
include photos.mk
include horse.mk
include msrc.mk
