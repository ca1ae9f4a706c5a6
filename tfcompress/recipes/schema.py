"""Recipe schema and validation with file, line and field path in errors.

A recipe is YAML (read with the safe loader). Every mapping is checked
against its schema: unknown keys are errors (with the closest valid key
suggested), values are type- and range-checked, and defaults fill the rest.

>>> recipe = load_recipe_text("model: lenet_300_100\\ndata: mnist\\n", "r.yaml")
>>> recipe["train"]["epochs"], recipe["variants"][0]["name"]
(1, 'float')
"""

from __future__ import annotations

import copy
import difflib
import os

import yaml

from tfcompress.convert.options import (CALIBRATIONS, INTEGER_MODES,
                                        IO_TYPES, MODES, io_types_for)
from tfcompress.errors import InputError

MISSING = object()
APPLICATIONS = "keras.applications."
PTQ_STEPS = ("equalize", "correct_bias", "adaround", "reestimate_batchnorm")


class RecipeError(InputError):
    """A recipe problem: names the file, line, field, expected and found."""


class Field:
    """One value: ``kind`` is a type, a tuple of allowed values, or a dict
    (nested mapping schema) / ``[dict]`` (list of mappings).

    A ``list`` field checks its elements: each is an ``items`` (type), in
    [``low``, ``high``], and there are ``length`` of them when given.
    """

    def __init__(self, kind, default=MISSING, low=None, high=None,
                 doc="", items=None, length=None):
        self.kind, self.default = kind, default
        self.low, self.high, self.doc = low, high, doc
        self.items, self.length = items, length


STAGE_SCHEMAS = {
    "prune": {
        "schedule": Field(("polynomial", "constant"), "polynomial"),
        "initial_sparsity": Field(float, 0.0, 0.0, 0.99),
        "final_sparsity": Field(float, 0.8, 0.0, 0.99),
        "granularity": Field(("unstructured", "block", "n_of_m", "global"),
                             "unstructured"),
        "block_size": Field(list, [1, 4], 1, items=int, length=2,
                            doc="[rows, columns] of each pruned block"),
        "m_by_n": Field(list, [2, 4], 1, items=int, length=2,
                        doc="[m, n]: m of every n weights are zeroed "
                            "(tfmot's sparsity_m_by_n)"),
        "frequency": Field(int, 20, 1),
        "end_fraction": Field(float, 0.8, 0.05, 1.0),
        "epochs": Field(int, 1, 1, 1000),
        "learning_rate": Field(float, 5e-4, 0.0),
        "exclude": Field(list, [], items=str, doc="layer names"),
        # per-layer final sparsity; listed layers use it instead of
        # final_sparsity (what ``tfcompress tune`` writes)
        "layer_sparsity": Field(dict, {}, 0.0, 0.99, items=(int, float),
                                doc="layer name -> sparsity"),
    },
    # structured: whole channels zeroed on a ramp while training
    # (ChannelPruning), then removed (shrink): a smaller, faster model
    "channel_prune": {
        "sparsity": Field(float, 0.5, 0.01, 0.95,
                          doc="fraction of channels removed"),
        "norm": Field(("bn_gamma", "l1", "l2"), "bn_gamma"),
        "allocation": Field(("uniform", "global"), "uniform"),
        "max_space_sparsity": Field(float, 0.8, 0.01, 0.99),
        "end_fraction": Field(float, 0.7, 0.05, 1.0),
        "epochs": Field(int, 1, 1, 1000),
        "learning_rate": Field(float, 5e-4, 0.0),
        "exclude": Field(list, [], items=str,
                         doc="layers whose output channels are kept"),
    },
    "cluster": {
        "number_of_clusters": Field(int, 16, 2, 256),
        "centroid_init": Field(("kmeans++", "linear", "random", "density"),
                               "kmeans++"),
        "per_channel": Field(bool, False),
        "preserve_sparsity": Field(bool, True),
        # a centroid's gradient: the sum of its weights' or their mean
        "gradient_aggregation": Field(("sum", "avg"), "sum"),
        "epochs": Field(int, 1, 1, 1000),
        "learning_rate": Field(float, 1e-4, 0.0),
        "exclude": Field(list, [], items=str, doc="layer names"),
    },
    "qat": {
        "scheme": Field(("default_8bit", "prune_preserving",
                         "cluster_preserving", "n_bit"), "default_8bit"),
        "weight_bits": Field(int, 8, 2, 8),
        "activation_bits": Field(int, 8, 2, 8),
        # keep a pruned model's zeros (prune_preserving always does)
        "preserve_sparsity": Field(bool, False),
        "layer_bits": Field(dict, None, 2, 8, items=int,
                            doc="{layer name: weight bits} overriding "
                                "weight_bits for single layers"),
        # training steps with batch-norm batch statistics, then the moving
        # statistics (none: never freeze)
        "freeze_bn_delay": Field(int, None, 0,
                                 doc="training steps before batch norm "
                                     "uses its moving statistics"),
        # one range per chain of concatenations (no requantizing ops)
        "share_concat_ranges": Field(bool, True),
        "ema_decay": Field(float, 0.999, 0.0, 0.99999,
                           doc="decay of the activation ranges' moving "
                               "average"),
        "activation_percentile": Field(float, None, 50.01, 100.0,
                                       doc="percentile of each batch the "
                                           "activation ranges follow (none:"
                                           " min and max)"),
        "epochs": Field(int, 1, 1, 1000),
        "learning_rate": Field(float, 1e-4, 0.0),
    },
    # post-training steps of tfcompress.ptq, in order (no labels used)
    "ptq": {
        "steps": Field(list, [], items=str, doc="equalize, correct_bias, "
                       "adaround, reestimate_batchnorm"),
        "weight_bits": Field(int, 8, 2, 8),
        "per_channel": Field(bool, True),
        "samples": Field(int, 256, 1),
        "iterations": Field(int, 500, 1, doc="AdaRound steps per layer"),
    },
    "convert": {
        "mode": Field(MODES, "int8"),
        "io_type": Field(IO_TYPES, "float32"),
        "calibration": Field(CALIBRATIONS, "minmax"),
        "samples": Field(int, 200, 1),
        "strict": Field(bool, None),   # default: on for int8/int16x8
        "sparse": Field(bool, False),
        # False: one scale per weight tensor (per-tensor int8 weights)
        "per_channel": Field(bool, True),
        # layers whose ops stay float32 in a post-training int8 model
        "float_layers": Field(list, [], items=str, doc="layer names"),
    },
    "bench": {
        "runtime": Field(("auto", "ai_edge_litert", "tflite_runtime",
                          "tensorflow"), "auto"),
        "threads": Field(int, 1, 1, 64),
        "runs": Field(int, 50, 1),
        "warmup_runs": Field(int, 5, 0),
        "xnnpack": Field(bool, True),
        "host": Field(str, None),
    },
}

# other names a stage may be given under (tfmot calls QAT "quantize")
STAGE_ALIASES = {"quantize": "qat"}
# stages that take the float model (or an earlier such stage's) and give a
# Keras model; the others (convert, bench) take it to a flatbuffer
MODEL_STAGES = ("prune", "channel_prune", "cluster", "qat", "ptq")

SCHEMA = {
    "name": Field(str, None),
    # a reference model, a .keras file or keras.applications.<Name>
    "model": Field(str, "seed_cnn"),
    # constructor arguments of a keras.applications model ({alpha: 0.35})
    "model_options": Field(dict, {}, doc="argument name -> value"),
    "data": {
        "name": Field(str, "fashion_mnist"),
        "train_samples": Field(int, None, 1),
        "test_samples": Field(int, None, 1),
        # resize images to image_size x image_size (bilinear) and repeat a
        # single channel to `channels`; the model's input follows the data
        "image_size": Field(int, None, 1, 4096),
        "channels": Field(int, None, 1, 4),
    },
    "train": {
        "epochs": Field(int, 1, 0, 1000),
        "batch_size": Field(int, 128, 1, 65536),
        "optimizer": Field(("adam", "sgd", "rmsprop", "adamw"), "adam"),
        "learning_rate": Field(float, 1e-3, 0.0),
        "seed": Field(int, 0, 0),
        # also train the baseline on for as many epochs as each variant's
        # stages add, and compare each variant with it (docs/recipes.md)
        "fair_baseline": Field(bool, False),
        # tf.distribute strategy of every training stage (docs/distributed.md)
        "strategy": Field(("default", "mirrored", "multi_worker"),
                          "default"),
        # momentum of every BatchNormalization layer of the model before the
        # baseline trains (kept by the stages after it); None: the model's
        "batchnorm_momentum": Field(float, None, 0.0, 1.0),
    },
    "variants": Field([{"name": Field(str), "stages": Field(list)}],
                      [{"name": "float", "stages": [
                          {"convert": {"mode": "float32"}}, {"bench": {}}]}]),
}


def _where(source, node):
    line = node.start_mark.line + 1 if node is not None else "?"
    return f"{source}:{line}"


def _suggest(key, keys):
    close = difflib.get_close_matches(str(key), list(keys), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _check_scalar(field, value, node, path, source):
    kind = field.kind
    where = _where(source, node)
    if value is None and field.default is None:
        return None
    if isinstance(kind, tuple):
        if value not in kind:
            raise RecipeError(f"{where}: {path}: expected one of "
                              f"{', '.join(map(str, kind))}, found "
                              f"{value!r}{_suggest(value, kind)}")
        return value
    if kind is float and isinstance(value, int) and \
            not isinstance(value, bool):
        value = float(value)
    if kind is bool and not isinstance(value, bool) or \
            kind is not bool and isinstance(value, bool) or \
            not isinstance(value, kind):
        raise RecipeError(f"{where}: {path}: expected {kind.__name__}, "
                          f"found {type(value).__name__} {value!r}")
    if field.low is not None and value < field.low or \
            field.high is not None and value > field.high:
        raise RecipeError(f"{where}: {path}: expected a value in "
                          f"[{field.low}, {field.high}], found {value!r}")
    return value


def _node_for(mapping_node, key):
    if mapping_node is None or not isinstance(mapping_node,
                                              yaml.MappingNode):
        return None, None
    for k, v in mapping_node.value:
        if k.value == key:
            return k, v
    return None, None


def _validate_mapping(schema, value, node, path, source):
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise RecipeError(f"{_where(source, node)}: {path or 'recipe'}: "
                          f"expected a mapping, found "
                          f"{type(value).__name__}")
    out = {}
    for key in value:
        if key not in schema:
            knode, _ = _node_for(node, key)
            raise RecipeError(f"{_where(source, knode or node)}: unknown key "
                              f"{(path + '.' if path else '') + str(key)!r}"
                              f"{_suggest(key, schema)}")
    for key, field in schema.items():
        sub = f"{path}.{key}" if path else key
        _, vnode = _node_for(node, key)
        if isinstance(field, dict):
            out[key] = _validate_mapping(field, value.get(key), vnode, sub,
                                         source)
            continue
        if key not in value:
            if field.default is MISSING:
                raise RecipeError(f"{_where(source, node)}: {sub}: required "
                                  "field is missing")
            out[key] = copy.deepcopy(field.default)
            continue
        if field.kind is list:
            out[key] = _check_list(field, value[key], vnode, sub, source)
        elif field.kind is dict:
            out[key] = _check_map(field, value[key], vnode, sub, source)
        elif isinstance(field.kind, list):
            out[key] = value[key]
        else:
            out[key] = _check_scalar(field, value[key], vnode, sub, source)
    return out


def _check_list(field, value, node, path, source):
    where = _where(source, node)
    if not isinstance(value, list):
        raise RecipeError(f"{where}: {path}: expected a list, found "
                          f"{type(value).__name__} {value!r}")
    if field.length is not None and len(value) != field.length:
        raise RecipeError(f"{where}: {path}: expected {field.length} "
                          f"items, found {len(value)} {value!r}")
    if field.items is None:
        return list(value)
    out = []
    for i, item in enumerate(value):
        inode = node.value[i] if isinstance(node, yaml.SequenceNode) and \
            i < len(node.value) else node
        ipath = f"{path}[{i}]"
        if isinstance(item, bool) or not isinstance(item, field.items):
            raise RecipeError(f"{_where(source, inode)}: {ipath}: expected "
                              f"{field.items.__name__}, found "
                              f"{type(item).__name__} {item!r}")
        if field.items is str and not item.strip():
            raise RecipeError(f"{_where(source, inode)}: {ipath}: expected "
                              "a non-empty name")
        if field.low is not None and item < field.low or \
                field.high is not None and item > field.high:
            bound = (f">= {field.low}" if field.high is None
                     else f"in [{field.low}, {field.high}]")
            raise RecipeError(f"{_where(source, inode)}: {ipath}: expected "
                              f"a value {bound}, found {item!r}")
        out.append(item)
    return out


def _check_map(field, value, node, path, source):
    """A ``{name: value}`` mapping whose values are ``field.items`` in
    [``low``, ``high``]."""
    if value is None:
        return None
    where = _where(source, node)
    if not isinstance(value, dict):
        raise RecipeError(f"{where}: {path}: expected a mapping of name: "
                          f"value, found {type(value).__name__} {value!r}")
    for name, item in value.items():
        knode, vnode = _node_for(node, name)
        if not isinstance(name, str) or not name.strip():
            raise RecipeError(f"{_where(source, knode or node)}: {path}: "
                              f"expected a name, found {name!r}")
        if field.items is None:     # any value: checked by its consumer
            continue
        if isinstance(item, bool) or not isinstance(item, field.items) or \
                field.low is not None and item < field.low or \
                field.high is not None and item > field.high:
            kinds = field.items if isinstance(field.items, tuple) else (
                field.items,)
            raise RecipeError(f"{_where(source, vnode or node)}: "
                              f"{path}.{name}: expected "
                              f"{' or '.join(k.__name__ for k in kinds)} in "
                              f"[{field.low}, {field.high}], found {item!r}")
    return dict(value)


def _check_stage(kind, params, node, path, source):
    """Checks between fields of one stage."""
    if kind == "prune":
        zeros, m = params["m_by_n"]
        if zeros >= m:
            _, vnode = _node_for(node, "m_by_n")
            raise RecipeError(f"{_where(source, vnode or node)}: "
                              f"{path}.m_by_n: expected [m, n] with m < n "
                              f"(m zeros in every n weights, as tfmot), "
                              f"found {[zeros, m]}")
    if kind == "prune":
        params["layer_sparsity"] = {k: float(v) for k, v in
                                    params["layer_sparsity"].items()}
    if kind == "ptq":
        for step in params["steps"]:
            if step not in PTQ_STEPS:
                _, vnode = _node_for(node, "steps")
                raise RecipeError(f"{_where(source, vnode or node)}: "
                                  f"{path}.steps: unknown step {step!r}; "
                                  f"steps are {', '.join(PTQ_STEPS)}"
                                  f"{_suggest(step, PTQ_STEPS)}")
    if kind == "convert" and params["float_layers"] and \
            params["mode"] != "int8":
        _, vnode = _node_for(node, "float_layers")
        raise RecipeError(f"{_where(source, vnode or node)}: "
                          f"{path}.float_layers: layers are kept float in "
                          f"post-training int8 only; mode is "
                          f"{params['mode']}: use mode int8 or drop "
                          "float_layers")
    if kind == "convert" and params["calibration"] != "minmax" and \
            params["mode"] != "int8":
        _, vnode = _node_for(node, "calibration")
        raise RecipeError(f"{_where(source, vnode or node)}: "
                          f"{path}.calibration: {params['calibration']} "
                          "chooses post-training int8 ranges; mode is "
                          f"{params['mode']}: use mode int8 or calibration "
                          "minmax")
    if kind == "convert" and params["mode"] in INTEGER_MODES and \
            params["io_type"] not in io_types_for(params["mode"]):
        _, vnode = _node_for(node, "io_type")
        raise RecipeError(f"{_where(source, vnode or node)}: "
                          f"{path}.io_type: {params['io_type']} does not "
                          f"go with mode {params['mode']}; use one of "
                          f"{', '.join(io_types_for(params['mode']))}")


def _validate_variants(variants, node, source):
    if not isinstance(variants, list) or not variants:
        raise RecipeError(f"{_where(source, node)}: variants: expected a "
                          "non-empty list of {name, stages}")
    names = set()
    out = []
    for i, v in enumerate(variants):
        vnode = node.value[i] if isinstance(node, yaml.SequenceNode) else None
        path = f"variants[{i}]"
        if not isinstance(v, dict):
            raise RecipeError(f"{_where(source, vnode)}: {path}: expected a "
                              f"mapping with name and stages, found {v!r}")
        for key in v:
            if key not in ("name", "stages"):
                knode, _ = _node_for(vnode, key)
                raise RecipeError(f"{_where(source, knode or vnode)}: "
                                  f"unknown key {path}.{key!r}"
                                  f"{_suggest(key, ('name', 'stages'))}")
        name = v.get("name")
        if not isinstance(name, str) or not name.replace("_", "").replace(
                "-", "").isalnum():
            raise RecipeError(f"{_where(source, vnode)}: {path}.name: "
                              "expected a name of letters, digits, _ or -, "
                              f"found {name!r}")
        if name in names:
            raise RecipeError(f"{_where(source, vnode)}: {path}.name: "
                              f"duplicate variant name {name!r}")
        names.add(name)
        _, snode = _node_for(vnode, "stages")
        stages = v.get("stages")
        if not isinstance(stages, list) or not stages:
            raise RecipeError(f"{_where(source, snode or vnode)}: "
                              f"{path}.stages: expected a non-empty list")
        checked = []
        for j, st in enumerate(stages):
            stnode = snode.value[j] if isinstance(snode, yaml.SequenceNode) \
                else None
            spath = f"{path}.stages[{j}]"
            if isinstance(st, str):
                st = {st: {}}
            if not isinstance(st, dict) or len(st) != 1:
                raise RecipeError(f"{_where(source, stnode)}: {spath}: "
                                  "expected one stage, e.g. {convert: "
                                  "{mode: int8}}")
            kind, params = next(iter(st.items()))
            _, pnode = _node_for(stnode, kind)
            kind = STAGE_ALIASES.get(kind, kind)
            if kind not in STAGE_SCHEMAS:
                raise RecipeError(f"{_where(source, stnode)}: {spath}: "
                                  f"unknown stage {kind!r}; stages are "
                                  f"{', '.join(STAGE_SCHEMAS)}"
                                  f"{_suggest(kind, STAGE_SCHEMAS)}")
            params = _validate_mapping(STAGE_SCHEMAS[kind], params, pnode,
                                       f"{spath}.{kind}", source)
            _check_stage(kind, params, pnode, f"{spath}.{kind}", source)
            checked.append({kind: params})
        kinds = [next(iter(s)) for s in checked]
        _check_qat_calibration(checked, kinds, snode or vnode, path, source)
        if "bench" in kinds and "convert" not in kinds[:kinds.index(
                "bench")]:
            raise RecipeError(f"{_where(source, snode or vnode)}: "
                              f"{path}.stages: bench needs a convert stage "
                              "before it")
        for float_stage in ("ptq", "channel_prune"):
            if float_stage in kinds and "qat" in kinds[:kinds.index(
                    float_stage)]:
                raise RecipeError(
                    f"{_where(source, snode or vnode)}: {path}.stages: a "
                    f"{float_stage} stage takes the float model, not a qat "
                    f"stage's; put {float_stage} before qat, or leave one "
                    "out")
        out.append({"name": name, "stages": checked})
    return out


def _check_qat_calibration(stages, kinds, node, path, source):
    """Refuses a convert stage's calibration method after a qat stage: the
    QAT model's ranges are learned in training, not calibrated."""
    if "qat" not in kinds:
        return
    for i in range(kinds.index("qat") + 1, len(kinds)):
        method = stages[i][kinds[i]].get("calibration", "minmax") \
            if kinds[i] == "convert" else "minmax"
        if method != "minmax":
            raise RecipeError(f"{_where(source, node)}: {path}.stages[{i}]"
                              f".convert.calibration: {method} does not "
                              "apply after a qat stage (the ranges are "
                              "learned in training): use calibration "
                              "minmax")


def _apply_override(given, override):
    if "=" not in override:
        raise RecipeError(f"--set {override!r}: expected key.path=value")
    key, raw = override.split("=", 1)
    value = yaml.safe_load(raw)
    node = given
    parts = key.split(".")
    for part in parts[:-1]:
        if part not in node or node[part] is None:
            node[part] = {}
        node = node[part]
        if not isinstance(node, dict):
            raise RecipeError(f"--set {override!r}: {part} is not a mapping")
    node[parts[-1]] = value


class _DuplicateKey(Exception):
    def __init__(self, key, line, first_line):
        super().__init__(key)
        self.key, self.line, self.first_line = key, line, first_line


class _RecipeLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (plain
    YAML loaders keep the last one silently)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            first = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    if key in first:
                        raise _DuplicateKey(key, key_node.start_mark.line + 1,
                                            first[key])
                    first[key] = key_node.start_mark.line + 1
                except TypeError:   # unhashable key: reported by YAML
                    pass
        return super().construct_mapping(node, deep)


def load_recipe_text(text, source="<recipe>", overrides=()):
    """Parses and validates recipe text; returns the resolved recipe."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        given = yaml.load(text, Loader=_RecipeLoader)
    except _DuplicateKey as e:
        raise RecipeError(f"{source}:{e.line}: duplicate key {e.key!r} "
                          f"(first given at line {e.first_line}); keep one "
                          "of them") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise RecipeError(f"{source}{line}: not valid YAML: {problem}") \
            from None
    if given is None:
        given = {}
    if not isinstance(given, dict):
        raise RecipeError(f"{source}:1: recipe: expected a mapping of "
                          f"fields, found {type(given).__name__}")
    if isinstance(given.get("data"), str):
        given["data"] = {"name": given["data"]}
    for o in overrides:
        _apply_override(given, o)
    schema = {k: v for k, v in SCHEMA.items() if k != "variants"}
    recipe = _validate_mapping(schema, {k: v for k, v in given.items()
                                        if k != "variants"}, node, "", source)
    _, vnode = _node_for(node, "variants")
    recipe["variants"] = _validate_variants(
        given.get("variants", SCHEMA["variants"].default), vnode, source)
    _check_model(recipe, node, source)
    if recipe["name"] is None:
        recipe["name"] = os.path.splitext(os.path.basename(source))[0]
    _check_run_name(recipe["name"], _node_for(node, "name")[1], source)
    return recipe


def _check_model(recipe, node, source):
    """A keras.applications name and its options exist (nothing built);
    other models take no options."""
    model, options = recipe["model"], recipe["model_options"]
    if model.startswith(APPLICATIONS):
        # imports keras: only for the recipes that need it
        from tfcompress.models.applications import check_application
        try:
            check_application(model, options)
        except InputError as e:
            key = "model_options" if str(e).startswith("model_options") \
                else "model"
            raise RecipeError(f"{_where(source, _node_for(node, key)[1])}: "
                              f"{e}") from None
    elif options:
        where = _where(source, _node_for(node, "model_options")[1])
        raise RecipeError(f"{where}: model_options: only keras.applications "
                          f"models take options, model is {model!r}; remove "
                          "model_options or use model: "
                          "keras.applications.<Name>")


def _check_run_name(name, node, source):
    """The run folder is ``runs/<name>``: the name must stay inside it."""
    parts = name.replace("\\", "/").split("/")
    if (not name or name.startswith(("/", "\\")) or ":" in name
            or any(p in ("", ".", "..") for p in parts)
            or any(ord(c) < 32 for c in name)):
        raise RecipeError(f"{_where(source, node)}: name: {name!r} must be "
                          "a folder name inside runs/ (no absolute path, "
                          "'..', '.', empty parts, ':' or control "
                          "characters), e.g. fashion_mnist_cnn")


def load_recipe(path, overrides=()):
    """Loads and validates the recipe file at ``path``.

    Every field left out gets its default; ``overrides`` are
    ``key.path=value`` strings, as ``tfcompress run --set`` takes them.
    The name defaults to the file's.

    >>> import os, tempfile
    >>> text = '''
    ... model: lenet_300_100
    ... data: {name: fashion_mnist, train_samples: 1000}
    ... variants:
    ...   - name: pruned_int8
    ...     stages:
    ...       - prune: {final_sparsity: 0.8}
    ...       - convert: {mode: int8}
    ... '''
    >>> with tempfile.TemporaryDirectory() as d:
    ...     path = os.path.join(d, "lenet_pruned.yaml")
    ...     with open(path, "w", encoding="utf-8") as f:
    ...         _ = f.write(text)
    ...     recipe = load_recipe(path, overrides=["train.epochs=3"])
    ...     with open(path, "w", encoding="utf-8") as f:  # a typo
    ...         _ = f.write(text.replace("final_sparsity", "final_sparsty"))
    ...     load_recipe(path)
    Traceback (most recent call last):
    ...
    tfcompress.recipes.schema.RecipeError: ...lenet_pruned.yaml:7: ...
    >>> recipe["name"], recipe["train"]["epochs"], recipe["train"]["seed"]
    ('lenet_pruned', 3, 0)
    >>> prune, convert = recipe["variants"][0]["stages"]
    >>> prune["prune"]["final_sparsity"], prune["prune"]["schedule"]
    (0.8, 'polynomial')
    >>> convert["convert"]["mode"], convert["convert"]["calibration"]
    ('int8', 'minmax')
    """
    if not os.path.isfile(path):
        raise RecipeError(f"recipe {path} does not exist; see configs/ for "
                          "examples")
    with open(path, encoding="utf-8") as f:
        return load_recipe_text(f.read(), path, overrides)
