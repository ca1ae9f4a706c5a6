"""tfcompress.compat: every Keras/TensorFlow internal tfcompress uses still
works on the installed versions, a missing one fails loudly, and no module
outside tfcompress/compat.py reaches into the frameworks.

A failure here after a TensorFlow or Keras upgrade names the internal that
moved and the installed versions; fix it in tfcompress/compat.py.
"""

import ast
import inspect
import pathlib
import re
import doctest
import types
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfcompress import compat
from tfcompress.distribute import keras_fixes, strategy

PACKAGE = pathlib.Path(compat.__file__).resolve().parent
VERSIONS = compat.framework_versions()


def moved(symbol):
    return (f"{symbol} moved or changed in {VERSIONS}; update "
            "tfcompress/compat.py")


# -- each internal works on the installed versions -----------------------
def test_docstring_examples():
    result = doctest.testmod(compat, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 10 and result.failed == 0


def test_current_stateless_scope_is_the_innermost_scope():
    assert compat.current_stateless_scope() is None
    with keras.StatelessScope() as outer:
        with keras.StatelessScope() as inner:
            assert compat.current_stateless_scope() is inner, moved(
                "keras.src.backend.common.stateless_scope.get_stateless_scope")
        assert compat.current_stateless_scope() is outer


def test_stateless_scope_state_mapping_is_live_by_variable_id():
    a, b = keras.Variable(1.0), keras.Variable(5.0)
    with keras.StatelessScope(state_mapping=[(a, tf.constant(2.0))]) as scope:
        mapping = compat.stateless_scope_state_mapping(scope)
        assert float(mapping[id(a)]) == 2.0, moved(
            "keras.StatelessScope.state_mapping")
        mapping.setdefault(id(b), tf.constant(7.0))
        # what the pruning wrapper relies on: an added entry is what the
        # variable reads as inside the scope
        assert float(b.value) == 7.0, moved(
            "keras.StatelessScope.state_mapping")
    assert float(b.value) == 5.0


def test_variable_value_is_the_backend_variable_in_its_own_dtype():
    layer = keras.layers.Dense(2, dtype="mixed_float16")
    layer.build((None, 3))
    seen = {}

    class Probe(keras.layers.Layer):
        def call(self, x):
            seen["value"] = layer.kernel.value
            seen["raw"] = compat.variable_value(layer.kernel)
            return x

    probe = Probe(dtype="mixed_float16")
    probe(np.ones((1, 3), np.float32))
    assert isinstance(seen["raw"], tf.Variable), moved("keras.Variable._value")
    assert seen["raw"].dtype == tf.float32, moved("keras.Variable._value")
    assert seen["value"].dtype == tf.float16    # autocast, what _value avoids
    plain = tf.constant(1.0)
    assert compat.variable_value(plain) is plain


def test_variable_value_without_the_internal_names_it_and_the_versions():
    v = keras.Variable(1.0)
    del v._value
    with pytest.raises(compat.CompatError) as err:
        compat.variable_value(v)
    assert "keras.Variable._value" in str(err.value)
    assert tf.__version__ in str(err.value)
    assert keras.__version__ in str(err.value)


class _CallsWithTraining(keras.layers.Layer):
    def call(self, x, training=None):
        return x


class _CallsWithKwargs(keras.layers.Layer):
    def call(self, x, **kwargs):
        return x


@pytest.mark.parametrize("make", [
    lambda: keras.layers.Dropout(0.5),
    lambda: keras.layers.BatchNormalization(),
    lambda: keras.layers.Flatten(),
    lambda: keras.Sequential([keras.layers.Dense(2)]),
    _CallsWithTraining,
    _CallsWithKwargs,
], ids=["Dropout", "BatchNormalization", "Flatten", "Sequential",
        "training_arg", "kwargs_only"])
def test_call_has_training_arg_matches_keras_flag_and_signature(make):
    layer = make()
    assert hasattr(layer, "_call_has_training_arg"), moved(
        "keras.Layer._call_has_training_arg (compat falls back to the call "
        "signature)")
    expected = "training" in inspect.signature(layer.call).parameters
    assert layer._call_has_training_arg == expected
    assert compat.call_has_training_arg(layer) == expected


def test_call_has_training_arg_without_the_flag_reads_the_signature():
    class NoFlag:
        def call(self, x, training=None):
            return x

    class NoFlagNoTraining:
        def call(self, x):
            return x

    assert compat.call_has_training_arg(NoFlag()) is True
    assert compat.call_has_training_arg(NoFlagNoTraining()) is False


def test_input_shape_arg_is_what_sequential_builds_from():
    import warnings
    with warnings.catch_warnings():   # Keras prefers an Input; tfmot's
        warnings.simplefilter("ignore")   # guides use input_shape=
        dense = keras.layers.Dense(2, input_shape=(3,))
    assert hasattr(dense, "_input_shape_arg"), moved(
        "keras.Layer._input_shape_arg (a Sequential's first layer's "
        "input_shape=)")
    assert compat.input_shape_arg(dense) == (3,)
    other = keras.layers.Dense(2)
    compat.carry_input_shape_arg(dense, other)
    model = keras.Sequential([other])
    assert model.built and model.input_shape == (None, 3), moved(
        "keras.Sequential no longer builds from layers[0]._input_shape_arg")


def test_keras_history_names_the_producing_layer_of_each_output():
    x = keras.Input((4,))
    h = keras.layers.Dense(3, name="hidden")(x)
    a = keras.layers.Dense(2, name="head_a")(h)
    b = keras.layers.Dense(1, name="head_b")(h)
    model = keras.Model(x, [a, b])
    history = [compat.keras_history(t) for t in model.outputs]
    assert [hist.operation.name for hist in history] == ["head_a",
                                                         "head_b"], moved(
        "keras.KerasTensor._keras_history")
    assert [hist.tensor_index for hist in history] == [0, 0]


def test_keras_history_of_a_model_input_is_its_input_layer():
    # convert names an input of open size by its InputLayer, not by the
    # tensor ("keras_tensor_9" when the input is unnamed)
    unnamed, named = keras.Input((4,)), keras.Input((3,), name="pixels")
    model = keras.Model([unnamed, named],
                        keras.layers.Concatenate()([unnamed, named]))
    layers = [compat.keras_history(t).operation for t in model.inputs]
    assert layers == model.layers[:2], moved(
        "keras.KerasTensor._keras_history")
    assert layers[0].name != unnamed.name and layers[1].name == "pixels"
    sequential = keras.Sequential([keras.Input((2,)),
                                   keras.layers.Dense(1)])
    layer = compat.keras_history(sequential.inputs[0]).operation
    assert isinstance(layer, keras.layers.InputLayer)


def test_keras_history_of_a_non_symbolic_tensor_is_an_error():
    with pytest.raises(compat.CompatError, match="not a symbolic Keras"):
        compat.keras_history(tf.constant(1.0))


def test_functional_class_is_what_keras_model_of_tensors_returns():
    x = keras.Input((2,))
    model = keras.Model(x, keras.layers.Dense(1)(x))
    cls = compat.functional_class()
    assert isinstance(model, cls), moved(
        "keras.src.models.functional.Functional")

    class Sub(keras.Model):
        def call(self, x):
            return x

    assert not isinstance(Sub(), cls)


def test_model_distribute_strategy_is_the_scope_the_model_was_built_in():
    plain = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    assert compat.model_distribute_strategy(plain) is None, moved(
        "keras.Model._distribute_strategy")
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0"])
    with mirrored.scope():
        inside = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    assert compat.model_distribute_strategy(inside) is mirrored, moved(
        "keras.Model._distribute_strategy")
    assert compat.model_distribute_strategy(object()) is None


def _variables_created_while_tracing(model, x, y):
    created = []

    def creator(next_creator, **kwargs):
        if tf.inside_function():
            created.append(kwargs.get("name"))
        return next_creator(**kwargs)
    with tf.variable_creator_scope(creator):
        model.fit(x, y, epochs=1, batch_size=4, verbose=0)
    return created


def _compiled_classifier():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(
        from_logits=True), metrics=["accuracy"])
    return model


def test_build_training_state_lets_fit_trace_its_step_once():
    # Keras builds the optimizer and metric variables inside the first
    # trace of the train step (without a distribution strategy), so
    # tf.function traces it a second time; built before fit, it traces once
    x = np.zeros((8, 3), np.float32)
    y = np.zeros(8, np.int64)
    assert _variables_created_while_tracing(_compiled_classifier(), x, y), (
        "Keras no longer defers building to the train step's trace: "
        "compat.build_training_state may be unnecessary")
    model = _compiled_classifier()
    compat.build_training_state(model, x, y)
    assert model.optimizer.built, moved("keras.Model._symbolic_build")
    assert _variables_created_while_tracing(model, x, y) == [], moved(
        "keras.Model._symbolic_build")


def test_build_training_state_without_the_internal_names_it():
    model = types.SimpleNamespace()   # a model without the internal
    with pytest.raises(compat.CompatError, match="_symbolic_build"):
        compat.build_training_state(model, np.zeros((2, 3), np.float32),
                                    np.zeros(2, np.int64))


def test_build_training_state_leaves_a_strategy_model_to_keras():
    # Keras builds a strategy model's state itself, in the strategy's
    # scope; built outside it, a multi-worker fit fails
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0"])
    with mirrored.scope():
        model = _compiled_classifier()
    compat.build_training_state(model, np.zeros((2, 3), np.float32),
                                np.zeros(2, np.int64))
    assert not model.optimizer.built


def _tiny_converter():
    model = keras.Sequential([keras.Input((4,)),
                              keras.layers.Dense(3, activation="relu")])
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    rng = np.random.default_rng(0)
    converter.representative_dataset = lambda: (
        [rng.random((1, 4), np.float32)] for _ in range(4))
    return converter


def test_calibrate_only_mlir_quantize_and_tflite_schema_round_trip():
    schema = compat.tflite_schema()
    calibrated = compat.calibrate_only(_tiny_converter())
    model = schema.ModelT.InitFromPackedBuf(bytearray(calibrated), 0)
    tensors = model.subgraphs[0].tensors
    assert all(t.type == schema.TensorType.FLOAT32 for t in tensors), moved(
        "tf.lite.TFLiteConverter._experimental_calibrate_only")
    ranged = [t for t in tensors if t.quantization is not None
              and t.quantization.min is not None]
    assert ranged, moved("tf.lite.TFLiteConverter._experimental_calibrate_only"
                         " (no calibrated min/max)")
    quantized = compat.mlir_quantize(calibrated, input_data_type=tf.int8,
                                     output_data_type=tf.int8)
    model = schema.ModelT.InitFromPackedBuf(bytearray(quantized), 0)
    sub = model.subgraphs[0]
    assert sub.tensors[sub.inputs[0]].type == schema.TensorType.INT8, moved(
        "tensorflow.lite.python.convert.mlir_quantize")
    assert sub.tensors[sub.outputs[0]].type == schema.TensorType.INT8


def test_mlir_quantize_denylisted_nodes_is_what_the_public_debugger_does():
    """tfcompress.convert.fallback keeps layers float through
    mlir_quantize(denylisted_nodes=...): the same flatbuffer TensorFlow's
    public QuantizationDebugger gives for the same denylist."""
    model = keras.Sequential([keras.Input((4,)),
                              keras.layers.Dense(3, activation="relu"),
                              keras.layers.Dense(2)])
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    x = np.random.default_rng(0).random((4, 1, 4), np.float32)
    converter.representative_dataset = lambda: ([s] for s in x)
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=converter, debug_dataset=lambda: ([s] for s in x))
    schema = compat.tflite_schema()
    calibrated = schema.ModelT.InitFromPackedBuf(
        bytearray(debugger.calibrated_model), 0)
    first = calibrated.subgraphs[0].operators[0].outputs[0]
    node = calibrated.subgraphs[0].tensors[first].name.decode()
    debugger.options = tf.lite.experimental.QuantizationDebugOptions(
        denylisted_nodes=[node])
    public = debugger.get_nondebug_quantized_model()
    ours = compat.mlir_quantize(debugger.calibrated_model,
                                denylisted_nodes=[node],
                                disable_per_channel=False)
    assert ours == public, moved(
        "tensorflow.lite.python.convert.mlir_quantize(denylisted_nodes=...)")
    quantized = schema.ModelT.InitFromPackedBuf(bytearray(ours), 0)
    graph = quantized.subgraphs[0]
    kept = [op for op in graph.operators
            if graph.tensors[op.outputs[0]].name.decode() == node]
    assert len(kept) == 1
    assert graph.tensors[kept[0].outputs[0]].type == \
        schema.TensorType.FLOAT32


def test_calibrate_only_on_a_converter_without_the_flag_is_an_error():
    class OldConverter:
        def convert(self):
            return b"float model"

    with pytest.raises(compat.CompatError,
                       match="_experimental_calibrate_only"):
        compat.calibrate_only(OldConverter())


def test_disable_per_channel_quantization_gives_one_scale_per_weight():
    converter = tf.lite.TFLiteConverter.from_keras_model(
        keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)]))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    rng = np.random.default_rng(0)
    converter.representative_dataset = lambda: (
        [rng.random((1, 4), np.float32)] for _ in range(4))
    compat.disable_per_channel_quantization(converter)
    schema = compat.tflite_schema()
    model = schema.ModelT.InitFromPackedBuf(bytearray(converter.convert()), 0)
    (kernel,) = [t for t in model.subgraphs[0].tensors
                 if t.type == schema.TensorType.INT8 and t.shape is not None
                 and list(t.shape) == [3, 4]]
    assert len(kernel.quantization.scale) == 1, moved(
        "tf.lite.TFLiteConverter._experimental_disable_per_channel")


def test_disable_per_channel_on_a_converter_without_the_flag_is_an_error():
    class OldConverter:
        pass

    with pytest.raises(compat.CompatError,
                       match="_experimental_disable_per_channel"):
        compat.disable_per_channel_quantization(OldConverter())


def test_multi_head_attention_projections_are_public():
    # tfcompress.prune.prunable reads them by these public names
    mha = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4)
    mha(np.ones((1, 3, 8), np.float32), np.ones((1, 3, 8), np.float32))
    for name in ("query_dense", "key_dense", "value_dense", "output_dense"):
        sub = getattr(mha, name, None)
        assert sub is not None and sub.kernel is not None, moved(
            f"keras.layers.MultiHeadAttention.{name}")


def test_tensorflow_trainer_internals_resolve():
    internals = compat.tensorflow_trainer_internals()
    assert issubclass(keras.Model, internals.trainer_class)
    assert callable(internals.maybe_symbolic_build)
    assert callable(internals.reduce_per_replica)
    assert internals.is_multi_worker(tf.distribute.get_strategy()) is False
    assert internals.is_per_replica(tf.constant(1.0)) is False


# -- monkeypatches fail loudly -------------------------------------------
def test_keras_fit_still_calls_the_trainer_functions_the_fixes_wrap():
    # patching a function Keras no longer calls would fix nothing
    import inspect
    internals = compat.tensorflow_trainer_internals()
    fit = inspect.getsource(internals.trainer_class.fit)
    assert "self._maybe_symbolic_build(" in fit, moved(
        "TensorFlowTrainer.fit no longer calls _maybe_symbolic_build")
    make_function = inspect.getsource(internals.trainer_class._make_function)
    assert "reduce_per_replica(" in make_function, moved(
        "TensorFlowTrainer._make_function no longer calls the module's "
        "reduce_per_replica")
    signature = inspect.signature(internals.maybe_symbolic_build)
    assert list(signature.parameters) == ["self", "iterator", "data_batch"], \
        moved("TensorFlowTrainer._maybe_symbolic_build(self, iterator, "
              "data_batch) changed its arguments")


def _fake_trainer_module(drop=None):
    """A stand-in for Keras' trainer module, optionally missing ``drop``."""
    calls = []

    class TensorFlowTrainer:
        def _maybe_symbolic_build(self, iterator=None, data_batch=None):
            calls.append("build")

    def reduce_per_replica(values, strategy, reduction):
        calls.append("reduce")
        return values

    module = types.SimpleNamespace(
        TensorFlowTrainer=TensorFlowTrainer,
        reduce_per_replica=reduce_per_replica,
        _collective_all_reduce_multi_worker=lambda strategy: False,
        _is_per_replica_instance=lambda value: False)
    if drop == "_maybe_symbolic_build":
        del TensorFlowTrainer._maybe_symbolic_build
    elif drop:
        delattr(module, drop)
    return module, calls


@pytest.mark.parametrize("drop", [
    "_maybe_symbolic_build", "reduce_per_replica",
    "_collective_all_reduce_multi_worker", "_is_per_replica_instance"])
def test_keras_fixes_apply_raises_naming_a_missing_internal(drop):
    module, _ = _fake_trainer_module(drop)
    before = dict(vars(module))
    with pytest.raises(compat.CompatError) as err:
        keras_fixes.apply(module)
    message = str(err.value)
    assert drop in message and "keras.src.backend.tensorflow.trainer" in message
    assert tf.__version__ in message and keras.__version__ in message
    assert vars(module) == before          # nothing half-patched


def test_keras_fixes_apply_patches_once_and_delegates_single_worker():
    module, calls = _fake_trainer_module()
    assert keras_fixes.is_applied(module) is False
    assert keras_fixes.apply(module) is True
    build = module.TensorFlowTrainer._maybe_symbolic_build
    reduce = module.reduce_per_replica
    assert keras_fixes.is_applied(module)
    assert keras_fixes.apply(module) is True
    assert module.TensorFlowTrainer._maybe_symbolic_build is build  # not twice
    assert module.reduce_per_replica is reduce
    model = keras.Sequential([keras.Input((2,))])
    build(model, iterator=None)
    assert reduce({"loss": 1.0}, tf.distribute.get_strategy(), "auto") == \
        {"loss": 1.0}
    assert calls == ["build", "reduce"]


def test_install_keras_fixes_warns_when_they_cannot_apply():
    module, _ = _fake_trainer_module("_is_per_replica_instance")
    with pytest.warns(RuntimeWarning) as record:
        assert strategy.install_keras_fixes(module) is False
    message = str(record[0].message)
    assert "_is_per_replica_instance" in message
    assert "multi-worker" in message and keras.__version__ in message


def test_install_keras_fixes_is_silent_when_they_apply():
    module, _ = _fake_trainer_module()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert strategy.install_keras_fixes(module) is True


# -- no framework internals outside tfcompress/compat.py -----------------
#: Files allowed to reach framework internals (relative to tfcompress/).
ALLOWED_FILES = {"compat.py"}
#: The device-side files are copied to boards without the rest of
#: tfcompress, so they cannot call compat.py: each private access they make
#: is named here and has its own test (tests/test_bench_delegation.py:
#: test_litert_interpreter_still_exposes_its_nodes).
DEVICE_SIDE_ACCESSES = {"bench/delegation.py": {"_get_ops_details"}}

#: Private modules of the frameworks, forbidden anywhere else (code,
#: strings or comments).
FORBIDDEN_MODULES = re.compile(
    r"\b(keras\.src|tensorflow\.python|tensorflow\.lite\.python|"
    r"tensorflow\.compiler|tensorflow\.core|tf_keras\.src|"
    r"tensorflow_model_optimization\.python)\b|__internal__")

#: Known private Keras / TensorFlow attributes, forbidden even where
#: tfcompress defines a name of its own that happens to match.
KNOWN_PRIVATE = {
    "_keras_history", "_call_has_training_arg", "_call_has_mask_arg",
    "_value", "_distribute_strategy", "_distribution_strategy",
    "_query_dense", "_key_dense", "_value_dense", "_output_dense",
    "_experimental_calibrate_only", "_maybe_symbolic_build",
    "_collective_all_reduce_multi_worker", "_is_per_replica_instance",
    "_inbound_nodes", "_outbound_nodes", "_layers", "_functional",
    "_tracker", "_trainable_variables", "_non_trainable_variables",
    "_build_shapes_dict", "_keras_mask", "_self_setattr_tracking",
    "_call_signature", "_saved_model_inputs_spec", "_get_save_spec",
    "_run_eagerly", "_jit_compile", "_compile_config", "_autocast",
    "_input_shape_arg",
}

#: Private names read outside their own module that tfcompress does not
#: define itself but are nevertheless fine, with the reason. Keep empty
#: unless a framework gives no other way, and then go through compat.
ALLOWED_PRIVATE = {}

ATTR_FUNCS = {"getattr", "hasattr", "setattr", "delattr"}


def _package_files():
    return sorted(p for p in PACKAGE.rglob("*.py")
                  if "__pycache__" not in p.parts)


def _defined_private_names(trees) -> set:
    """Private names tfcompress defines: functions, classes, module or
    local variables, ``self._x = ...`` attributes, import aliases, and any
    ``_tfcompress*`` attribute it sets on framework objects."""
    names = set()
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef,
                                 ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx,
                                                           ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.arg):
                names.add(node.arg)
            elif isinstance(node, ast.alias) and node.asname:
                names.add(node.asname)
            elif (isinstance(node, ast.Attribute)
                  and isinstance(node.ctx, ast.Store)
                  and isinstance(node.value, ast.Name)
                  and node.value.id in ("self", "cls")):
                names.add(node.attr)
    return {n for n in names if n.startswith("_")}


def _private(name) -> bool:
    return name.startswith("_") and not (name.startswith("__")
                                         and name.endswith("__"))


def find_private_access(source: str, defined: set, path="<source>") -> list:
    """``path:line: what`` for each framework internal reached in
    ``source``: a private module path, a known private attribute, or any
    private attribute or imported name tfcompress does not define."""
    found = []
    for lineno, line in enumerate(source.splitlines(), 1):
        m = FORBIDDEN_MODULES.search(line)
        if m:
            found.append(f"{path}:{lineno}: private module {m.group(0)}")
    tree = ast.parse(source)

    def check(name, lineno, how):
        if not _private(name):
            return
        if name in KNOWN_PRIVATE:
            found.append(f"{path}:{lineno}: known private {name} ({how})")
        elif (name not in defined and not name.startswith("_tfcompress")
              and name not in ALLOWED_PRIVATE):
            found.append(f"{path}:{lineno}: {name} ({how}) is not "
                         "defined by tfcompress")

    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            check(node.attr, node.lineno, "attribute")
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id in ATTR_FUNCS and len(node.args) > 1
              and isinstance(node.args[1], ast.Constant)
              and isinstance(node.args[1].value, str)):
            check(node.args[1].value, node.lineno, f"{node.func.id}()")
        elif isinstance(node, ast.ImportFrom):
            for alias in node.names:
                check(alias.name, node.lineno, f"from {node.module} import")
    return found


def test_scanner_finds_each_kind_of_private_access():
    snippets = {
        "from keras.src.models import functional": "keras.src",
        "import tensorflow.python.ops as ops": "tensorflow.python",
        "x = t._keras_history[0]": "_keras_history",
        "v = getattr(w, '_value', None)": "_value",
        "self._call_has_training_arg": "_call_has_training_arg",
        "strategy.extended._in_multi_worker_mode()": "_in_multi_worker_mode",
        "from keras.layers import _private_thing": "_private_thing",
    }
    for source, symbol in snippets.items():
        found = find_private_access(source, defined=set())
        assert any(symbol in f for f in found), (source, found)
    assert find_private_access("self._mine = 1\nself._mine",
                               defined={"_mine"}) == []
    assert find_private_access("layer._tfcompress_config = 1",
                               defined=set()) == []


def test_no_framework_internals_outside_compat():
    files = _package_files()
    trees = {p: ast.parse(p.read_text()) for p in files}
    defined = _defined_private_names(trees.values())
    found = []
    for p in files:
        rel = p.relative_to(PACKAGE).as_posix()
        if rel in ALLOWED_FILES:
            continue
        allowed = DEVICE_SIDE_ACCESSES.get(rel, set())
        found += [f for f in find_private_access(p.read_text(), defined,
                                                 f"tfcompress/{rel}")
                  if f.split(": ", 1)[1].split(" ", 1)[0] not in allowed]
    assert not found, (
        "Keras/TensorFlow internals outside tfcompress/compat.py; add a "
        "named function to compat.py (with a test here) and call it:\n"
        + "\n".join(found))


def test_run_after_import_calls_back_once_the_outer_import_is_done():
    import subprocess
    import sys
    code = (
        "import sys\n"
        "from tfcompress import compat\n"
        "seen = []\n"
        "compat.run_after_import('json.decoder', ('json',), 'json.',\n"
        "    lambda: seen.append('json' in sys.modules and\n"
        "                        hasattr(sys.modules['json'], 'dumps')))\n"
        "for m in [m for m in sys.modules if m.startswith('json')]:\n"
        "    del sys.modules[m]\n"
        "import json\n"
        "print(seen, any(getattr(f, 'module', '') == 'json.decoder'\n"
        "                for f in sys.meta_path))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                         text=True, timeout=60)
    # called once, after json (which imports json.decoder) finished
    assert out.stdout.strip() == "[True] False", out.stderr[-500:]


@pytest.mark.parametrize("name, family, size", [
    ("LayerScale", "ConvNeXtTiny", 32),
    ("CustomScaleLayer", "InceptionResNetV2", 75),
])
def test_application_layers_are_the_classes_keras_applications_build(
        name, family, size):
    import keras
    from tfcompress import compat
    model = getattr(keras.applications, family)(
        weights=None, input_shape=(size, size, 3), classes=10)
    found = [l for l in model.layers if compat.is_application_layer(l, name)]
    assert found and all(type(l).__name__ == name for l in found)


def test_stochastic_depth_is_convnexts_layer():
    # public ConvNeXt constructors build it only with drop_path_rate > 0
    import keras
    from tfcompress import compat
    cls = compat.application_layer_class("StochasticDepth")
    assert issubclass(cls, keras.layers.Layer)
    assert compat.is_application_layer(cls(0.1), "StochasticDepth")
    assert cls.__module__ == compat.APPLICATION_LAYERS["StochasticDepth"]


def test_run_functional_graph_on_a_layer_output_stays_connected():
    i = keras.Input((3,))
    inner = keras.Model(i, keras.layers.Dense(2, name="fc")(i))
    start = keras.Input((4,))
    x = keras.layers.Dense(3, name="pre")(start)
    y = compat.run_functional_graph(inner, x, lambda l: l,
                                    lambda l, *a, **k: l(*a, **k))
    # clone_model(inner, input_tensors=x).outputs would not be
    model = keras.Model(start, y)
    assert [l.name for l in model.layers][1:] == ["pre", "fc"], moved(
        "keras.Model._run_through_graph")
