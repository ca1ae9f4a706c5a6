"""Delegate partitions counted on emulated arm64 (the root of
tfcompress.bench.arm_root): tflite-runtime 2.14 and LiteRT 2.3 aarch64."""

import os

import numpy as np
import pytest

from tfcompress.bench import arm_root
from tfcompress.bench.arm_delegation import arm_delegation, format_rows


@pytest.fixture(scope="module")
def root():
    """The cached arm64 root; this test never builds it (minutes, and the
    network): build it with arm_root.build_root()."""
    if not os.path.exists(os.path.join(arm_root.DEFAULT_ROOT,
                                       ".tfcompress-ready")):
        pytest.skip(f"no arm64 root at {arm_root.DEFAULT_ROOT}: build it "
                    "with tfcompress.bench.arm_root.build_root()")
    return arm_root.DEFAULT_ROOT


def _convert(activation, mode, folder):
    import keras
    from tfcompress.convert import convert
    keras.utils.set_random_seed(0)
    i = keras.Input((12, 12, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv_a")(i)
    x = keras.layers.Activation(activation, name="act")(x)
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv_b")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    model = keras.Model(i, keras.layers.Dense(4, name="fc")(x))
    data = np.random.default_rng(0).random((8, 12, 12, 3), np.float32)
    path = str(folder / f"{activation}_{mode}.tflite")
    # the converter's own HARD_SWISH, which splits int8 graphs
    convert(model, mode, representative_data=data, output_path=path,
            xnnpack_rewrites=False)
    return path


def test_table_labels_runtimes_with_their_version():
    from tfcompress.bench.arm_delegation import _row
    rows = [_row("m", "ai_edge_litert", runtime_version="2.3.0",
                 partitions=2, total_ops=7, delegated_mac_share=0.5,
                 ops_outside=[{"op": "HARD_SWISH", "index": 3}]),
            _row("m", "tflite_runtime", error="crashed | badly")]
    lines = format_rows(rows).splitlines()
    assert lines[2].startswith("| m | ai_edge_litert 2.3.0 | 2 | 1 / 7 | "
                               "50.0% | ")
    assert lines[3] == "| m | tflite_runtime | - | - | - | crashed / badly |"


def test_runtime_label_adds_the_version_when_known():
    assert arm_root.runtime_label({"runtime": "tflite_runtime",
                                   "runtime_version": "2.14.0"}) == \
        "tflite_runtime 2.14.0"
    assert arm_root.runtime_label({"runtime": "ai_edge_litert",
                                   "runtime_version": None}) == \
        "ai_edge_litert"


def test_machine_label_names_the_emulated_cpu():
    assert arm_root.machine_label({"machine": "aarch64", "emulated": True},
                                  "cortex-a76") == "aarch64 (qemu cortex-a76)"
    assert arm_root.machine_label({"machine": "aarch64", "emulated": False},
                                  "cortex-a76") == "aarch64"


def test_runner_error_is_the_last_runner_line_or_says_it_crashed():
    import subprocess
    refused = subprocess.CompletedProcess(
        [], 2, stdout="", stderr="Traceback\nrunner: cannot  load m.tflite\n")
    assert arm_root.runner_error(refused) == "runner: cannot load m.tflite"
    crashed = subprocess.CompletedProcess([], -11, stdout="last words\n",
                                          stderr="")
    assert arm_root.runner_error(crashed) == \
        "the runner crashed (exit code -11): last words"


@pytest.mark.slow
def test_partitions_on_emulated_arm64(root, tmp_path):
    models = {"hard_swish_int8": _convert("hard_swish", "int8", tmp_path),
              "relu_float32": _convert("relu", "float32", tmp_path)}
    rows = {(r["model"], r["runtime"]): r
            for r in arm_delegation(models, root=root)}
    print(format_rows(rows.values()))
    for r in rows.values():
        assert r["error"] is None, r["error"]
        assert r["machine"].startswith("aarch64")
    litert = rows["hard_swish_int8", "ai_edge_litert"]
    assert litert["partitions"] == 2
    assert [o["op"] for o in litert["ops_outside"]] == ["HARD_SWISH"]
    assert rows["relu_float32", "ai_edge_litert"]["partitions"] == 1
    # tflite-runtime 2.14 applies XNNPACK to float graphs only: its int8
    # graph runs whole on the built-in kernels
    old = rows["hard_swish_int8", "tflite_runtime"]
    assert old["runtime_version"] == "2.14.0"
    assert old["partitions"] == 0
    assert len(old["ops_outside"]) == old["total_ops"]
    assert rows["relu_float32", "tflite_runtime"]["partitions"] == 1
    assert rows["relu_float32", "tflite_runtime"]["ops_outside"] == []
