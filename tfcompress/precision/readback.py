"""What a per-op precision model really is: each op's precision read from the file, and who runs it.

`found` is read from the tensors the op reads: int4 weights with int8 activations
are `int4`, int4 weights with float activations `int4w`, int16 activations
`int16x8`, int8 / uint8 activations `int8`, float activations `float` (whatever
the plan asked). `runs_on` comes from the interpreter itself: the model is prepared
in LiteRT with the default resolver (builtin kernels + XNNPACK); every op inside a
node the XNNPACK delegate took over runs there, the others on the builtin kernels.
It is also prepared with the builtin resolver (no delegate), so the report says
whether the model runs without XNNPACK too.
"""

from __future__ import annotations

from typing import Any, Sequence

from tfcompress.errors import ConversionError
from tfcompress.export.report import OpPrecisionRow, PrecisionInfo
from tfcompress.export.tflite_model import FLOAT_DTYPES, OperatorInfo, TfliteModel
from tfcompress.types import PrecisionRule

XNNPACK = "XNNPACK"
BUILTIN = "builtin"


def found_precision(tfl: TfliteModel, op: OperatorInfo) -> tuple[str, str, str | None]:
    """(precision, activation dtype, weight dtype) of `op` as stored in the file."""
    tensors = tfl.subgraphs[op.subgraph].tensors
    weights = [tensors[i] for i, const in zip(op.inputs, op.constant_inputs)
               if const and i >= 0 and tensors[i].dtype not in ("int32", "int64")]
    weight = max(weights, key=lambda t: t.num_elements).dtype if weights else None
    act = op.compute_dtype
    if op.op_type in ("QUANTIZE", "DEQUANTIZE"):
        return f"{act}->{op.output_dtypes[0] if op.output_dtypes else '?'}", act, weight
    if weight == "int4":
        return ("int4w" if act in FLOAT_DTYPES else "int4"), act, weight
    if act == "int16":
        return "int16x8", act, weight
    if act in ("int8", "uint8"):
        return "int8", act, weight
    if act in FLOAT_DTYPES:
        return "float", act, weight
    return act or "-", act, weight


def delegated_ops(tflite: bytes) -> tuple[dict[str, bool], set[int]]:
    """(which resolvers prepare the model, indices of the ops the default XNNPACK delegate took over)."""
    from tfcompress.runtime import make_interpreter

    prepares: dict[str, bool] = {}
    taken: set[int] = set()
    for resolver in ("default", "builtin"):
        try:
            interpreter = make_interpreter(tflite, resolver=resolver)
        except (RuntimeError, ValueError):
            prepares[resolver] = False
            continue
        prepares[resolver] = True
        if resolver == "default":
            taken = _ops_in_delegates(interpreter._get_ops_details())  # the nodes of the prepared graph
    return prepares, taken


def _ops_in_delegates(nodes: list[dict[str, Any]]) -> set[int]:
    """Original op indices inside DELEGATE nodes: walk back from each delegate's outputs to its inputs."""
    ops = [n for n in nodes if n["op_name"] != "DELEGATE"]
    producer = {int(t): n["index"] for n in ops for t in n["outputs"]}
    inputs_of = {n["index"]: [int(t) for t in n["inputs"] if t >= 0] for n in ops}
    taken: set[int] = set()
    for d in (n for n in nodes if n["op_name"] == "DELEGATE"):
        boundary = {int(t) for t in d["inputs"]}
        todo = [int(t) for t in d["outputs"]]
        while todo:
            t = todo.pop()
            op = producer.get(t)
            if t in boundary or op is None or op in taken:
                continue
            taken.add(op)
            todo.extend(inputs_of[op])
    return taken


def read_back(tflite: bytes, plan: Sequence[Any], layer_names: Sequence[str], rules: Sequence[PrecisionRule],
              default: str) -> PrecisionInfo:
    """Each op's precision as stored and where it runs, next to what `plan` (`mixed.OpPrecision`s) asked."""
    from tfcompress.export.op_layers import layer_names_for_ops
    from tfcompress.export.tflite_file import read_tflite

    tfl = read_tflite(tflite)
    main = [op for op in tfl.operators if op.subgraph == 0]
    layers_by_op = layer_names_for_ops(tfl, main, list(layer_names))
    asked = {(p.op_type, p.layers): p.precision for p in plan}
    prepares, taken = delegated_ops(tflite)
    rows = []
    for op in main:
        found, act, weight = found_precision(tfl, op)
        layers = tuple(layers_by_op.get(op.index, ()))
        runs_on = XNNPACK if op.index in taken else BUILTIN
        rows.append(OpPrecisionRow(op.index, op.op_type, layers, asked.get((op.op_type, layers)), found, act, weight,
                                   runs_on))
    n = sum(r.runs_on == XNNPACK for r in rows)
    if not prepares.get("default"):
        delegate = "does not prepare with the default resolver: every op runs on the builtin kernels " \
                   "(OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)"
    elif n == len(rows):
        delegate = f"XNNPACK runs all {n} ops"
    else:
        rest = sorted({r.op for r in rows if r.runs_on == BUILTIN})
        delegate = f"XNNPACK runs {n} of {len(rows)} ops; the builtin kernels run the others ({', '.join(rest)})"
    return PrecisionInfo(default, tuple(r.text() for r in rules), tuple(rows), prepares, delegate)


def check_read_back(info: PrecisionInfo, allow_float_fallback: bool) -> None:
    """ConversionError naming the ops whose stored precision is not the one asked for."""
    wrong = [r for r in info.ops if r.asked is not None and r.found != r.asked
             and not (allow_float_fallback and r.found == "float")]
    if wrong:
        listed = "; ".join(f"{r.op} ({', '.join(r.layers) or '?'}): asked {r.asked}, the file has {r.found}"
                           for r in wrong[:5])
        raise ConversionError(f"{len(wrong)} op(s) did not get the precision asked for: {listed}",
                              "change the rule for those ops (or --allow-float-fallback to accept float)")
    if not any(info.prepares.values()):
        raise ConversionError("the per-op precision model does not prepare in LiteRT with any resolver",
                              "report this with the model and the precision rules")
