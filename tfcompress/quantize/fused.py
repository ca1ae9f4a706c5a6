"""QuantizeFused: a Conv/DepthwiseConv/Dense with what TFLite fuses into
its op (BatchNormalization, constant arithmetic, ReLU/ReLU6), with weight
and output fake-quant.

Batch-norm folding (Jacob et al. 2018): a Conv/DepthwiseConv/Dense followed
by BatchNormalization is trained as one op whose kernel is
``kernel * gamma / sqrt(var + eps)`` and whose bias is
``beta + (bias - mean) * gamma / sqrt(var + eps)``, fake-quantized AFTER
folding — exactly the int8 kernel the device runs. A training step
normalizes with the batch's statistics, as Keras' BatchNormalization trains
(and tfmot's QAT, which keeps Conv and BatchNormalization apart): the
output of the folded int8 kernel is divided back by the fold scale, batch
normalized, and the moving statistics updated; inference uses the moving
statistics. Without batch statistics a deep network such as a ResNet drifts
as its weights move away from the frozen statistics and ends well under the
float model. A BatchNormalization set ``trainable = False`` stays frozen.
The bias is rounded to TFLite's int32 grid (see
:mod:`tfcompress.quantize.qat_base`).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras import layers as L

from tfcompress.quantize import fake_quant as fq
from tfcompress.quantize import int8_rounding
from tfcompress.quantize.qat_base import (_InputStep, _InputStepMixin,
                                          _NestedLayersMixin, _RangeMixin,
                                          _batchnorm_scale, _weight_steps,
                                          batch_statistics, follow_trainable,
                                          round_bias, wrapper_name)
from tfcompress.errors import InputError
from tfcompress.utils.channels import (from_output_channel_rows,
                                       output_channel_rows, output_channels)


SEPARABLE = (L.SeparableConv1D, L.SeparableConv2D)
# ClusterPreservingScheme: more distinct values per channel is not a
# clustered kernel
MAX_PRESERVED_CLUSTERS = 256


def _swap_last_axes(t):
    perm = list(range(len(t.shape)))
    perm[-1], perm[-2] = perm[-2], perm[-1]
    return tf.transpose(t, perm)


def _quantize_channels_axis_minus2(kernel, bits, per_channel):
    """Weight fake-quant per channel of axis -2 (transposed-conv kernels
    ``(h, w, out, in)``)."""
    k = fq.quantize_weights(_swap_last_axes(kernel), bits, per_channel)
    return _swap_last_axes(k)


def _depthwise_as_outputs(kernel):
    """A depthwise kernel ``(h, w, C, M)`` as ``(h, w, 1, C * M)``: one
    column per output channel ``c * M + m``, TFLite's layout."""
    shape = tuple(kernel.shape)
    return tf.reshape(kernel, shape[:-2] + (1, shape[-2] * shape[-1]))


def _quantize_depthwise(kernel, bits, per_channel):
    """Weight fake-quant of a depthwise kernel ``(h, w, C, M)`` per
    output channel (``c * M + m``), as TFLite quantizes it."""
    k = fq.quantize_weights(_depthwise_as_outputs(kernel), bits,
                            per_channel)
    return tf.reshape(k, tuple(kernel.shape))


def _main_kernel(layer):
    """The kernel BN folds into: a separable conv's pointwise kernel."""
    if isinstance(layer, SEPARABLE):
        return layer.pointwise_kernel
    return layer.kernel


def _activation_fn(name):
    if name in (None, "linear"):
        return None
    if name == "relu6":
        return lambda t: tf.nn.relu6(t)
    return keras.activations.get(name)


@keras.saving.register_keras_serializable(package="tfcompress")
class QuantizeFused(_InputStepMixin, _RangeMixin, _NestedLayersMixin,
                    keras.layers.Layer):
    """Conv1D/Conv2D/DepthwiseConv2D/Dense [+ BatchNorm] [+ activation]
    with fake-quantized (folded) weights and output.

    ``quantize_model`` makes one of each Conv/Dense, with the batch norm
    and activation that follow it (one TFLite op after conversion):

    >>> from tfcompress.quantize import quantize_model
    >>> model = keras.Sequential([
    ...     keras.Input((8, 8, 1)),
    ...     keras.layers.Conv2D(4, 3, name="conv"),
    ...     keras.layers.BatchNormalization(name="bn"),
    ...     keras.layers.ReLU(name="relu"),
    ...     keras.layers.Flatten(),
    ...     keras.layers.Dense(3, name="logits")])
    >>> fused = quantize_model(model).get_layer("quant_conv")
    >>> fused.layer.name, fused.batchnorm.name, fused.activation_name
    ('conv', 'bn', 'relu')
    >>> fused.weight_bits, fused.per_channel
    (8, True)

    Used alone, it wraps a built layer:

    >>> dense = keras.layers.Dense(4, name="fc")
    >>> dense.build((None, 8))
    >>> layer = QuantizeFused(dense, activation="relu", weight_bits=4)
    >>> tuple(layer(np.ones((2, 8), np.float32)).shape), layer.per_channel
    ((2, 4), False)
    """

    NESTED_LAYERS = ("layer", "batchnorm")

    def __init__(self, layer, batchnorm=None, activation=None,
                 weight_bits=8, activation_bits=8, per_channel=True,
                 preserve_sparsity=False, ema_decay=0.999,
                 quantize_output=True, preserve_clusters=False,
                 cluster_count=None, cluster_channels=None,
                 input_scale=None, input_offset=None,
                 output_scale=1.0, output_shift=0.0, weight_bits_note=None,
                 freeze_bn_delay=None, activation_percentile=None,
                 **kwargs):
        kwargs.setdefault("name", wrapper_name(layer.name))
        follow_trainable(kwargs, layer)
        super().__init__(**kwargs)
        self.layer = layer
        self.batchnorm = batchnorm
        self.activation_name = activation
        self.weight_bits = int(weight_bits)
        # why weight_bits differs from the bits asked for (summary shows it)
        self.weight_bits_note = weight_bits_note
        self.activation_bits = int(activation_bits)
        # TFLite requires per-tensor weights for fully connected layers.
        # Conv1D (an expanded Conv2D) and Conv2DTranspose (a transposed
        # kernel) have quantized axes TFLite cannot match to a per-channel
        # fake-quant ("mismatched quantized axes"): per-tensor there too.
        self.per_channel = bool(per_channel) and not isinstance(
            layer, (L.Dense, L.Conv1D, L.SeparableConv1D,
                    L.Conv2DTranspose))
        self.preserve_sparsity = bool(preserve_sparsity)
        self.preserve_clusters = bool(preserve_clusters)
        self.cluster_centroids = self.cluster_indices = None
        # known when restored from a config: the saved centroids follow
        self.cluster_count = cluster_count
        # rows of centroids: output channels (per-channel weights, or a
        # kernel clustered per channel), or 1 (one set for the kernel)
        self.cluster_channels = cluster_channels
        self.ema_decay = float(ema_decay)
        self.activation_percentile = activation_percentile
        # False when the only consumer is a Concatenate, whose single range
        # TFLite imposes on all its inputs.
        self.quantize_output = bool(quantize_output)
        self._act = _activation_fn(activation)
        self.mask = None
        # a Rescaling/Normalization before a Conv2D folded into its kernel
        # (scale, per input channel) and bias (offset)
        self.input_scale = (None if input_scale is None else
                            [float(v) for v in input_scale])
        self.input_offset = (None if input_offset is None else
                             [float(v) for v in input_offset])
        # a constant factor on the output folded into kernel and bias
        self.output_scale = float(output_scale)
        self.output_shift = float(output_shift)
        # training steps with batch statistics before the moving ones
        # (None: always batch statistics)
        self.freeze_bn_delay = (None if freeze_bn_delay is None
                                else int(freeze_bn_delay))
        self.batchnorm_steps = None
        self._input_step = _InputStep()

    def _bias_step(self, kernel, input_step, channel_axis=-1):
        """The int32 bias step of each output channel, or None."""
        if input_step is None:
            return None
        w = _weight_steps(kernel, self.weight_bits, self.per_channel,
                          channel_axis)
        return input_step * w

    def build(self, input_shape):
        if not self.layer.built:
            self.layer.build(input_shape)
        if self.batchnorm is not None and not self.batchnorm.built:
            self.batchnorm.build(self.layer.compute_output_shape(
                input_shape))
        self.range = self._add_range()
        if self.batchnorm is not None and self.freeze_bn_delay:
            self.batchnorm_steps = self.add_weight(
                name="batchnorm_steps", shape=(), dtype="int64",
                initializer="zeros", trainable=False,
                aggregation="only_first_replica")
        if isinstance(self.layer, SEPARABLE):
            # the depthwise output is a tensor of its own in TFLite
            self.depthwise_range = self._add_range("depthwise")
        if self.preserve_sparsity:
            kernel = _main_kernel(self.layer)
            self.mask = self.add_weight(
                name="sparsity_mask", shape=kernel.shape,
                initializer="ones", trainable=False)
            self.mask.assign(tf.cast(tf.not_equal(kernel, 0),
                                     self.mask.dtype))
        if self.preserve_clusters:
            self._build_clusters()

    def _build_clusters(self):
        """Weight sharing through QAT: the kernel becomes
        ``centroids[indices]`` with one centroid per distinct value of each
        output channel (axis -1; of the whole kernel for per-tensor
        weights); the centroids train, the assignment is fixed, so the
        kernel keeps its cluster count through conversion."""
        kernel = _main_kernel(self.layer)
        w = np.asarray(kernel)
        # per-tensor weights (Dense, Conv1D, ...) share one set of centroids
        channels = self.cluster_channels or (
            w.shape[-1] if self.per_channel else 1)
        mat = self._cluster_rows(w, channels)       # (channels, n)
        if self.cluster_count is not None:          # load_model: shapes only
            self._add_cluster_weights(
                np.zeros((channels, self.cluster_count), np.float32),
                np.zeros(mat.shape, np.int32))
            kernel.trainable = False
            return
        uniques = [np.unique(row) for row in mat]
        k = max(u.size for u in uniques)
        if k > MAX_PRESERVED_CLUSTERS and channels == 1:
            # weights clustered per output channel (cluster_weights(
            # per_channel=True) on a Dense, a depthwise or a transposed
            # convolution, whose int8 weights are per tensor or whose
            # output channels are not the last axis): one set of centroids
            # per output channel keeps each channel's values
            rows = self._cluster_rows(w, output_channels(self.layer,
                                                         w.shape))
            per_row = [np.unique(row) for row in rows]
            k_row = max(u.size for u in per_row)
            # (a kernel never clustered has no value twice in a channel)
            if k_row <= MAX_PRESERVED_CLUSTERS and k_row < rows.shape[1]:
                channels, mat, uniques, k = (rows.shape[0], rows, per_row,
                                             k_row)
        if k > MAX_PRESERVED_CLUSTERS:
            raise InputError(
                f"layer {self.layer.name!r} has {k} distinct weight values "
                f"in one output channel; ClusterPreservingScheme needs a "
                f"clustered model (at most {MAX_PRESERVED_CLUSTERS}): run "
                "tfcompress.cluster.cluster_weights, fine-tune, then "
                "strip_clustering first")
        cents = np.stack([np.pad(u, (0, k - u.size), mode="edge")
                          for u in uniques]).astype(np.float32)
        idx = np.stack([np.searchsorted(u, row) for u, row in
                        zip(uniques, mat)]).astype(np.int32)
        self.cluster_count = int(k)
        self.cluster_channels = int(channels)
        self._add_cluster_weights(cents, idx)
        kernel.trainable = False     # the centroids are what trains

    def _cluster_layout(self, channels, shape):
        """The layer whose output channels the centroid rows are, or None
        for rows along the kernel's last axis (or one row): a depthwise
        kernel's ``C * M`` channels, a transposed one's axis -2. (A layer
        saved with rows along a last axis that is not its output channels
        has another row count, and loads with its own rows.)"""
        if channels > 1 and channels == output_channels(self.layer, shape):
            return self.layer
        return None

    def _cluster_rows(self, w, channels):
        """``w`` as ``(channels, n)`` rows, as the indices are stored."""
        layout = self._cluster_layout(channels, w.shape)
        if layout is None:
            return w.reshape(-1, channels).T
        return np.asarray(output_channel_rows(layout, w))

    def _add_cluster_weights(self, cents, idx):
        self.cluster_centroids = self.add_weight(
            name="cluster_centroids", shape=cents.shape,
            initializer=keras.initializers.Constant(cents), trainable=True)
        # a frozen layer (trainable=False) keeps its shared values
        self.cluster_centroids.trainable = bool(self.layer.trainable)
        self.cluster_indices = self.add_weight(
            name="cluster_indices", shape=idx.shape, dtype="int32",
            initializer=keras.initializers.Constant(idx), trainable=False)

    def _folded(self, kernel, bias):
        """Kernel and bias with batch norm and the output constants folded
        in, from ``_unfolded()``'s kernel and bias."""
        kernel, bias = self._folded_batchnorm(kernel, bias)
        if self.output_scale != 1.0:
            kernel = kernel * self.output_scale
            bias = None if bias is None else bias * self.output_scale
        if self.output_shift:
            bias = tf.constant(self.output_shift) if bias is None else \
                bias + self.output_shift
        return kernel, bias

    def _folded_batchnorm(self, kernel, bias):
        bn = self.batchnorm
        if bn is None:
            return kernel, bias
        scale = _batchnorm_scale(bn)
        shift = -bn.moving_mean * scale
        if bias is not None:
            shift = shift + bias * scale
        if bn.beta is not None:
            shift = shift + bn.beta
        if isinstance(self.layer, L.DepthwiseConv2D):
            # (h, w, C, M): output channel c * M + m
            kernel = kernel * tf.reshape(scale, (1, 1) + tuple(
                kernel.shape[-2:]))
        elif isinstance(self.layer, L.Conv2DTranspose):
            # (h, w, out, in): output channels on axis -2
            kernel = kernel * tf.reshape(scale, (1, 1, -1, 1))
        else:
            kernel = kernel * scale
        return kernel, shift

    def _unfolded(self):
        """The kernel and bias of the Conv/Dense alone (after any sparsity
        mask, clusters and folded input affine), before batch norm."""
        layer = self.layer
        kernel = _main_kernel(layer)
        if self.cluster_centroids is not None:
            mat = tf.gather(self.cluster_centroids, self.cluster_indices,
                            batch_dims=1)
            kernel = from_output_channel_rows(self._cluster_layout(
                self.cluster_channels, kernel.shape), mat, kernel.shape)
        if self.mask is not None:
            kernel = kernel * self.mask
        bias = layer.bias if layer.use_bias else None
        if self.input_offset is not None and any(self.input_offset):
            # conv(x * s + o, K) = conv(x, K * s) + sum(K * o): exact with
            # 'valid' padding only (the transform checks)
            extra = tf.reduce_sum(kernel * tf.reshape(
                tf.constant(self.input_offset), (1, 1, -1, 1)), (0, 1, 2))
            bias = extra if bias is None else bias + extra
        if self.input_scale is not None:
            kernel = kernel * tf.reshape(tf.constant(self.input_scale),
                                         (1, 1, -1, 1))
        return kernel, bias

    def _batch_statistics(self, training):
        """True when this call normalizes with the batch's statistics: a
        training call with a trainable BatchNormalization folded in, as
        Keras runs that layer."""
        return bool(training) and self.batchnorm is not None and \
            self.batchnorm.trainable and self.freeze_bn_delay != 0

    def _normalize_batch(self, y, bias):
        """Batch norm in training mode on ``y``, the output of the
        fake-quantized folded kernel (the kernel inference runs).

        ``y / s`` (``s = gamma / sqrt(moving_variance + eps)`` times the
        output scale, per channel) is the Conv/Dense output before batch
        norm up to the weight quantization; it is normalized with its batch
        mean and variance, which also update the moving statistics, as
        Keras' BatchNormalization does in training (Krishnamoorthi 2018,
        section 3.2). Inference keeps the moving statistics folded into
        kernel and bias. ``bias`` is the Conv/Dense bias before folding
        (``_unfolded()``'s)."""
        bn = self.batchnorm
        s = tf.cast(_batchnorm_scale(bn) * self.output_scale, y.dtype)
        safe = tf.where(tf.equal(s, 0.0), tf.ones_like(s), s)
        raw = y / safe if bias is None else y / safe + tf.cast(bias, y.dtype)
        mean, variance = batch_statistics(bn, raw)
        y = (raw - mean) * tf.math.rsqrt(variance + bn.epsilon)
        if bn.gamma is not None:
            y = y * tf.cast(bn.gamma, y.dtype)
        if bn.beta is not None:
            y = y + tf.cast(bn.beta, y.dtype)
        return y * self.output_scale + self.output_shift

    def call(self, inputs, training=None):
        layer = self.layer
        conv_kernel, conv_bias = self._unfolded()
        kernel, bias = self._folded(conv_kernel, conv_bias)
        input_step = self._input_step.step()
        # inside quantize.device_rounding, inference sums in float64, as
        # the int8 kernels' int32 accumulators do exactly
        wide = int8_rounding.active() and not training
        if wide:
            inputs = tf.cast(inputs, tf.float64)
        if isinstance(layer, SEPARABLE):
            dw = tf.cast(_quantize_depthwise(
                layer.depthwise_kernel, self.weight_bits, self.per_channel),
                inputs.dtype)
            mid = keras.ops.depthwise_conv(inputs, dw, layer.strides,
                                           layer.padding, layer.data_format,
                                           layer.dilation_rate)
            mid = tf.cast(self._quantize_output(
                mid, training, self.depthwise_range, self.activation_bits),
                inputs.dtype)
            lo, hi, _ = self.depthwise_range
            bias_step = self._bias_step(
                kernel, fq.activation_step(lo, hi, self.activation_bits))
            kernel = tf.cast(fq.quantize_weights(kernel, self.weight_bits,
                                                 self.per_channel),
                             inputs.dtype)
            y = keras.ops.conv(mid, kernel, 1, "valid", layer.data_format)
        elif isinstance(layer, (L.DepthwiseConv2D, L.Conv2DTranspose)):
            if isinstance(layer, L.DepthwiseConv2D):
                bias_step = self._bias_step(_depthwise_as_outputs(kernel),
                                            input_step)
                kernel = _quantize_depthwise(kernel, self.weight_bits,
                                             self.per_channel)
            else:   # per-tensor weights (see __init__)
                bias_step = self._bias_step(kernel, input_step, -2)
                kernel = _quantize_channels_axis_minus2(
                    kernel, self.weight_bits, self.per_channel)
            kernel = tf.cast(kernel, inputs.dtype)
            if isinstance(layer, L.DepthwiseConv2D):
                y = keras.ops.depthwise_conv(inputs, kernel, layer.strides,
                                             layer.padding,
                                             layer.data_format,
                                             layer.dilation_rate)
            else:
                y = keras.ops.conv_transpose(inputs, kernel, layer.strides,
                                             layer.padding,
                                             layer.output_padding,
                                             layer.data_format,
                                             layer.dilation_rate)
        else:
            bias_step = self._bias_step(kernel, input_step)
            kernel = tf.cast(fq.quantize_weights(kernel, self.weight_bits,
                                                 self.per_channel),
                             inputs.dtype)
            if isinstance(layer, L.Dense):
                y = keras.ops.matmul(inputs, kernel)
            else:
                y = keras.ops.conv(inputs, kernel, layer.strides,
                                   layer.padding, layer.data_format,
                                   layer.dilation_rate)
        def with_moving_statistics():
            if bias is None:
                return y
            wide_bias = tf.cast(bias, y.dtype)
            return y + (wide_bias if bias_step is None else
                        round_bias(wide_bias, bias_step))

        if not self._batch_statistics(training):
            y = with_moving_statistics()
        elif self.batchnorm_steps is None:
            y = self._normalize_batch(y, conv_bias)
        else:
            steps = self.batchnorm_steps
            y = tf.cond(steps < self.freeze_bn_delay,
                        lambda: self._normalize_batch(y, conv_bias),
                        with_moving_statistics)
            steps.assign(steps + 1)
        if layer.activation is not None and \
                layer.activation is not keras.activations.linear:
            y = layer.activation(y)
        if self._act is not None:
            y = self._act(y)
        if not self.quantize_output:
            return tf.cast(y, tf.float32) if wide else y
        return self._quantize_output(y, training, self.range,
                                     self.activation_bits)

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(self._nested_layers_config())
        config.update({
            "activation": self.activation_name,
            "weight_bits": self.weight_bits,
            "weight_bits_note": self.weight_bits_note,
            "activation_bits": self.activation_bits,
            "per_channel": self.per_channel,
            "preserve_sparsity": self.preserve_sparsity,
            "preserve_clusters": self.preserve_clusters,
            "cluster_count": self.cluster_count,
            "cluster_channels": self.cluster_channels,
            "ema_decay": self.ema_decay,
            "activation_percentile": self.activation_percentile,
            "quantize_output": self.quantize_output,
            "input_scale": self.input_scale,
            "input_offset": self.input_offset,
            "output_scale": self.output_scale,
            "output_shift": self.output_shift,
            "freeze_bn_delay": self.freeze_bn_delay})
        return config
