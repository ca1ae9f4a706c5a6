"""Every Keras and TensorFlow internal tfcompress relies on, in one place.

tfcompress needs a few things the frameworks do not export: Keras'
stateless-scope mapping and raw variable values (to compute with
``weight * mask``), the Keras graph history of a symbolic tensor, the
``Functional`` model class, the TFLite converter's calibrate-only mode and
``mlir_quantize`` (to recalibrate activation ranges), TFLite's flatbuffer
schema, the Keras TensorFlow trainer functions that
:mod:`tfcompress.distribute.keras_fixes` patches, and Keras' symbolic build
of a compiled model's training state. Each is reached here by a
named function and nowhere else in the package (``tests/test_compat.py``
checks both: that each access still works on the installed versions and
that no other module reaches into the frameworks).

When an internal is missing, the function raises :class:`CompatError`
naming the symbol and the installed TensorFlow and Keras versions, instead
of silently computing something else.

>>> import keras
>>> call_has_training_arg(keras.layers.Dropout(0.5))
True
>>> call_has_training_arg(keras.layers.Flatten())
False
"""

from __future__ import annotations

import functools
import importlib
import inspect
from typing import Any, Callable, NamedTuple

#: The versions tfcompress is tested with (kept in step with pyproject.toml).
SUPPORTED = "tensorflow>=2.20,<2.22 with keras>=3.12,<3.16"


class CompatError(RuntimeError):
    """A Keras or TensorFlow internal tfcompress uses is missing or moved in
    the installed version."""


def framework_versions() -> str:
    """``"TensorFlow X, Keras Y"`` as installed.

    >>> framework_versions().startswith("TensorFlow ")
    True
    """
    import keras
    import tensorflow as tf
    return f"TensorFlow {tf.__version__}, Keras {keras.__version__}"


def missing(symbol: str, detail: str = "") -> CompatError:
    """The error for an internal ``symbol`` that is not where tfcompress
    expects it."""
    detail = f" ({detail})" if detail else ""
    return CompatError(
        f"{symbol} is not available in {framework_versions()}{detail}; "
        f"tfcompress supports {SUPPORTED}: install a supported version or "
        "update tfcompress/compat.py")


def _import(module: str, name: str | None = None):
    """``module`` (or its attribute ``name``), raising CompatError if gone."""
    symbol = f"{module}.{name}" if name else module
    try:
        mod = importlib.import_module(module)
    except ImportError as err:
        raise missing(symbol, str(err)) from None
    if name is None:
        return mod
    try:
        return getattr(mod, name)
    except AttributeError:
        raise missing(symbol) from None


def _attribute(obj, name: str, symbol: str):
    try:
        return getattr(obj, name)
    except AttributeError:
        raise missing(symbol) from None


# -- Keras stateless scope and variables ---------------------------------
@functools.lru_cache(maxsize=None)
def _get_stateless_scope():
    return _import("keras.src.backend.common.stateless_scope",
                   "get_stateless_scope")


def current_stateless_scope():
    """The innermost active ``keras.StatelessScope``, or None.

    >>> import keras
    >>> current_stateless_scope() is None
    True
    >>> with keras.StatelessScope() as scope:
    ...     current_stateless_scope() is scope
    True
    """
    return _get_stateless_scope()()


def stateless_scope_state_mapping(scope) -> dict:
    """The live ``{id(variable): value}`` dict of a ``keras.StatelessScope``
    (writing to it changes what the scope's variables read as).

    >>> import keras
    >>> v = keras.Variable(1.0)
    >>> with keras.StatelessScope([(v, 2.0)]) as scope:
    ...     float(stateless_scope_state_mapping(scope)[id(v)])
    2.0
    """
    mapping = _attribute(scope, "state_mapping",
                         "keras.StatelessScope.state_mapping")
    if not isinstance(mapping, dict):
        raise missing("keras.StatelessScope.state_mapping",
                      f"expected a dict, found {type(mapping).__name__}")
    return mapping


def variable_value(variable):
    """The backend value of a Keras variable in its own dtype (never
    autocast), or ``variable`` itself when it is not a Keras variable or
    not yet initialised. Not affected by stateless scopes.

    >>> import keras
    >>> type(variable_value(keras.Variable(1.0))).__name__
    'ResourceVariable'
    """
    import keras
    if not isinstance(variable, keras.Variable):
        return variable
    inner = _attribute(variable, "_value", "keras.Variable._value")
    return variable if inner is None else inner


# -- Keras layers, tensors and models ------------------------------------
def input_shape_arg(layer):
    """The ``input_shape=`` ``layer`` was made with, or None. A Sequential
    whose first layer has one starts with an Input of that shape, so a
    wrapper or a copy of that layer must carry it too.

    >>> import keras
    >>> input_shape_arg(keras.layers.Dense(2, input_shape=(3,)))
    (3,)
    """
    return getattr(layer, "_input_shape_arg", None)


def carry_input_shape_arg(source, target) -> None:
    """Gives ``target`` the ``input_shape=`` of ``source``, if it has one."""
    shape = input_shape_arg(source)
    if shape is not None:
        target._input_shape_arg = shape


def call_has_training_arg(layer) -> bool:
    """True if ``layer.call`` takes a ``training`` argument (what Keras
    decides it by when calling the layer).

    >>> import keras
    >>> call_has_training_arg(keras.layers.BatchNormalization())
    True
    """
    flag = getattr(layer, "_call_has_training_arg", None)
    if flag is not None:
        return bool(flag)
    # Keras computes the flag from the signature; do the same if it moved.
    return "training" in inspect.signature(layer.call).parameters


class KerasHistory(NamedTuple):
    """Where a symbolic Keras tensor comes from."""
    operation: Any      # the layer (or operation) that produced it
    node_index: int
    tensor_index: int


def keras_history(tensor) -> KerasHistory:
    """``(layer, node_index, tensor_index)`` that produced a symbolic Keras
    tensor (e.g. one of ``model.outputs``).

    >>> import keras
    >>> x = keras.Input((3,))
    >>> y = keras.layers.Dense(2, name="fc")(x)
    >>> keras_history(y)[0].name
    'fc'
    """
    history = getattr(tensor, "_keras_history", None)
    if history is None:
        import keras
        if isinstance(tensor, keras.KerasTensor):
            raise missing("keras.KerasTensor._keras_history")
        raise CompatError(f"{type(tensor).__name__} is not a symbolic Keras "
                          "tensor made by a layer; it has no Keras history")
    try:
        operation, node_index, tensor_index = history
    except (TypeError, ValueError):
        raise missing("keras.KerasTensor._keras_history",
                      f"expected (operation, node_index, tensor_index), "
                      f"found {history!r}") from None
    return KerasHistory(operation, node_index, tensor_index)


@functools.lru_cache(maxsize=None)
def functional_class() -> type:
    """Keras' ``Functional`` model class (what ``keras.Model(inputs,
    outputs)`` returns).

    >>> import keras
    >>> x = keras.Input((2,))
    >>> isinstance(keras.Model(x, keras.layers.Dense(1)(x)), functional_class())
    True
    """
    cls = _import("keras.src.models.functional", "Functional")
    import keras
    if not (isinstance(cls, type) and issubclass(cls, keras.Model)):
        raise missing("keras.src.models.functional.Functional",
                      "not a keras.Model subclass")
    return cls


def run_functional_graph(model, inputs, operation_fn, call_fn):
    """The output tensors (in the structure of ``model.outputs``) of a
    Functional ``model``'s graph run on the symbolic tensors ``inputs``,
    each layer replaced by ``operation_fn(layer)`` and called as
    ``call_fn(layer, *args, **kwargs)``.

    This is what ``keras.models.clone_model(model, input_tensors=inputs,
    clone_function=operation_fn, call_function=call_fn)`` computes before
    it makes a model of it; that model, when ``inputs`` are not
    ``keras.Input`` tensors (a layer's output), is rebuilt on new inputs,
    so its ``outputs`` are not connected to ``inputs``.

    >>> import keras
    >>> i = keras.Input((3,))
    >>> inner = keras.Model(i, keras.layers.Dense(2, name="fc")(i))
    >>> start = keras.Input((4,))
    >>> x = keras.layers.Dense(3, name="pre")(start)
    >>> y = run_functional_graph(inner, x, lambda l: l,
    ...                          lambda l, *a, **k: l(*a, **k))
    >>> keras.Model(start, y).count_params()     # pre 15, fc 8
    23
    """
    run = _attribute(model, "_run_through_graph",
                     "keras.Model._run_through_graph (Functional)")
    return run(inputs, operation_fn=operation_fn, call_fn=call_fn)


def model_distribute_strategy(model):
    """The ``tf.distribute`` strategy whose scope ``model`` was built in,
    or None (built outside any scope, or not a Keras 3 model).

    >>> import keras
    >>> model_distribute_strategy(keras.Sequential([keras.Input((2,))])) is None
    True
    """
    import keras
    if not isinstance(model, keras.Model):
        return None
    return _attribute(model, "_distribute_strategy",
                      "keras.Model._distribute_strategy")


def build_training_state(model, x, y, sample_weight=None) -> None:
    """Builds a compiled ``model``'s optimizer, loss and metric variables
    before ``fit``, from the shapes of ``x`` and ``y`` (one sample is
    enough).

    Without a distribution strategy Keras creates them inside the first
    trace of the train step, and a ``tf.function`` that creates variables
    is traced twice; built beforehand, ``fit`` traces the step once. On
    these models the first step is mostly tracing, so this saves about a
    third of it. Keras does this itself (``Trainer._symbolic_build``) when
    the model has a distribution strategy; such a model is left to it.

    >>> import keras, numpy as np
    >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    >>> model.compile("adam", "mse")
    >>> build_training_state(model, np.zeros((1, 3)), np.zeros((1, 2)))
    >>> model.optimizer.built
    True
    """
    if model_distribute_strategy(model) is not None:
        return   # Keras builds it in the strategy's scope itself
    build = _attribute(model, "_symbolic_build",
                       "keras.Model._symbolic_build")
    import numpy as np

    def first(v):
        return None if v is None else np.asarray(v)[:1]
    build(data_batch=(first(x), first(y), first(sample_weight)))


# keras.applications' own layers, defined in its model files and not
# exported as keras.layers: name -> defining module
APPLICATION_LAYERS = {
    "LayerScale": "keras.src.applications.convnext",
    "StochasticDepth": "keras.src.applications.convnext",
    "CustomScaleLayer": "keras.src.applications.inception_resnet_v2",
}


def application_layer_class(name: str) -> type:
    """The class of keras.applications' own layer ``name`` (one of
    :data:`APPLICATION_LAYERS`).

    >>> application_layer_class("LayerScale").__name__
    'LayerScale'
    """
    return _import(APPLICATION_LAYERS[name], name)


def is_application_layer(layer, *names: str) -> bool:
    """True if ``layer`` is one of keras.applications' own layers
    ``names`` (``"LayerScale"``, ``"StochasticDepth"``,
    ``"CustomScaleLayer"``).

    >>> import keras
    >>> is_application_layer(keras.layers.Dense(2), "LayerScale")
    False
    """
    return isinstance(layer, tuple(application_layer_class(n)
                                   for n in names))


# -- TFLite converter ------------------------------------------------------
def calibrate_only(converter) -> bytes:
    """Runs a ``tf.lite.TFLiteConverter`` set up for int8 post-training
    quantization up to calibration: a float model whose tensors carry the
    calibrated min/max, to be quantized by :func:`mlir_quantize`."""
    name = "_experimental_calibrate_only"
    if not hasattr(converter, name):
        raise missing(f"tf.lite.TFLiteConverter.{name}")
    setattr(converter, name, True)
    return converter.convert()


def disable_per_channel_quantization(converter) -> None:
    """Makes a ``tf.lite.TFLiteConverter`` quantize weights per tensor (one
    scale per weight tensor) instead of per output channel."""
    name = "_experimental_disable_per_channel"
    if not hasattr(converter, name):
        raise missing(f"tf.lite.TFLiteConverter.{name}")
    setattr(converter, name, True)


def mlir_quantize(model_bytes: bytes, input_data_type=None,
                  output_data_type=None, denylisted_nodes=None,
                  disable_per_channel=None) -> bytes:
    """Quantizes a calibrated flatbuffer (from :func:`calibrate_only`) to
    int8 with TensorFlow's converter; ``input_data_type`` and
    ``output_data_type`` are ``tf.DType`` (default float32).

    ``denylisted_nodes``: output tensor names of ops to leave in float
    (QUANTIZE/DEQUANTIZE are put around them), what
    ``tf.lite.experimental.QuantizationDebugger.get_nondebug_quantized_model``
    does with ``QuantizationDebugOptions(denylisted_nodes=...)``;
    ``disable_per_channel``: one scale per weight tensor."""
    fn = _import("tensorflow.lite.python.convert", "mlir_quantize")
    kwargs = {}
    if input_data_type is not None:
        kwargs["input_data_type"] = input_data_type
    if output_data_type is not None:
        kwargs["output_data_type"] = output_data_type
    if denylisted_nodes:
        kwargs["denylisted_nodes"] = list(denylisted_nodes)
    if disable_per_channel is not None:
        kwargs["disable_per_channel"] = bool(disable_per_channel)
    params = inspect.signature(fn).parameters
    for key in kwargs:
        if key not in params:
            raise missing(f"tensorflow.lite.python.convert.mlir_quantize"
                          f"({key}=...)")
    return fn(model_bytes, **kwargs)


def tflite_schema():
    """TensorFlow's generated Python module for the TFLite flatbuffer schema
    (``ModelT``, ``TensorType``, ...).

    >>> tflite_schema().ModelT.__name__
    'ModelT'
    """
    schema = _import("tensorflow.lite.python.schema_py_generated")
    for name in ("ModelT", "Model"):
        _attribute(schema, name,
                   f"tensorflow.lite.python.schema_py_generated.{name}")
    return schema


def read_tflite_object(tflite_bytes: bytes):
    """A flatbuffer as the schema's editable object tree (``ModelT``).

    >>> model = tflite_schema().ModelT()
    >>> model.version = 3
    >>> read_tflite_object(write_tflite_object(model)).version
    3
    """
    return tflite_schema().ModelT.InitFromPackedBuf(bytearray(tflite_bytes),
                                                    0)


def write_tflite_object(model, size_hint: int = 1024) -> bytes:
    """A ``ModelT`` object tree back to flatbuffer bytes (identifier
    ``TFL3``), as :func:`read_tflite_object` read it."""
    import flatbuffers
    builder = flatbuffers.Builder(size_hint)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


# -- Keras TensorFlow trainer (multi-worker fit fixes) ---------------------
TRAINER_MODULE = "keras.src.backend.tensorflow.trainer"


class TrainerInternals(NamedTuple):
    """The Keras TensorFlow-trainer functions the multi-worker ``fit``
    fixes wrap (see :mod:`tfcompress.distribute.keras_fixes`)."""
    module: Any                        # the trainer module
    trainer_class: type                # TensorFlowTrainer
    maybe_symbolic_build: Callable     # TensorFlowTrainer._maybe_symbolic_build
    reduce_per_replica: Callable       # module-level reduce_per_replica
    is_multi_worker: Callable          # strategy -> bool
    is_per_replica: Callable           # value -> bool


def tensorflow_trainer_internals(module=None) -> TrainerInternals:
    """The current (possibly already patched) trainer functions, from
    ``module`` (default: Keras' TensorFlow trainer module). Raises
    CompatError naming the first one that is missing."""
    if module is None:
        module = _import(TRAINER_MODULE)

    def get(owner, name, symbol):
        return _attribute(owner, name, f"{TRAINER_MODULE}.{symbol}")

    cls = get(module, "TensorFlowTrainer", "TensorFlowTrainer")
    return TrainerInternals(
        module=module,
        trainer_class=cls,
        maybe_symbolic_build=get(cls, "_maybe_symbolic_build",
                                 "TensorFlowTrainer._maybe_symbolic_build"),
        reduce_per_replica=get(module, "reduce_per_replica",
                               "reduce_per_replica"),
        is_multi_worker=get(module, "_collective_all_reduce_multi_worker",
                            "_collective_all_reduce_multi_worker"),
        is_per_replica=get(module, "_is_per_replica_instance",
                           "_is_per_replica_instance"))


def patch_tensorflow_trainer(internals: TrainerInternals,
                             maybe_symbolic_build: Callable,
                             reduce_per_replica: Callable) -> None:
    """Installs replacements for the two trainer functions of
    ``internals`` (from :func:`tensorflow_trainer_internals`)."""
    internals.trainer_class._maybe_symbolic_build = maybe_symbolic_build
    internals.module.reduce_per_replica = reduce_per_replica


# -- Python's import system -------------------------------------------------
class _RunAfterImport:
    """A ``sys.meta_path`` finder that calls ``callback`` once ``module``
    is imported and the outermost import of a ``watched`` module (or of
    one whose name starts with ``prefix``) has finished.

    It finds nothing itself: for the watched modules it asks the finders
    after it for the spec and wraps that spec's loader's ``exec_module``
    (the one monkeypatch of Python's import machinery in tfcompress).
    """

    def __init__(self, module, watched, prefix, callback):
        self.module, self.watched, self.prefix = module, watched, prefix
        self.callback = callback
        self.depth = 0

    def find_spec(self, fullname, path=None, target=None):
        import sys
        if fullname not in self.watched and \
                not fullname.startswith(self.prefix):
            return None
        spec = None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        loader = getattr(spec, "loader", None)
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        exec_module = loader.exec_module

        def exec_then_call(module):
            self.depth += 1
            try:
                exec_module(module)
            finally:
                self.depth -= 1
            if self.depth == 0 and sys.modules.get(self.module) is not None:
                self._done()

        loader.exec_module = exec_then_call
        return spec

    def _done(self):
        import sys
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        self.callback()


def run_after_import(module: str, watched, prefix: str,
                     callback: Callable) -> None:
    """Calls ``callback()`` right after ``module`` is first imported, once
    the outermost import of the ``watched`` modules (or of modules named
    ``prefix...``) around it has finished. Installed once per callback.

    >>> import sys
    >>> calls = []
    >>> run_after_import("json.tool", ("json.tool",), "-",
    ...                  lambda: calls.append(1))
    >>> _ = sys.modules.pop("json.tool", None)
    >>> import json.tool
    >>> calls
    [1]
    """
    import sys
    if not any(isinstance(f, _RunAfterImport) and f.callback is callback
               for f in sys.meta_path):
        sys.meta_path.insert(0, _RunAfterImport(module, watched, prefix,
                                                callback))
