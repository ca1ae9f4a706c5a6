"""tfcompress.distill against keras.distillation: same loss and same
training step for a live teacher, cached logits equal to the live teacher,
and a distilled student that saves, loads and converts."""

import keras
import numpy as np
import pytest

from tfcompress.distill import Distiller, logits_distillation
from tfcompress.errors import InputError


def _data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=3, size=(4, 12))
    y = rng.integers(0, 4, n)
    return (centers[y] + rng.normal(size=(n, 12))).astype("float32"), y


def _mlp(width, seed):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((12,)),
                             keras.layers.Dense(width, activation="relu"),
                             keras.layers.Dense(4)])


def _twin(model):
    twin = keras.models.clone_model(model)
    twin.set_weights(model.get_weights())
    return twin


def _hard_loss():
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _keras_distiller(student, teacher, temperature, alpha):
    kd = keras.distillation.Distiller(
        teacher=teacher, student=student,
        distillation_losses=logits_distillation(temperature),
        student_loss_weight=alpha)
    kd.compile(keras.optimizers.SGD(0.1), loss=_hard_loss())
    return kd


def _ours(student, teacher, temperature, alpha):
    d = Distiller(student, teacher, temperature=temperature, alpha=alpha)
    d.compile(keras.optimizers.SGD(0.1))
    return d


@pytest.mark.parametrize("temperature,alpha", [(4.0, 0.2), (2.0, 0.5),
                                               (1.0, 0.0), (3.0, 1.0)])
def test_loss_and_step_equal_keras_distiller(temperature, alpha):
    x, y = _data()
    teacher, student = _mlp(32, 1), _mlp(8, 2)
    kd = _keras_distiller(_twin(student), teacher, temperature, alpha)
    ours = _ours(_twin(student), teacher, temperature, alpha)
    keras_loss = float(kd.compute_loss(x, y, kd(x)))
    our_loss = float(ours.compute_loss(x, y, ours(x)))
    assert our_loss == pytest.approx(keras_loss, rel=1e-6)
    assert our_loss > 0
    # one SGD step from the same weights lands on the same weights
    kd.train_on_batch(x, y)
    ours.train_on_batch(x, y)
    for a, b in zip(kd.student.get_weights(), ours.student.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert not np.allclose(ours.student.get_weights()[0],
                           student.get_weights()[0])


def test_keras_default_logits_distillation_is_not_the_softened_kl():
    # Keras 3.15: LogitsDistillation(T) resolves "kl_divergence" to the
    # function, so no softmax and no T^2 (docs/distillation.md says so).
    t = np.array([[2.0, 0.5, -1.0]], "float32")
    s = np.array([[0.1, 1.0, 0.3]], "float32")
    temperature = 3.0
    pt, ps = (np.exp(v / temperature) / np.exp(v / temperature).sum()
              for v in (t, s))
    textbook = float((pt * np.log(pt / ps)).sum() * temperature ** 2)
    ours = float(logits_distillation(temperature).compute_loss(t, s))
    default = float(keras.distillation.LogitsDistillation(
        temperature).compute_loss(t, s))
    assert ours == pytest.approx(textbook, rel=1e-5)
    assert default != pytest.approx(textbook, rel=1e-2)


def test_cached_logits_equal_live_teacher():
    x, y = _data()
    teacher, student = _mlp(32, 1), _mlp(8, 2)
    live = _ours(_twin(student), teacher, 4.0, 0.3)
    cached = _ours(_twin(student), None, 4.0, 0.3)
    logits = teacher.predict(x, verbose=0)
    assert float(cached.compute_loss(x, (y, logits), cached(x))) == (
        pytest.approx(float(live.compute_loss(x, y, live(x))), rel=1e-6))
    live.train_on_batch(x, y)
    cached.train_on_batch(x, (y, logits))
    for a, b in zip(live.student.get_weights(),
                    cached.student.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_cached_mode_without_teacher_logits_names_the_fix():
    x, y = _data()
    d = _ours(_mlp(8, 2), None, 4.0, 0.3)
    with pytest.raises(InputError, match=r"y=\(labels, teacher_logits\)"):
        d.train_on_batch(x, y)


def test_bad_arguments_raise_input_error():
    teacher = _mlp(32, 1)
    with pytest.raises(InputError, match="temperature"):
        Distiller(_mlp(8, 2), teacher, temperature=0)
    with pytest.raises(InputError, match="alpha"):
        Distiller(_mlp(8, 2), teacher, alpha=1.5)


def test_distilled_student_saves_loads_and_converts(tmp_path):
    from tfcompress.convert import convert
    rng = np.random.default_rng(0)
    x = rng.random((64, 8, 8, 1), dtype=np.float32)
    y = (x.mean(axis=(1, 2, 3)) > 0.5).astype("int64")

    def cnn(filters, seed):
        keras.utils.set_random_seed(seed)
        return keras.Sequential([
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(filters, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(2)])

    teacher = cnn(8, 1)
    d = Distiller(cnn(2, 2), None, temperature=2.0, alpha=0.5)
    d.compile(keras.optimizers.Adam(1e-2), metrics=["accuracy"])
    d.fit(x, (y, teacher.predict(x, verbose=0)), epochs=1, batch_size=32,
          verbose=0)
    path = tmp_path / "student.keras"
    d.save(path)
    # written atomically: nothing but the file itself is left in the folder
    assert sorted(p.name for p in tmp_path.iterdir()) == ["student.keras"]
    with pytest.raises(InputError, match="does not exist"):
        d.save(tmp_path / "missing" / "student.keras")
    loaded = keras.models.load_model(path)
    assert loaded.count_params() == d.student.count_params()
    np.testing.assert_allclose(loaded.predict(x, verbose=0),
                               d.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    result = convert(loaded, "int8", representative_data=x[:32],
                     output_path=str(tmp_path / "student.tflite"))
    assert (tmp_path / "student.tflite").stat().st_size > 0
    assert result.report["float_ops"] == []
    assert result.report["numerical_check"]["top1_agreement"] >= 0.9


def test_docstring_examples_run():
    import doctest

    from tfcompress.distill import distiller
    result = doctest.testmod(distiller, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 10 and result.failed == 0


def _softmax_twin(model):
    """``model`` with a softmax added, nested as a base in a Sequential
    (as a keras.applications classifier with its default
    ``classifier_activation="softmax"`` would be)."""
    twin = keras.Sequential([keras.Input((12,)), _twin(model),
                             keras.layers.Softmax()])
    return keras.Sequential([keras.Input((12,)), twin])


def test_softmax_teacher_and_student_give_the_logits_loss():
    x, y = _data()
    teacher, student = _mlp(32, 1), _mlp(8, 2)
    teacher.layers[-1].kernel.assign(teacher.layers[-1].kernel * 5)
    expected = _ours(_twin(student), teacher, 4.0, 0.3)
    expected = float(expected.compute_loss(x, y, expected(x)))
    for s, t in [(_twin(student), _softmax_twin(teacher)),
                 (_softmax_twin(student), teacher),
                 (_softmax_twin(student), _softmax_twin(teacher))]:
        d = _ours(s, t, 4.0, 0.3)
        assert float(d.compute_loss(x, y, d(x))) == pytest.approx(
            expected, rel=1e-4)


def test_subclassed_student_with_cached_logits():
    class Student(keras.Model):
        def __init__(self):
            super().__init__()
            self.fc = keras.layers.Dense(4)

        def call(self, x):
            return self.fc(x)

    x, y = _data()
    d = _ours(Student(), None, 2.0, 0.5)
    logits = np.random.default_rng(1).normal(size=(len(x), 4))
    d.fit(x, (y, logits.astype("float32")), epochs=1, verbose=0)


def test_feature_pairs_reach_into_a_nested_base(tmp_path):
    # transfer learning: the student nests its base as one layer, with
    # preprocessing in front; a pair names a layer inside the base, or
    # the base itself
    rng = np.random.default_rng(0)
    x = rng.random((32, 8, 8, 3), dtype=np.float32) * 255
    y = np.arange(32) % 4
    keras.utils.set_random_seed(0)
    i = keras.Input((8, 8, 3))
    conv = keras.layers.Conv2D(2, 3, padding="same", name="s_conv")(i)
    base = keras.Model(i, keras.layers.ReLU(name="s_relu")(conv),
                       name="base")
    student = keras.Sequential([
        keras.Input((8, 8, 3)), keras.layers.Rescaling(1 / 255), base,
        keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(4)])
    t_in = keras.Input((8, 8, 3))
    t_feat = keras.layers.Conv2D(6, 3, padding="same", activation="relu",
                                 name="t_conv")(t_in)
    teacher = keras.Model(t_in, keras.layers.Dense(4)(
        keras.layers.GlobalAveragePooling2D()(t_feat)))
    inner = keras.Model(base.input, base.get_layer("s_conv").output)
    for pair, source in [("s_conv", inner), ("base", base)]:
        d = Distiller(student, teacher, temperature=2.0, alpha=0.5,
                      feature_pairs=[(pair, "t_conv")])
        logits, feature = d._student_features([x])
        expected = source(x / 255)
        np.testing.assert_allclose(feature, expected, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(logits, student(x), rtol=1e-5, atol=1e-6)
        d.compile(keras.optimizers.Adam(1e-2))
        d.fit(x, y, epochs=1, batch_size=16, verbose=0)
    d.save(tmp_path / "student.keras")
    loaded = keras.models.load_model(tmp_path / "student.keras")
    np.testing.assert_allclose(loaded.predict(x, verbose=0),
                               student.predict(x, verbose=0), rtol=1e-5,
                               atol=1e-5)


MIRRORED_FEATURES = r'''
from tfcompress.distill import Distiller
rng = np.random.default_rng(0)
x = rng.normal(size=(64, 12)).astype("float32")
y = np.arange(64) % 4


def mlp(width, prefix, seed):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input((12,)),
        keras.layers.Dense(width, activation="relu", name=prefix + "_h"),
        keras.layers.Dense(4)])


def distiller():
    d = Distiller(mlp(8, "s", 2), mlp(32, "t", 1), temperature=2.0,
                  alpha=0.5, feature_pairs=[("s_h", "t_h")])
    d.compile(keras.optimizers.SGD(0.1))
    return d


single = distiller()
with strategy.scope():
    mirrored = distiller()
losses = [d.evaluate(x, y, batch_size=64, verbose=0)
          for d in (single, mirrored)]
print("REPORT" + json.dumps({
    "replicas": strategy.num_replicas_in_sync, "losses": losses}))
'''


def test_feature_term_is_the_same_on_two_replicas(two_cpus):
    # the feature term is averaged over the replicas as the logits terms
    # are; it counted once per replica
    report = two_cpus.report(two_cpus.run(MIRRORED_FEATURES))
    assert report["replicas"] == 2
    single, mirrored = report["losses"]
    assert mirrored == pytest.approx(single, rel=1e-5)
