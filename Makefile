# tfcompress: the two commands a new user types are `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
RECIPE ?= configs/fashion_mnist_cnn.yaml
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONUNBUFFERED := 1
export DEBIAN_FRONTEND := noninteractive

.PHONY: demo test test-heavy install data testtools clean


$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# The real Fashion-MNIST idx files come from Debian's dataset-fashion-mnist
# package when apt is available and we run as root; otherwise the loader
# falls back to $$TFCOMPRESS_DATA, the Keras cache and the Keras download.
data:
	@if [ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then \
	  echo "data: Fashion-MNIST found in /usr/share/datasets/fashion-mnist"; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  echo "data: installing Debian package dataset-fashion-mnist"; \
	  (apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || \
	   (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1)) || \
	  echo "data: apt could not install dataset-fashion-mnist; set TFCOMPRESS_DATA to a folder with the idx files"; \
	else \
	  echo "data: no apt/root; set TFCOMPRESS_DATA to a folder with the Fashion-MNIST idx files"; \
	fi

# The SSH benchmark test runs a real OpenSSH server on 127.0.0.1; the ARM
# test runs the device runner in a Debian arm64 root under qemu.
TESTTOOLS := openssh-server debootstrap qemu-user-static
testtools:
	@if { [ ! -x /usr/sbin/sshd ] || [ ! -x /usr/sbin/debootstrap ] || ! command -v qemu-aarch64-static >/dev/null 2>&1; } \
	  && command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  echo "testtools: installing Debian packages $(TESTTOOLS)"; \
	  (apt-get install -y -qq $(TESTTOOLS) >/dev/null 2>&1 || \
	   (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq $(TESTTOOLS) >/dev/null 2>&1)) || \
	  echo "testtools: could not install $(TESTTOOLS); the SSH and ARM tests will be skipped"; \
	fi

demo: install data
	$(VENV)/bin/tfcompress run $(RECIPE)

# Two pytest workers, one test file each at a time (tests of a file share
# its fixtures and run in order); TEST_JOBS=0 runs in one process. The
# 15 slowest tests are listed at the end, to keep the suite's time in view.
TEST_JOBS ?= 2

test: install data testtools
	$(PY) -m pytest -q -m "not heavy" -n $(TEST_JOBS) --dist loadfile \
		--durations=15

# The whole keras.applications matrix (every family, QAT conversions):
# tens of minutes on 2 cores.
test-heavy: install data
	$(PY) -m pytest -q -m heavy -n $(TEST_JOBS) --dist loadfile

clean:
	rm -rf $(VENV) runs build *.egg-info

# More targets: make/bazel.mk (make bazel-test).
-include make/*.mk
