# The two commands of the README: `make demo` and `make test`. Both set the workspace up first if needed.
SHELL := /bin/bash
.DEFAULT_GOAL := help
WS := source ./env.sh &&
DEMO_OUT ?= out/demo
DEMO_STEPS ?= 3000

.PHONY: help setup test demo bench clean

help:
	@echo "make setup   create .venv, install pinned requirements, build the colcon workspace (idempotent)"
	@echo "make demo    the main job: demonstrations -> offline -> online with the simulated human -> evaluation"
	@echo "             (peg_insert, ~6 min on 2 CPU cores; DEMO_STEPS=12000 for the full online budget)"
	@echo "make test    every test of every package (pytest)"
	@echo "make bench   benchmarks; results in results/ and summarised in README.md. The learning benchmark is"
	@echo "             hours on a CPU; BENCH_ARGS is passed to 'conrft bench' (e.g. BENCH_ARGS='--seeds 1')"
	@echo "make clean   remove build/, install/, log/ (keeps .venv)"

setup:
	@bash scripts/setup.sh

test: setup
	@$(WS) python -m pytest

demo: setup
	@$(WS) conrft sim-demos --task peg_insert --episodes 20 --out $(DEMO_OUT)/peg_insert_demos --force --quiet && \
	  conrft demo-stats $(DEMO_OUT)/peg_insert_demos --plot $(DEMO_OUT)/peg_insert_demos.png && \
	  rm -rf $(DEMO_OUT)/run && \
	  conrft train config/train_sim.yaml --run-dir $(DEMO_OUT)/run --set sim.task=peg_insert \
	    --set train.offline_updates=1000 --set train.online_env_steps=$(DEMO_STEPS) --set train.unseen_eval_episodes=20

bench: setup
	@$(WS) python -m conrft_sim.bench --out results/sim_bench.json && \
	  conrft bench --out results/learning $(BENCH_ARGS)

clean:
	rm -rf build install log
