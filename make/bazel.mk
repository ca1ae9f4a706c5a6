# make bazel-test: builds every target and runs the quick Bazel test subset
# offline with Debian's Bazel 4.2.3 (docs/bazel.md). The tests run with
# the project's .venv, written into .bazelrc.user (git-ignored).
BAZEL ?= bazel
BAZEL_PACKAGES := bazel-bootstrap bazel-platforms
BAZEL_TEST_FLAGS ?= --test_tag_filters=-slow

# A few fast targets that show the Bazel test rule, the pytest runner and
# the .venv interpreter working together (CI runs this after `make test`,
# which has already run every quick test once).
BAZEL_SMOKE ?= //tests:test_bazel_build //tests:test_atomic //tests:test_data \
	//tests:test_prune_schedules //tests:test_prune_masks

.PHONY: bazel-tools bazel-test bazel-test-all bazel-smoke

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

bazel-smoke: install data bazel-tools .bazelrc.user
	$(BAZEL) build //...
	$(BAZEL) test $(BAZEL_SMOKE)

# every test, the slow ones (ARM emulation, full pipeline) included
bazel-test-all: BAZEL_TEST_FLAGS :=
bazel-test-all: bazel-test
