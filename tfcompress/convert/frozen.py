"""Handing a Keras model to the TFLite converter without a SavedModel.

``tf.lite.TFLiteConverter.from_keras_model`` writes a Keras 3 model out as
a SavedModel (Keras' ``ExportArchive``, the whole layer tree) and reads it
back before converting; for a QAT MobileNetV2 that round trip is most of
the conversion time. tfcompress gives the converter the model's inference
function (``training=False``) frozen instead, through the public
``from_concrete_functions`` with ``experimental_lower_to_saved_model``
off: the same graph, the same kernels, the same numbers
(``benchmarks/conversion_time.py`` compares both paths side by side).

A frozen graph has no SavedModel signature, so the flatbuffer would have
no ``SignatureDef`` and LiteRT's ``get_signature_runner()`` would find
nothing; :func:`add_signature` writes the ``serving_default`` signature the
round trip would have written (inputs named like the model's inputs,
outputs ``output_0``, ... or the keys of a dict output).

Subclassed models (no symbolic inputs) keep ``from_keras_model``.

>>> import keras
>>> model = keras.Sequential([keras.Input((4,), name="x"),
...                           keras.layers.Dense(2)])
>>> converter, inputs, outputs = inference_converter(model)
>>> inputs, outputs
(['x'], ['output_0'])
"""

from __future__ import annotations

SIGNATURE_KEY = "serving_default"


def _names(model):
    """The model's input names and output names, in the order of the
    frozen function's inputs and outputs."""
    import tensorflow as tf
    from tfcompress.convert.inputs import signature_input_names
    inputs = signature_input_names(model)
    try:
        structure = model.output
    except (AttributeError, ValueError):
        structure = model.outputs
    if isinstance(structure, dict):
        outputs = sorted(structure)           # tf.nest's order
    else:
        outputs = [f"output_{i}" for i in
                   range(len(tf.nest.flatten(structure)))]
    return inputs, outputs


def inference_converter(model):
    """A ``tf.lite.TFLiteConverter`` of ``model``'s inference function.

    Returns ``(converter, input names, output names)``; the names are None
    when the converter comes from ``from_keras_model`` (a subclassed model,
    whose flatbuffer gets the SavedModel's own signature).
    """
    import tensorflow as tf
    if not getattr(model, "inputs", None):
        return keras_converter(model), None, None
    inputs, outputs = _names(model)
    specs = [tf.TensorSpec(t.shape, t.dtype, name=name)
             for t, name in zip(model.inputs, inputs)]
    if len(specs) == 1:
        def infer(x):
            return model(x, training=False)
    else:
        def infer(*xs):
            return model(tf.nest.pack_sequence_as(model.input, list(xs)),
                         training=False)
    function = tf.function(infer).get_concrete_function(*specs)
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [function], model)
    converter.experimental_lower_to_saved_model = False
    return converter, inputs, outputs


def keras_converter(model):
    """The converter ``from_keras_model`` makes (the SavedModel round trip):
    the fallback when freezing fails and the baseline of the benchmark."""
    import tensorflow as tf
    return tf.lite.TFLiteConverter.from_keras_model(model)


def add_signature(tflite_bytes: bytes, inputs, outputs,
                  key: str = SIGNATURE_KEY) -> bytes:
    """``tflite_bytes`` with a SignatureDef ``key`` naming the main
    subgraph's inputs and outputs in order (unchanged if it has one).

    >>> import keras
    >>> from tfcompress.quiet import converter_output_silenced
    >>> model = keras.Sequential([keras.Input((4,), name="x"),
    ...                           keras.layers.Dense(2)])
    >>> converter, inputs, outputs = inference_converter(model)
    >>> with converter_output_silenced():
    ...     flat = converter.convert()
    >>> from ai_edge_litert.interpreter import Interpreter
    >>> Interpreter(model_content=add_signature(flat, inputs, outputs)
    ...             ).get_signature_list()
    {'serving_default': {'inputs': ['x'], 'outputs': ['output_0']}}
    """
    from tfcompress import compat
    schema = compat.tflite_schema()
    model = compat.read_tflite_object(tflite_bytes)
    if model.signatureDefs:
        return tflite_bytes
    graph = model.subgraphs[0]
    if len(graph.inputs) != len(inputs) or \
            len(graph.outputs) != len(outputs):
        raise ValueError(
            f"the flatbuffer has {len(graph.inputs)} input(s) and "
            f"{len(graph.outputs)} output(s), the signature names "
            f"{len(inputs)} and {len(outputs)}")

    def tensor_map(name, index):
        entry = schema.TensorMapT()
        entry.name, entry.tensorIndex = name, int(index)
        return entry

    signature = schema.SignatureDefT()
    signature.signatureKey = key
    signature.subgraphIndex = 0
    signature.inputs = [tensor_map(n, i) for n, i in zip(inputs,
                                                          graph.inputs)]
    signature.outputs = [tensor_map(n, i) for n, i in zip(outputs,
                                                           graph.outputs)]
    model.signatureDefs = [signature]
    return compat.write_tflite_object(model, len(tflite_bytes) + 1024)
