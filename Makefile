# The two commands of the README: `make demo` and `make test`. Both set the workspace up first if needed.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
.DEFAULT_GOAL := help
WS := source ./env.sh &&
DEMO_OUT ?= out/demo
DEMO_STEPS ?= 3000
DEMO_EVAL_EPISODES ?= 20

.PHONY: help setup test demo bench clean

help:
	@echo "make setup   create .venv, install pinned requirements, build the colcon workspace (idempotent)"
	@echo "make demo    the main job: a simulated ROS 2 training session on pick_cube (VLA pretraining, demos,"
	@echo "             offline stage, online stage with the scripted human over DDS, evaluation table + curve);"
	@echo "             13-16 min on 2 CPU cores with setup (up to 30 when shared); DEMO_STEPS=12000 for the full online budget,"
	@echo "             DEMO_EVAL_EPISODES=100 for a curve 20 evaluation episodes cannot resolve (~4 min more)"
	@echo "make test    every test of every package (pytest; the realtime ones alone, after the others on 2 workers)"
	@echo "make bench   benchmarks; results in results/ and summarised in README.md. The learning benchmark is"
	@echo "             hours on a CPU; BENCH_ARGS is passed to 'conrft bench' (e.g. BENCH_ARGS='--jobs 2')"
	@echo "make clean   remove build/, install/, log/ (keeps .venv)"

setup:
	@bash scripts/setup.sh

# Two passes: the tests that run ROS nodes against the wall clock (marker `realtime`) one at a time, after the
# others have run on two workers with one torch thread each (a file's tests on one worker: its fixtures built once).
test: setup
	@$(WS) status=0; \
	  OMP_NUM_THREADS=1 python -m pytest -m "not realtime" -n 2 --dist loadfile || status=$$?; \
	  python -m pytest -m realtime || status=$$?; \
	  exit $$status

# The small VLA of the demo and of the ROS-vs-in-process benchmark (pretrained once, kept in DEMO_OUT). One torch
# thread: torch's float reductions depend on the thread count, and every machine should pretrain the same weights.
PRETRAIN_DEMO := mkdir -p $(DEMO_OUT) && { [ -f $(DEMO_OUT)/vla.safetensors ] || OMP_NUM_THREADS=1 conrft pretrain \
	--config config/pretrain_demo.yaml --out $(DEMO_OUT)/vla.safetensors --episodes 10 --quiet; }

demo: setup
	@$(WS) $(PRETRAIN_DEMO) && \
	  conrft sim-demos --task pick_cube --episodes 20 --image-width 64 --image-height 64 \
	    --out $(DEMO_OUT)/pick_cube_demos --force --quiet && \
	  rm -rf $(DEMO_OUT)/session && \
	  conrft session config/sim_pick_cube.yaml vla_checkpoint:=$(DEMO_OUT)/vla.safetensors \
	    demo_bag:=$(DEMO_OUT)/pick_cube_demos run_dir:=$(DEMO_OUT)/session online_env_steps:=$(DEMO_STEPS) \
	    | grep --line-buffered -v '^\[sim\]' && \
	  conrft report $(DEMO_OUT)/session --episodes $(DEMO_EVAL_EPISODES)

bench: setup
	@$(WS) python -m conrft_sim.bench --out results/sim_bench.json && \
	  python -m conrft_bringup.graph_bench --out results/graph_bench.json && \
	  $(PRETRAIN_DEMO) && \
	  python -m conrft_bringup.parity_bench --vla $(DEMO_OUT)/vla.safetensors --out results/ros_vs_inprocess.json && \
	  python -m conrft_bringup.fleet_bench --vla $(DEMO_OUT)/vla.safetensors --out results/fleet_bench.json && \
	  conrft bench $(BENCH_ARGS)

clean:
	rm -rf build install log
