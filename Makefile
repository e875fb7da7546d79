# The two commands of the README: `make demo` and `make test`. Both set the workspace up first if needed.
SHELL := /bin/bash
.DEFAULT_GOAL := help
WS := source ./env.sh &&
DEMO_OUT ?= out/demo

.PHONY: help setup test demo bench clean

help:
	@echo "make setup   create .venv, install pinned requirements, build the colcon workspace (idempotent)"
	@echo "make demo    the main job: a simulated session (now: expert demonstrations -> rosbag2 -> statistics)"
	@echo "make test    every test of every package (pytest)"
	@echo "make bench   benchmarks; results in results/ and summarised in README.md"
	@echo "make clean   remove build/, install/, log/ (keeps .venv)"

setup:
	@bash scripts/setup.sh

test: setup
	@$(WS) python -m pytest

demo: setup
	@$(WS) conrft sim-demos --task pick_cube --episodes 20 --out $(DEMO_OUT)/pick_cube_demos --force && \
	  conrft demo-stats $(DEMO_OUT)/pick_cube_demos --plot $(DEMO_OUT)/pick_cube_demos.png

bench: setup
	@$(WS) python -m conrft_sim.bench --out results/sim_bench.json

clean:
	rm -rf build install log
