"""Recipe schema: duplicate keys, list fields, and option lists shared with
convert() and the CLI."""

import pytest

from tfcompress.recipes.schema import (STAGE_SCHEMAS, RecipeError,
                                       load_recipe_text)


def _stage(text):
    return ("model: lenet_300_100\nvariants:\n  - name: v\n    stages:\n"
            f"      - {text}\n")


@pytest.mark.parametrize("text,key,line,first", [
    ("model: seed_cnn\ndata: mnist\nmodel: lenet_300_100\n", "model", 3, 1),
    ("train:\n  epochs: 2\n  seed: 1\n  epochs: 3\n", "epochs", 4, 2),
    (_stage("prune:\n          final_sparsity: 0.5\n"
            "          final_sparsity: 0.9"), "final_sparsity", 7, 6),
], ids=["top", "nested", "stage"])
def test_duplicate_key_names_key_and_line(text, key, line, first):
    with pytest.raises(RecipeError) as e:
        load_recipe_text(text, "r.yaml")
    msg = str(e.value)
    assert msg.startswith(f"r.yaml:{line}: duplicate key {key!r}"), msg
    assert f"line {first}" in msg and "\n" not in msg


def test_yaml_merge_key_override_is_not_a_duplicate():
    text = ("base: &b {epochs: 2, seed: 1}\n"
            "train:\n  <<: *b\n  epochs: 3\n")
    with pytest.raises(RecipeError, match="unknown key 'base'"):
        load_recipe_text(text, "r.yaml")   # gets past the loader


@pytest.mark.parametrize("field,value,words", [
    ("block_size", "[0, 4]", ["block_size[0]", ">= 1", "found 0"]),
    ("block_size", "[1, -2]", ["block_size[1]", "found -2"]),
    ("block_size", "[1, 4, 4]", ["block_size", "expected 2 items"]),
    ("block_size", "[1.5, 4]", ["block_size[0]", "expected int", "1.5"]),
    ("block_size", "[true, 4]", ["block_size[0]", "expected int"]),
    ("block_size", "4", ["block_size", "expected a list", "int"]),
    ("m_by_n", "[2]", ["m_by_n", "expected 2 items"]),
    ("m_by_n", "['2', 4]", ["m_by_n[0]", "expected int", "str"]),
    ("m_by_n", "[4, 2]", ["m_by_n", "m < n"]),
    ("m_by_n", "[4, 4]", ["m_by_n", "m < n"]),
    ("exclude", "[dense, 3]", ["exclude[1]", "expected str", "3"]),
    ("exclude", "['']", ["exclude[0]", "non-empty name"]),
    ("exclude", "dense", ["exclude", "expected a list"]),
])
def test_prune_list_fields_are_validated(field, value, words):
    with pytest.raises(RecipeError) as e:
        load_recipe_text(_stage(f"prune: {{{field}: {value}}}"), "r.yaml")
    msg = str(e.value)
    assert msg.startswith("r.yaml:5: variants[0].stages[0].prune."), msg
    for w in words:
        assert w in msg, msg


def test_cluster_exclude_is_validated():
    with pytest.raises(RecipeError, match=r"cluster.exclude\[0\]: expected "
                                          "str"):
        load_recipe_text(_stage("cluster: {exclude: [[a]]}"), "r.yaml")


def test_valid_lists_pass_through():
    r = load_recipe_text(_stage("prune: {granularity: block, block_size: "
                                "[2, 8], m_by_n: [1, 4], exclude: [head]}"),
                         "r.yaml")
    p = r["variants"][0]["stages"][0]["prune"]
    assert (p["block_size"], p["m_by_n"], p["exclude"]) == \
        ([2, 8], [1, 4], ["head"])


def test_every_list_field_checks_its_items():
    # a new list-valued field must say what its items are
    for stage, schema in STAGE_SCHEMAS.items():
        for name, field in schema.items():
            if field.kind is list:
                assert field.items is not None, f"{stage}.{name}"


def test_io_type_must_go_with_mode():
    with pytest.raises(RecipeError, match="io_type: int16 does not go with "
                                          "mode int8; use one of float32, "
                                          "int8, uint8"):
        load_recipe_text(_stage("convert: {mode: int8, io_type: int16}"),
                         "r.yaml")
    r = load_recipe_text(_stage("convert: {mode: int16x8, io_type: int16}"),
                         "r.yaml")
    assert r["variants"][0]["stages"][0]["convert"]["io_type"] == "int16"


def test_calibration_other_than_minmax_needs_post_training_int8():
    # convert() refuses these; the recipe says so before any training
    with pytest.raises(RecipeError, match="calibration: entropy chooses "
                       "post-training int8 ranges; mode is float16"):
        load_recipe_text(_stage("convert: {mode: float16, "
                                "calibration: entropy}"), "r.yaml")
    qat_then_convert = ("model: lenet_300_100\nvariants:\n  - name: v\n"
                        "    stages:\n      - qat: {}\n      - convert: "
                        "{calibration: percentile}\n")
    with pytest.raises(RecipeError, match=r"stages\[1\]\.convert\."
                       "calibration: percentile does not apply after a qat"):
        load_recipe_text(qat_then_convert, "r.yaml")
    r = load_recipe_text(qat_then_convert.replace("percentile", "minmax"),
                         "r.yaml")
    assert r["variants"][0]["stages"][1]["convert"]["calibration"] == \
        "minmax"


def test_cli_schema_and_convert_accept_the_same_options():
    from absl import flags

    import tfcompress.commands.convert  # noqa: F401  defines the flags
    from tfcompress.convert import converter
    from tfcompress.errors import InputError

    schema = STAGE_SCHEMAS["convert"]
    cli = {name: set(flags.FLAGS[name].parser.enum_values)
           for name in ("mode", "io_type", "calibration")}
    recipe = {"mode": set(schema["mode"].kind),
              "io_type": set(schema["io_type"].kind),
              "calibration": set(schema["calibration"].kind)}
    assert cli == recipe

    def accepted(**kw):
        # convert() checks its options before it looks at the model
        args = dict(mode="int8", input_type="float32",
                    output_type="float32", calibration="minmax")
        args.update(kw)
        try:
            converter.convert(None, args.pop("mode"), **args)
        except InputError as e:
            return "is not one of" not in str(e)
        return True

    candidates = {"mode": recipe["mode"] | {"int4", "uint8", "float64"},
                  "io_type": recipe["io_type"] | {"int32", "float16"},
                  "calibration": recipe["calibration"] | {"kl", "max"}}
    conv = {
        "mode": {m for m in candidates["mode"] if accepted(mode=m)},
        "io_type": {t for t in candidates["io_type"]
                    if accepted(mode="int16x8", input_type=t)
                    or accepted(mode="int8", input_type=t)},
        "calibration": {c for c in candidates["calibration"]
                        if accepted(calibration=c)}}
    assert conv == recipe


def test_a_prune_stage_whose_m_by_n_meaning_changed_gets_a_new_key():
    from tfcompress.recipes import keys
    two_of_four = {"granularity": "n_of_m", "m_by_n": [2, 4]}
    one_of_four = {"granularity": "n_of_m", "m_by_n": [1, 4]}
    assert keys.stage_settings("prune", two_of_four) == two_of_four
    assert "m_by_n_counts" in keys.stage_settings("prune", one_of_four)


def test_a_cluster_stage_takes_gradient_aggregation_and_keeps_old_keys():
    from tfcompress.recipes import keys
    recipe = load_recipe_text(_stage("cluster: {gradient_aggregation: avg}"),
                              "r.yaml")
    stage = recipe["variants"][0]["stages"][0]
    assert stage["cluster"]["gradient_aggregation"] == "avg"
    with pytest.raises(RecipeError, match="gradient_aggregation"):
        load_recipe_text(_stage("cluster: {gradient_aggregation: mean}"),
                         "r.yaml")
    # a stage cached before the setting existed keeps its key
    old = {"number_of_clusters": 16, "epochs": 1}
    assert keys.stage_settings(
        "cluster", {**old, "gradient_aggregation": "sum"}) == old
    assert keys.stage_settings(
        "cluster", {**old, "gradient_aggregation": "avg"}) != old
