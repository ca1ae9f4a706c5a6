"""Which compression operations work on which keras.applications family.

For each family of ``tfcompress.utils.zoo.FAMILIES`` (smallest width and
input, ``weights=None``, 10 classes) every registered operation runs on a
fresh model and returns a short status: ``ok (details)``, or the exact
error message. tfmot 0.8.1 runs the same operations on
``tf_keras.applications`` in a subprocess (it needs tf_keras).

Writes benchmarks/results/zoo_coverage.json and .md, and
docs/zoo_coverage.md.

    nice -n 10 python benchmarks/zoo_coverage.py --jobs 1
    python benchmarks/zoo_coverage.py --families MobileNetV2 --no-tfmot
    # a few families, the other rows kept from the previous table
    python benchmarks/zoo_coverage.py --merge --families ConvNeXtTiny
    # a few columns of a few families, every other cell kept
    python benchmarks/zoo_coverage.py --merge --no-tfmot \
        --columns "PTQ int8" "QAT int8" --families MobileNet VGG16

More columns: write ``def my_op(model) -> str`` (raise on failure) and
append ``("column name", my_op)`` to ``OPERATIONS``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# the command line as run (with its niceness), for the table's header
NICE = os.nice(0)
COMMAND = ((f"nice -n {NICE} " if NICE else "")
           + "python benchmarks/zoo_coverage.py " + " ".join(
               shlex.quote(a) for a in sys.argv[1:]
               if not a.startswith("--tfmot-")))
SPARSITY = 0.5
CLUSTERS = 8


def random_data(model, n=2, seed=0):
    """``(x, y, labels)``: ``n`` random images and targets for the
    model's output (class labels if ``labels``, else values of the
    output's shape: feature maps of ``include_top=False``)."""
    import numpy as np
    from tfcompress.quantize.zoo import random_targets
    rng = np.random.default_rng(seed)
    x = rng.random((n,) + tuple(model.input_shape[1:]), dtype=np.float32)
    return (x * 255.0, *random_targets(model, n, rng))


def fit_one_step(model, keras_module, callbacks=()):
    """One training step on random data (eager: tracing a whole zoo
    model's train step costs more than the step)."""
    x, y, labels = random_data(model)
    losses = keras_module.losses
    model.compile(keras_module.optimizers.SGD(1e-3),
                  losses.SparseCategoricalCrossentropy(from_logits=True)
                  if labels else losses.MeanSquaredError(),
                  run_eagerly=True)
    model.fit(x, y, batch_size=len(x), epochs=1, verbose=0,
              callbacks=list(callbacks))


def kernel_sparsity(values):
    import numpy as np
    return float(np.mean(np.asarray(values) == 0))


# -- tfcompress operations ------------------------------------------------

def prune_op(model) -> str:
    """Magnitude pruning to 50%: every pruned kernel reaches it."""
    import keras
    from tfcompress import prune
    from tfcompress.utils.layer_map import iter_layers
    pruned = prune.prune_low_magnitude(
        model, prune.ConstantSparsity(SPARSITY, 0, frequency=1))
    names = [l.layer.name for l in iter_layers(pruned)
             if isinstance(l, prune.PruneLowMagnitude)]
    fit_one_step(pruned, keras, [prune.UpdatePruningStep()])
    plain = prune.strip_pruning(pruned)
    layers = {l.name: l for l in iter_layers(plain)}
    low = [n for n in names if kernel_sparsity(
        prune.get_prunable_weights(layers[n])[0]) < SPARSITY - 0.01]
    if low:
        raise AssertionError(f"{len(low)} kernels below {SPARSITY:.0%}: "
                             f"{low[:3]}")
    return f"ok ({len(names)} layers at {SPARSITY:.0%})"


def cluster_op(model) -> str:
    """Weight clustering: every clustered kernel keeps <= CLUSTERS
    values."""
    import keras
    import numpy as np
    from tfcompress import cluster
    from tfcompress.prune import get_prunable_weights
    from tfcompress.utils.layer_map import iter_layers
    wrapped = cluster.cluster_weights(model, CLUSTERS)
    names = [l.layer.name for l in iter_layers(wrapped)
             if isinstance(l, cluster.ClusterWeights)]
    fit_one_step(wrapped, keras)
    plain = cluster.strip_clustering(wrapped)
    layers = {l.name: l for l in iter_layers(plain)}
    worst = max(np.unique(np.asarray(get_prunable_weights(layers[n])[0]))
                .size for n in names)
    if worst > CLUSTERS:
        raise AssertionError(f"a kernel keeps {worst} distinct values")
    return f"ok ({len(names)} layers, <= {CLUSTERS} values each)"


SHRINK_TOLERANCE = 5e-3


def channel_op(model) -> str:
    """Channel pruning at 50% per space, then shrink: same outputs as the
    masked model, fewer parameters; frozen spaces counted by reason."""
    import keras
    import numpy as np
    from tfcompress import prune
    spaces = prune.channel_spaces(model)
    cb = prune.ChannelPruning(prune.ConstantSparsity(SPARSITY, 0))
    fit_one_step(model, keras, [cb])
    small = prune.shrink(model)
    x = random_data(model, seed=1)[0]
    # direct calls: predict() compiles each model with XLA, whose float
    # rounding differs from one graph to the other by more than the bound
    a = np.asarray(model(x, training=False))
    b = np.asarray(small(x, training=False))
    if a.shape != b.shape:
        raise AssertionError(f"output shape {b.shape} != {a.shape}")
    err = float(np.max(np.abs(a - b)) / (np.max(np.abs(a)) + 1e-12))
    # float32 sums in another order over ~50 layers: 7.8e-4 seen on an AMD
    # EPYC (oneDNN blocks the narrower convolutions differently); a wrong
    # channel moves the logits by their own size
    if err > SHRINK_TOLERANCE:
        raise AssertionError(f"shrunk model differs: relative error {err:.2g}")
    frozen = [s for s in spaces if not s.prunable]
    reasons = sorted({_reason_kind(s.frozen) for s in frozen})
    return (f"ok ({len(spaces) - len(frozen)}/{len(spaces)} spaces, params "
            f"{small.count_params() / model.count_params():.0%}; frozen: "
            f"{', '.join(reasons) or 'none'})")


def _reason_kind(why: str) -> str:
    """A frozen reason without the layer name: ``is a model output``."""
    if " (" in why and ") " in why:
        return why[why.index(" (") + 1:]
    return why.split(" ", 1)[1] if " " in why else why


# samples used for QAT training, calibration and the TFLite check
CONVERT_SAMPLES = 16


def _int8_cell(status, kinds) -> str:
    """A cell for a :mod:`tfcompress.quantize.zoo` status, naming the
    layers (``kinds``: layer name -> class name) of the float ops and of
    those QAT kept float; raises when the conversion failed."""
    if status["status"] == "error":
        raise RuntimeError(f"{status.get('stage', 'convert')}: "
                           f"{status['error']}")
    ops = sum(status["ops"].values())
    kept = status.get("kept_float") or []
    kept = (f"; kept float by QAT: {len(kept)} layers "
            f"({_count_kinds(kept, kinds)})" if kept else "")
    if status["status"] == "ok":
        return f"ok (fully integer, {ops} ops{kept})"
    by_op = {}   # float_ops rows read "OP (layer)"
    for row in status["float_ops"]:
        op, _, layer = row.partition(" (")
        by_op.setdefault(op, []).append(layer[:-1])
    where = "; ".join(f"{op} in {_count_kinds(layers, kinds)} "
                      f"({_some(sorted(layers))})"
                      for op, layers in sorted(by_op.items()))
    return (f"strict fails: {status['float_op_count']} float ops: "
            f"{where}{kept}; strict=False converts ({ops} ops) and lists "
            "them")


def _count_kinds(layers, kinds):
    """``23 LayerNormalization, 18 LayerScale``."""
    import collections
    counts = collections.Counter(kinds.get(l, "not a layer of the model")
                                 for l in layers)
    return ", ".join(f"{n} {kind}" for kind, n in counts.most_common())


def _some(names, shown=2):
    more = len(names) - shown
    return ", ".join(names[:shown]) + (f", ... {more} more" if more > 0
                                       else "")


def _layer_kinds(model):
    """{layer name: class name} of every layer of ``model``."""
    from tfcompress.utils.layer_map import iter_layers
    return {l.name: type(l).__name__ for l in iter_layers(model)}


def qat_int8_op(model) -> str:
    """quantize_model -> 2 QAT steps -> strict int8: fully integer, or
    the float ops strict conversion names."""
    from tfcompress.quantize import zoo
    return _int8_cell(zoo.try_qat_convert(
        model, steps=2, batch_size=8, samples=CONVERT_SAMPLES),
        _layer_kinds(model))


def ptq_int8_op(model) -> str:
    """Post-training strict int8 of the float model."""
    from tfcompress.quantize import zoo
    return _int8_cell(zoo.try_ptq_convert(model, samples=CONVERT_SAMPLES),
                      _layer_kinds(model))


OPERATIONS = [("prune", prune_op), ("cluster", cluster_op),
              ("channel prune + shrink", channel_op),
              ("PTQ int8", ptq_int8_op), ("QAT int8", qat_int8_op)]


def status_of(fn, family, build) -> str:
    try:
        return fn(build(family))
    except Exception as e:   # the table records every failure verbatim
        lines = str(e).strip().splitlines() or [""]
        return f"{type(e).__name__}: {lines[0]}"


def run_tfcompress(families, operations=None, rows=None, on_cell=None):
    """Fills ``rows[family][column]``; calls ``on_cell()`` after each
    cell (to write what an interrupted run reached)."""
    from tfcompress.utils.zoo import build
    rows = {} if rows is None else rows
    for family in families:
        rows[family] = {}
        for column, fn in OPERATIONS if operations is None else operations:
            t = time.perf_counter()
            rows[family][column] = status_of(fn, family, build)
            print(f"{family:24s} {column:24s} "
                  f"{time.perf_counter() - t:6.1f}s "
                  f"{rows[family][column]}", file=sys.stderr, flush=True)
            if on_cell:
                on_cell()
    return rows


# -- tfmot side (subprocess, tf_keras) -------------------------------------

def tfmot_prune_op(model) -> str:
    import tensorflow_model_optimization as tfmot
    import tf_keras
    sparsity = tfmot.sparsity.keras
    pruned = sparsity.prune_low_magnitude(
        model, pruning_schedule=sparsity.ConstantSparsity(
            SPARSITY, begin_step=0, frequency=1))
    fit_one_step(pruned, tf_keras, [sparsity.UpdatePruningStep()])
    plain = sparsity.strip_pruning(pruned)
    kernels = [l.kernel for l in plain.layers if hasattr(l, "kernel")
               and not isinstance(l, tf_keras.layers.DepthwiseConv2D)]
    reached = sum(kernel_sparsity(k) >= SPARSITY - 0.01 for k in kernels)
    return f"ok ({reached}/{len(kernels)} kernels at {SPARSITY:.0%})"


def tfmot_cluster_op(model) -> str:
    import tensorflow_model_optimization as tfmot
    import tf_keras
    clustering = tfmot.clustering.keras
    wrapped = clustering.cluster_weights(
        model, number_of_clusters=CLUSTERS,
        cluster_centroids_init=clustering.CentroidInitialization
        .KMEANS_PLUS_PLUS)
    fit_one_step(wrapped, tf_keras)
    clustering.strip_clustering(wrapped)
    return "ok"


def tfmot_channel_op(model) -> str:
    raise NotImplementedError("tfmot 0.8.1 has no channel pruning")


def tfmot_qat_op(model) -> str:
    """tfmot ``quantize_model`` -> one step -> TFLite converter with int8
    builtin ops only (strict)."""
    import tensorflow as tf
    import tensorflow_model_optimization as tfmot
    import tf_keras
    qat = tfmot.quantization.keras.quantize_model(model)
    fit_one_step(qat, tf_keras)
    x = random_data(model, n=CONVERT_SAMPLES)[0]
    converter = tf.lite.TFLiteConverter.from_keras_model(qat)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: (
        [x[i:i + 1]] for i in range(len(x)))
    converter.target_spec.supported_ops = [
        tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    flat = converter.convert()
    return f"ok (fully integer, {len(flat) // 1024} KiB)"


TFMOT_OPERATIONS = [("tfmot prune", tfmot_prune_op),
                    ("tfmot cluster", tfmot_cluster_op),
                    ("tfmot channel prune", tfmot_channel_op),
                    ("tfmot QAT int8", tfmot_qat_op)]


def tfmot_main(families, out=None, columns=None):
    """Runs in the subprocess: prints one JSON object (and writes it to
    ``out`` after each family); ``columns``: the tfmot columns to run
    (default all)."""
    import tensorflow_model_optimization as tfmot
    import tf_keras
    from tfcompress.utils.atomic import atomic_write_text
    from tfcompress.utils.zoo import build
    rows = {}
    for family in families:
        rows[family] = {}
        for column, fn in TFMOT_OPERATIONS:
            if columns and column not in columns:
                continue
            rows[family][column] = status_of(
                fn, family, lambda f: build(f, keras_module=tf_keras))
            print(f"{family:24s} {column:24s} {rows[family][column]}",
                  file=sys.stderr, flush=True)
        if out:
            atomic_write_text(out, json.dumps(
                {"tfmot": tfmot.__version__, "rows": rows}))
    print(json.dumps({"tfmot": tfmot.__version__, "rows": rows}))


def collect(args, folder):
    """Table from the partial results of an interrupted run: the job files
    ``part*.json`` and ``tfmot.json`` in ``folder``, and with ``--log``
    the progress lines of the run's stderr (both sides); with ``--merge``
    the other families' rows of the previous table. Cells not reached
    say so."""
    import glob
    import re
    import keras
    import tensorflow as tf
    done, gathered = {}, []
    for path in sorted(glob.glob(os.path.join(folder, "part*.json"))):
        with open(path) as f:
            part = json.load(f)
        done.update(part["rows"])
        if part.get("command"):
            gathered.append(part["command"])
    ours = [c for c, _ in OPERATIONS]
    theirs = [c for c, _ in TFMOT_OPERATIONS]
    ran = args.columns or ours + theirs
    previous = _previous_table(args) if args.merge else {}
    columns = table_columns(ran, previous)
    versions = f"TF {tf.__version__}, Keras {keras.__version__}"
    tfmot_path = os.path.join(folder, "tfmot.json")
    log = args.log or args.tfmot_log
    if log:
        # progress lines: family, column, [seconds (tfcompress side)],
        # status
        with open(log) as f:
            for line in f:
                family, column = line[:24].strip(), line[25:49].strip()
                if family not in args.families:
                    continue
                if column in theirs:
                    done.setdefault(family, {})[column] = \
                        line[50:].rstrip("\n")
                elif column in ours:
                    timed = re.match(r"\s*[0-9.]+s (.*)$", line[49:])
                    if timed:
                        done.setdefault(family, {})[column] = timed.group(1)
        versions += ", tfmot 0.8.1 (tf_keras)"
    elif os.path.exists(tfmot_path):
        with open(tfmot_path) as f:
            side = json.load(f)
        versions += f", tfmot {side['tfmot']} (tf_keras)"
        for family, row in side["rows"].items():
            done.setdefault(family, {}).update(row)
    order = family_order() if args.merge else list(args.families)
    if "tfmot" not in versions and any(c.startswith("tfmot")
                                       for c in columns):
        versions += ", tfmot 0.8.1 (tf_keras)"
    table = merge(previous, done, args.families, ran, columns, order,
                  {"command": COMMAND, "seconds": None,
                   "gathered": gathered})
    print(write(args, table, columns, versions, 0.0))


def family_order():
    from tfcompress.utils.zoo import FAMILIES
    return list(FAMILIES)


def run_tfmot(families, folder, columns):
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1",
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH",
                                                              ""))
    done = subprocess.run([sys.executable, os.path.abspath(__file__),
                           "--tfmot-side", "--tfmot-out",
                           os.path.join(folder, "tfmot.json"),
                           "--families", *families, "--columns", *columns],
                          stdout=subprocess.PIPE, env=env, text=True)
    if done.returncode != 0:
        msg = f"tfmot side failed (exit {done.returncode})"
        return "?", {f: {c: msg for c in columns} for f in families}
    out = json.loads(done.stdout.strip().splitlines()[-1])
    return out["tfmot"], out["rows"]


# -- output -----------------------------------------------------------------

def markdown(table, columns, versions):
    def cell(text):
        return text.replace("|", "\\|").replace("\n", " ")
    rows = table["rows"]
    lines = [
        "# keras.applications coverage: pruning, clustering, channel "
        "pruning, int8",
        "",
        "Generated by the commands below (do not edit by hand), each "
        f"with the cells it wrote; {versions}.",
        "",
        *provenance_lines(table, columns),
        "",
        "Each family at its smallest configuration (tfcompress.utils.zoo: "
        "smallest width multiplier, smallest input it accepts, "
        "`weights=None`, 10 classes, logits). Each operation runs on a "
        "fresh model with one training step on random data:",
        "",
        f"- **prune**: `prune_low_magnitude` (default prunable set, "
        f"depthwise left dense) at {SPARSITY:.0%}, `UpdatePruningStep`, "
        "`strip_pruning`; every pruned kernel reaches the target.",
        f"- **cluster**: `cluster_weights` with {CLUSTERS} clusters, "
        "`strip_clustering`; every clustered kernel keeps at most "
        f"{CLUSTERS} distinct values.",
        f"- **channel prune + shrink**: `ChannelPruning` at {SPARSITY:.0%} "
        "of each prunable channel space, `shrink`; the shrunk model's "
        "outputs equal the masked model's, output shape kept; params = "
        "shrunk/original; frozen = why the other spaces keep their "
        "channels.",
        "- **PTQ int8**: `convert(model, \"int8\", strict=True)` of the "
        f"float model, calibrated on {CONVERT_SAMPLES} random inputs: fully "
        "integer, or the float ops strict conversion names, per op with "
        "the Keras layers they come from (counted by class, the first "
        "named), then `strict=False` converts and lists them.",
        "- **QAT int8**: `quantize_model`, 2 QAT steps, then the same "
        "strict int8 conversion; layers QAT keeps float (no int8 TFLite "
        "kernel) are counted by class.",
        "- **tfmot** columns: the same through tfmot on "
        "`tf_keras.applications` (tfmot's messages verbatim); tfmot QAT "
        "int8 = tfmot `quantize_model`, one step, the TFLite converter "
        "with int8 builtin ops only.",
        "- A cell not run in the latest invocation (another family, or a "
        "column left out of `--columns`) is kept from the previous table "
        "(`--merge`); `not run` cells say why (time limit, or a row older "
        "than the column).",
        "",
        "| family | " + " | ".join(columns) + " |",
        "|" + "---|" * (len(columns) + 1),
    ]
    for family, row in rows.items():
        lines.append(f"| {family} | " + " | ".join(
            cell(row.get(c, "")) for c in columns) + " |")
    return "\n".join(lines) + "\n"


EARLIER = ("earlier invocations, before the table recorded which command "
           "wrote each cell (the last of them: `{}`; the others are in the "
           "git history of benchmarks/results/zoo_coverage.json)")


def provenance_lines(table, columns):
    """One line per command of ``table["commands"]``: the command and the
    cells it wrote (``cols of families; ...``)."""
    lines = []
    for i, source in enumerate(table["commands"]):
        groups = {}
        for family, row in table["sources"].items():
            mine = tuple(c for c in columns if row.get(c) == i)
            if mine:
                groups.setdefault(mine, []).append(family)
        cells = "; ".join(
            ("all columns" if list(cols) == list(columns)
             else ", ".join(cols)) + " of " + ", ".join(families)
            for cols, families in groups.items())
        if source.get("earlier"):
            what = EARLIER.format(source["command"])
        else:
            what = f"`{source['command']}`"
            if source.get("gathered"):
                what += " gathering the results of " + ", ".join(
                    f"`{c}`" for c in source["gathered"])
            if source.get("seconds"):
                what += f" ({source['seconds']:.0f} s)"
        lines.append(f"- {what}: {cells}.")
    return lines


def merge(previous, fresh, families, ran, columns, order, command):
    """The table: ``rows`` (``{family: {column: cell}}``), ``sources``
    (``{family: {column: index in commands or None}}``) and ``commands``.

    The ``ran`` columns of ``families`` come from ``fresh`` (this
    invocation, ``command``; a cell it did not reach is NOT_RUN); every
    other cell of the families of ``order`` is kept from ``previous``
    (the previous table's JSON, ``{}`` without --merge) with its source,
    NOT_RUN_OLD where it has none. Commands no cell comes from are
    dropped.

    >>> t = merge({}, {"A": {"x": "ok"}}, ["A"], ["x"], ["x"], ["A"],
    ...           {"command": "run"})
    >>> t["rows"], t["sources"], t["commands"]
    ({'A': {'x': 'ok'}}, {'A': {'x': 0}}, [{'command': 'run'}])
    """
    commands, sources_before = _provenance(previous)
    before = previous.get("rows", {})
    commands = commands + [command]
    new = len(commands) - 1
    rows, sources = {}, {}
    for family in order:
        if family not in families and family not in before:
            continue
        old, old_source = before.get(family, {}), sources_before.get(
            family, {})
        rows[family], sources[family] = {}, {}
        for c in columns:
            if family in families and c in ran:
                cell = fresh.get(family, {}).get(c, NOT_RUN)
                source = new
            elif c in old:
                cell, source = old[c], old_source.get(c)
            else:
                cell, source = NOT_RUN_OLD, None
            rows[family][c], sources[family][c] = cell, source
    used = sorted({i for row in sources.values() for i in row.values()
                   if i is not None})
    number = {i: k for k, i in enumerate(used)}
    return {"rows": rows,
            "sources": {f: {c: number.get(i) for c, i in row.items()}
                        for f, row in sources.items()},
            "commands": [commands[i] for i in used]}


def _provenance(previous):
    """``(commands, sources)`` of a previous table; one written before
    tables recorded them gets a single ``earlier`` command for every cell
    but the NOT_RUN_OLD ones."""
    if not previous:
        return [], {}
    if "sources" in previous:
        return list(previous["commands"]), previous["sources"]
    sources = {f: {c: None if cell == NOT_RUN_OLD else 0
                   for c, cell in row.items()}
               for f, row in previous["rows"].items()}
    return [{"command": previous.get("command"), "seconds": None,
             "earlier": True}], sources


def table_columns(ran, previous):
    """The table's columns in OPERATIONS order: those run now and, with
    --merge, the previous table's."""
    keep = set(ran) | set(previous.get("columns", []))
    return [c for c, _ in OPERATIONS + TFMOT_OPERATIONS if c in keep]


def main():
    from tfcompress.utils.zoo import FAMILIES
    ap = argparse.ArgumentParser()
    ap.add_argument("--families", nargs="*", default=list(FAMILIES))
    ap.add_argument("--no-tfmot", action="store_true")
    ap.add_argument("--jobs", type=int, default=1,
                    help="processes sharing the families (plus tfmot's)")
    ap.add_argument("--tfmot-side", action="store_true",
                    help=argparse.SUPPRESS)
    ap.add_argument("--tfmot-out", help=argparse.SUPPRESS)
    ap.add_argument("--tfmot-log", help="with --collect: the stderr of "
                    "the interrupted run (tfmot progress lines)")
    ap.add_argument("--log", help="with --collect: the stderr of the "
                    "interrupted run (progress lines of both sides)")
    ap.add_argument("--collect", metavar="DIR",
                    help="write the table from an interrupted run's "
                    "partial results in DIR")
    ap.add_argument("--columns", nargs="+", metavar="NAME",
                    help="run only these columns (tfcompress and/or tfmot "
                    "side), e.g. 'PTQ int8' 'tfmot QAT int8'; default all")
    ap.add_argument("--merge", action="store_true",
                    help="keep every cell of the table at --out that this "
                    "invocation does not run (other families, other "
                    "columns) and regenerate the whole table")
    ap.add_argument("--out", default=os.path.join(HERE, "results",
                                                  "zoo_coverage"))
    ap.add_argument("--docs", default=os.path.join(ROOT, "docs",
                                                   "zoo_coverage.md"))
    args = ap.parse_args()
    known = [c for c, _ in OPERATIONS + TFMOT_OPERATIONS]
    unknown = [c for c in args.columns or [] if c not in known]
    if unknown:
        ap.error(f"unknown --columns {unknown}; choose among {known}")
    if args.tfmot_side:
        return tfmot_main(args.families, args.tfmot_out, args.columns)
    if args.collect:
        return collect(args, args.collect)
    t0 = time.perf_counter()
    import tempfile
    folder = tempfile.mkdtemp(prefix="zoo_coverage_")
    print(f"partial results in {folder} (see --collect)", file=sys.stderr)
    ours = [(c, fn) for c, fn in OPERATIONS
            if not args.columns or c in args.columns]
    theirs = [] if args.no_tfmot else [
        c for c, _ in TFMOT_OPERATIONS
        if not args.columns or c in args.columns]
    tfmot_proc = None
    if theirs:
        import concurrent.futures
        pool = concurrent.futures.ThreadPoolExecutor(1)
        tfmot_proc = pool.submit(run_tfmot, args.families, folder, theirs)
    import keras
    import tensorflow as tf
    previous = _previous_table(args) if args.merge else {}
    ran = [c for c, _ in ours] + theirs
    columns = table_columns(ran, previous)
    versions = f"TF {tf.__version__}, Keras {keras.__version__}"
    if any(c.startswith("tfmot") for c in columns):
        versions += ", tfmot 0.8.1 (tf_keras)"
    order = list(FAMILIES) if args.merge else list(args.families)
    rows = {}

    def table():
        """This run's cells (tfmot's as far as it got); with --merge every
        other cell of the previous table."""
        side = _tfmot_partial(folder)
        fresh = {f: dict(rows.get(f, {}), **side.get(f, {}))
                 for f in args.families}
        return merge(previous, fresh, args.families, ran, columns, order,
                     {"command": COMMAND,
                      "seconds": round(time.perf_counter() - t0, 1)})

    if args.jobs > 1 and ours:
        done = run_jobs(args.families, args.jobs, folder,
                        [c for c, _ in ours])
        rows.update({f: done[f] for f in args.families if f in done})
    def write_now():
        write(args, table(), columns, versions, time.perf_counter() - t0)

    for family in args.families:   # written after each cell
        if family not in rows:
            run_tfcompress([family], ours, rows=rows, on_cell=write_now)
        write_now()
    if tfmot_proc is not None:
        tfmot_version, tfmot_rows = tfmot_proc.result()
        for family in args.families:
            rows[family].update(tfmot_rows.get(family, {}))
    print(write(args, table(), columns, versions, time.perf_counter() - t0))


NOT_RUN = "not run (stopped at the time limit)"
# a row kept from an earlier table (--merge) that predates the column
NOT_RUN_OLD = "not run (row from an earlier run without this column)"


def _previous_table(args):
    """The JSON of the table at ``--out`` (for --merge), or {}."""
    path = args.out + ".json"
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)


def _tfmot_partial(folder):
    """The tfmot side's rows written so far (it writes after each
    family)."""
    path = os.path.join(folder, "tfmot.json")
    try:
        with open(path) as f:
            return json.load(f)["rows"]
    except (OSError, ValueError):
        return {}


def run_jobs(families, jobs, folder, columns):
    """Runs the tfcompress columns in ``jobs`` subprocesses writing to
    ``folder``; returns the rows of the families they finished."""
    procs = []
    for i in range(jobs):
        part = families[i::jobs]
        if not part:
            continue
        out = os.path.join(folder, f"part{i}")
        procs.append((out, subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--no-tfmot",
             "--columns", *columns, "--families", *part, "--out", out, "--docs", out + "_doc.md"])))
    rows = {}
    for out, proc in procs:
        proc.wait()
        if os.path.exists(out + ".json"):
            with open(out + ".json") as f:
                rows.update(json.load(f)["rows"])
    return rows


def write(args, table, columns, versions, seconds):
    """Writes ``table`` (a :func:`merge` result) as JSON and markdown."""
    from tfcompress.utils.atomic import atomic_write_text
    atomic_write_text(args.out + ".json", json.dumps(
        {"command": COMMAND, "versions": versions, "seconds": seconds,
         "columns": columns, **table}, indent=1) + "\n")
    text = markdown(table, columns, versions)
    atomic_write_text(args.out + ".md", text)
    atomic_write_text(args.docs, text)
    return text

if __name__ == "__main__":
    from tfcompress.quiet import filter_native_stderr_live
    filter_native_stderr_live()   # TensorFlow's log lines, not the figures
    main()
