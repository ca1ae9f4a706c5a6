"""The search space: a :class:`Candidate` is per-layer sparsity, weight
bits, a conversion mode and optional post-training steps, written as the
recipe stages that build it (so the chosen one reruns with
``tfcompress run``).

>>> c = Candidate(sparsity=(("conv1", 0.5), ("fc1", 0.9)), weight_bits=4)
>>> c.label, [next(iter(s)) for s in c.stages(epochs=1)]
('p_w4_int8', ['prune', 'qat', 'convert'])
"""

from __future__ import annotations

import dataclasses

# conversion modes, most compact first; float32 is the reference
MODES = ("int8", "int16x8", "float16", "float32")
# post-training steps tune can use when tfcompress.ptq is installed
PTQ_STEPS = ("equalize", "correct_bias", "adaround")
# magnitude-pruning levels a layer is analysed (and pruned) at
SPARSITIES = (0.5, 0.75, 0.9, 0.95)
# fractions of channels removed (channel pruning + shrink) when the
# objective is latency: fewer channels are fewer MACs, where zeros in a
# dense int8 kernel are not
CHANNEL_SPARSITIES = (0.25, 0.5, 0.75)


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One point of the search space.

    ``sparsity``: sorted ``(layer, final sparsity)`` pairs (dense layers
    left out); ``weight_bits``: 8, or 4 (learned by one epoch of 4-bit
    QAT, or by AdaRound when ``"adaround"`` is in ``ptq``); ``mode``:
    the conversion mode; ``ptq``: post-training steps applied to the
    float model (before QAT and conversion); ``level``: the sparsity
    level's rank (labels only);
    ``float_layers``: layers kept float32 in the int8 flatbuffer;
    ``eight_bit``: with 4-bit weights, layers whose weights stay 8-bit
    (QAT ``layer_bits``); ``channels``: the fraction of channels removed
    first (a ``channel_prune`` stage: pruned while fine-tuning, then
    shrunk away).

    ``stages()`` gives the recipe stages that build the candidate:

    >>> c = Candidate(sparsity=(("fc1", 0.9), ("fc2", 0.5)), weight_bits=4,
    ...               level=3, eight_bit=("logits",))
    >>> c.label
    'p3_w4_8bit-logits_int8'
    >>> [next(iter(stage)) for stage in c.stages()]
    ['prune', 'qat', 'convert']
    >>> c.stages()[0]["prune"]["layer_sparsity"]
    {'fc1': 0.9, 'fc2': 0.5}
    >>> c.to_dict()["layer_bits"]
    {'logits': 8}
    >>> Candidate(mode="float32").label  # the float reference
    'float32'
    >>> c = Candidate(channels=0.5)
    >>> c.label, [next(iter(stage)) for stage in c.stages()]
    ('c50_int8', ['channel_prune', 'convert'])
    """
    sparsity: tuple = ()
    weight_bits: int = 8
    mode: str = "int8"
    ptq: tuple = ()
    level: int = -1
    float_layers: tuple = ()
    eight_bit: tuple = ()
    channels: float = 0.0

    @property
    def label(self):
        parts = [f"c{round(self.channels * 100)}"] if self.channels else []
        if self.sparsity:
            parts.append(f"p{self.level}" if self.level >= 0 else "p")
        if self.weight_bits != 8:
            parts.append(f"w{self.weight_bits}")
        if self.eight_bit:
            parts.append("8bit-" + "+".join(self.eight_bit))
        parts += list(self.ptq)
        parts.append(self.mode)
        if self.float_layers:
            parts.append("float-" + "+".join(self.float_layers))
        return "_".join(parts)

    def to_dict(self):
        out = {"sparsity": dict(self.sparsity),
               "weight_bits": self.weight_bits, "mode": self.mode,
               "ptq": list(self.ptq), "label": self.label}
        if self.float_layers:
            out["float_layers"] = list(self.float_layers)
        if self.eight_bit:
            out["layer_bits"] = {n: 8 for n in self.eight_bit}
        if self.channels:
            out["channels"] = self.channels
        return out

    def stages(self, epochs=1, calibration_samples=200):
        """The recipe stages that build this candidate (unvalidated)."""
        out = []
        if self.channels:
            out.append({"channel_prune": {"sparsity": float(self.channels),
                                          "epochs": epochs}})
        if self.sparsity:
            out.append({"prune": {
                "final_sparsity": 0.0, "epochs": epochs,
                "layer_sparsity": {n: float(s) for n, s in self.sparsity}}})
        learned_rounding = "adaround" in self.ptq
        if self.ptq:
            # on the float model: the steps change no QAT model
            out.append({"ptq": {"steps": list(self.ptq),
                                "weight_bits": self.weight_bits,
                                "samples": calibration_samples}})
        if self.weight_bits != 8 and not learned_rounding:
            out.append({"qat": {"scheme": "n_bit",
                                "weight_bits": self.weight_bits,
                                "activation_bits": 8,
                                "preserve_sparsity": bool(self.sparsity),
                                **({"layer_bits": {n: 8 for n in
                                                   self.eight_bit}}
                                   if self.eight_bit else {}),
                                "epochs": epochs}})
        out.append({"convert": {"mode": self.mode,
                                "samples": calibration_samples,
                                **({"float_layers": list(self.float_layers)}
                                   if self.float_layers else {}),
                                **({"strict": False}
                                   if self.mode not in ("int8", "int16x8")
                                   else {})}})
        return out


def most_sensitive_layers(sensitivity, budget, limit=2):
    """The layers to keep float when int8 loses too much: those whose
    8-bit weights alone cost more than half the ``budget`` (points), at
    most ``limit``, worst first; else the single worst layer (by its 8-bit,
    then 4-bit drop). Empty when the analysis has no 8-bit row.

    >>> from tfcompress.analyze.sensitivity import SensitivityResult
    >>> r = SensitivityResult("accuracy", 0.9, [], [8, 4], {},
    ...     {"a": {8: 0.9, 4: 0.8}, "b": {8: 0.89, 4: 0.85}}, 10)
    >>> most_sensitive_layers(r, budget=1.0)
    ('b',)
    """
    return _worst_layers(sensitivity, 8, budget, limit)


def four_bit_sensitive_layers(sensitivity, budget, limit=2):
    """The layers to keep at 8-bit weights when 4-bit weights lose too
    much: those whose 4-bit weights alone cost more than half the
    ``budget`` (points), at most ``limit``, worst first; else the single
    worst. Empty when the analysis has no 4-bit row.

    >>> from tfcompress.analyze.sensitivity import SensitivityResult
    >>> r = SensitivityResult("accuracy", 0.9, [], [8, 4], {},
    ...     {"a": {8: 0.9, 4: 0.8}, "b": {8: 0.89, 4: 0.898}}, 10)
    >>> four_bit_sensitive_layers(r, budget=1.0)
    ('a',)
    """
    return _worst_layers(sensitivity, 4, budget, limit)


def _worst_layers(sensitivity, bits, budget, limit):
    """Layers whose ``bits``-bit weights alone cost more than half the
    budget, worst first (ties by the other bit widths), at most
    ``limit``; else the single worst; empty without a ``bits`` row."""
    rows = {n: row for n, row in sensitivity.quantized.items()
            if bits in row}
    if not rows:
        return ()

    def drops(name):
        row = rows[name]
        order = [bits] + sorted((b for b in row if b != bits), reverse=True)
        return tuple((sensitivity.baseline - row[b]) * 100 for b in order)
    worst = sorted(rows, key=drops, reverse=True)
    over = [n for n in worst if drops(n)[0] > budget / 2]
    return tuple(over[:limit] or worst[:1])


def sparsity_levels(sensitivity, weights, budget,
                    drops=(0.5, 1, 2, 4, 8, 16, 32, 64, 100)):
    """Per-layer sparsities of increasing aggressiveness from a sensitivity
    analysis: for each tolerated single-layer drop ``budget * d`` (points),
    every layer takes the highest analysed sparsity whose drop alone stays
    within it (:func:`tfcompress.analyze.propose_sparsities`); the last
    level prunes every layer to the highest analysed sparsity.

    Returns distinct levels (``((layer, sparsity), ...)`` tuples), sorted
    by the number of weights they zero (``weights``: layer -> count).
    Fine-tuning recovers much of what one-shot pruning loses, so the
    search goes well past ``budget``.
    """
    from tfcompress.analyze import propose_sparsities
    found = {}
    top = max(sensitivity.sparsities)
    for d in drops:
        proposal = propose_sparsities(sensitivity, max_drop=budget * d)
        level = tuple(sorted((n, float(s)) for n, s in proposal.items()
                             if s > 0))
        if level:
            found[level] = None
    found[tuple(sorted((n, float(top)) for n in sensitivity.pruned))] = None

    def zeros(level):
        return sum(weights.get(n, 0) * s for n, s in level)
    return sorted(found, key=zeros)
