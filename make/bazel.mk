# make bazel-test: builds every target and runs the quick Bazel test subset
# offline with Debian's Bazel 4.2.3 (docs/bazel.md). The tests run with
# the project's .venv, written into .bazelrc.user (git-ignored).
BAZEL ?= bazel
BAZEL_PACKAGES := bazel-bootstrap bazel-platforms
BAZEL_TEST_FLAGS ?= --test_tag_filters=-slow

.PHONY: bazel-tools bazel-test bazel-test-all

bazel-tools:
	@if { ! command -v $(BAZEL) >/dev/null 2>&1 || [ ! -d /usr/share/bazel/tools/platforms ]; } \
	  && command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  echo "bazel-tools: installing Debian packages $(BAZEL_PACKAGES)"; \
	  (apt-get install -y -qq $(BAZEL_PACKAGES) >/dev/null 2>&1 || \
	   (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq $(BAZEL_PACKAGES) >/dev/null 2>&1)) || \
	  { echo "bazel-tools: apt could not install $(BAZEL_PACKAGES)"; exit 1; }; \
	fi
	@command -v $(BAZEL) >/dev/null 2>&1 || { echo "bazel-tools: no bazel; install Debian's bazel-bootstrap"; exit 1; }

.bazelrc.user: $(STAMP)
	echo "build --python_path=$(abspath $(PY))" > $@

bazel-test: install data testtools bazel-tools .bazelrc.user
	$(BAZEL) build //...
	$(BAZEL) test //... $(BAZEL_TEST_FLAGS)

# every test, the slow ones (ARM emulation, full pipeline) included
bazel-test-all: BAZEL_TEST_FLAGS :=
bazel-test-all: bazel-test
