import numpy as np
import pytest

from tfcompress.models import MODELS, compile_classifier, get_model


@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_builds_and_trains_one_step(name, tiny_images):
    import keras
    keras.utils.set_random_seed(0)
    x, y = tiny_images
    model = compile_classifier(get_model(name), learning_rate=1e-3)
    assert model.output_shape == (None, 10)
    before = [w.copy() for w in model.get_weights()]
    hist = model.fit(x, y, batch_size=32, epochs=1, steps_per_epoch=1,
                     verbose=0)
    assert np.isfinite(hist.history["loss"][0])
    after = model.get_weights()
    assert any(not np.allclose(a, b) for a, b in zip(before, after))


def test_seed_cnn_architecture():
    import keras
    m = get_model("seed_cnn")
    kinds = [type(l).__name__ for l in m.layers]
    assert kinds == ["Conv2D", "MaxPooling2D", "BatchNormalization", "Conv2D",
                     "MaxPooling2D", "Flatten", "Dense", "Dropout", "Dense"]
    assert m.get_layer("conv1").kernel.shape == (5, 5, 1, 32)
    assert m.get_layer("fc1").units == 1024
    assert isinstance(m.get_layer("dropout"), keras.layers.Dropout)


def test_lenet_param_count():
    assert get_model("lenet_300_100").count_params() == (
        784 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10)


def test_mobilenet_has_residual_relu6_and_depthwise():
    m = get_model("mobilenet_small")
    kinds = {type(l).__name__ for l in m.layers}
    assert {"DepthwiseConv2D", "Add", "ReLU",
            "GlobalAveragePooling2D"} <= kinds
    assert all(l.max_value == 6.0 for l in m.layers
               if type(l).__name__ == "ReLU")


def test_unknown_model_name():
    with pytest.raises(ValueError, match="choose one of"):
        get_model("resnet9000")


def test_docstring_examples():
    import doctest
    from tfcompress.models import reference
    result = doctest.testmod(reference, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 2 and result.failed == 0
