"""Load any ONNX model and index its graph: producers, consumers, constants and shapes.

:class:`GraphIndex` is the engine under :mod:`onnxconv.graph` (what a graph holds) and
:mod:`onnxconv.graph.checks` (what it should hold): it folds constant and shape-arithmetic
tensors statically and fills the rest from ONNX shape inference.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Union

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import helper, numpy_helper

from onnxconv.errors import UserInputError
from onnxconv.errors import one_line as _one_line
from onnxconv.graph.edit import copy_model

Dim = Union[int, str, None]  # noqa: UP007 - runtime alias, readable on 3.10
"""One tensor dimension: an int, a symbolic name (``dim_param``) or None when unknown."""

# --------------------------------------------------------------------------------------------
# loading


def load_model(path: str | Path, check: bool = False) -> onnx.ModelProto:
    """Load an ONNX model (with external data); raise ``UserInputError`` naming ``path``.

    ``check=True`` also runs ``onnx.checker.check_model`` (full check, by path so external data
    and models over 2 GB work).
    """
    path = Path(path)
    if not path.exists():
        raise UserInputError(f"{path}: no such file")
    if path.is_dir():
        raise UserInputError(f"{path}: is a directory, expected an .onnx file")
    if path.stat().st_size == 0:
        raise UserInputError(f"{path}: empty file, not an ONNX model")
    try:
        model = onnx.load(str(path))
    except DecodeError as exc:
        raise UserInputError(
            f"{path}: not an ONNX model, or a truncated or corrupt one (protobuf parse failed: "
            f"{_one_line(exc)})"
        ) from exc
    except (OSError, ValueError, RuntimeError, onnx.checker.ValidationError) as exc:
        # unreadable file, external data missing or outside the model's folder
        raise UserInputError(f"{path}: cannot load ONNX model: {_one_line(exc)}") from exc
    # protobuf parses many byte strings "successfully" into an empty or garbage message
    no_nodes = not model.HasField("graph") or len(model.graph.node) == 0
    if no_nodes and len(model.opset_import) == 0:
        raise UserInputError(f"{path}: not an ONNX model (no graph nodes and no opset_import)")
    newer = _newer_than_onnx(model)
    if newer:
        raise UserInputError(f"{path}: {newer}")
    domains = {o.domain for o in model.opset_import}
    used = {n.domain for n in model.graph.node}
    if used & {"", "ai.onnx"} and not domains & {"", "ai.onnx"}:
        raise UserInputError(
            f"{path}: no opset for the default ONNX domain, which its nodes use (truncated: the "
            "opset list is the end of the file?)"
        )
    if check:
        try:
            onnx.checker.check_model(str(path), full_check=True)
        except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
            raise UserInputError(f"{path}: fails onnx.checker: {_one_line(exc)}") from exc
    problem = wiring_problem(model.graph)  # what the checker says first when asked, else this
    if problem:
        raise UserInputError(f"{path}: not a runnable graph: {problem}")
    return model


def _newer_than_onnx(model: onnx.ModelProto) -> str | None:
    """What in ``model`` no released onnx defines, as far as the installed onnx knows: an IR
    version or a default-domain opset beyond its own (ONNX Runtime refuses them too)."""
    if model.ir_version > onnx.IR_VERSION:
        return (
            f"IR version {model.ir_version} is newer than any this onnx {onnx.__version__} "
            f"knows (up to {onnx.IR_VERSION})"
        )
    newest = onnx.defs.onnx_opset_version()
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx") and opset.version > newest:
            return (
                f"opset {opset.version} of ai.onnx is newer than any this onnx "
                f"{onnx.__version__} defines (up to {newest})"
            )
    return None


def wiring_problem(graph: onnx.GraphProto) -> str | None:
    """What makes the top-level graph unrunnable whatever the runtime, or None: a node input
    that nothing provides (no graph input, initializer or node output), or a cycle. Nodes need
    not be listed in order; subgraphs (If/Loop bodies, which may read outer names) are not
    walked."""
    if not graph.output:
        return "the graph has no outputs: it computes nothing"
    provided = {i.name for i in graph.input} | {i.name for i in graph.initializer}
    provided |= {i.name for i in graph.sparse_initializer if i.values.name}
    producer = {out: node for node in graph.node for out in node.output if out}
    for node in graph.node:
        for name in node.input:
            if name and name not in provided and name not in producer:
                label = node.name or node.op_type
                return f"node {label!r} reads {name!r}, which no input, initializer or node gives"
    waiting = {id(n): sum(1 for i in n.input if i in producer) for n in graph.node}
    readers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            if name in producer:
                readers[name].append(node)
    ready = [n for n in graph.node if waiting[id(n)] == 0]
    done = 0
    while ready:
        node = ready.pop()
        done += 1
        for out in node.output:
            for reader in readers.get(out, []):
                waiting[id(reader)] -= 1
                if waiting[id(reader)] == 0:
                    ready.append(reader)
    if done < len(graph.node):
        stuck = [n.name or n.op_type for n in graph.node if waiting[id(n)] > 0]
        return f"a cycle through node(s) {', '.join(map(repr, stuck[:3]))}"
    return None


def default_opset(model: onnx.ModelProto) -> int | None:
    """Version of the default (``ai.onnx``) domain the model imports, or None."""
    for op in model.opset_import:
        if op.domain in ("", "ai.onnx"):
            return op.version
    return None


def is_default_domain(node: onnx.NodeProto) -> bool:
    return node.domain in ("", "ai.onnx")


def attr(node: onnx.NodeProto, name: str, default: Any = None) -> Any:
    """Value of a node attribute (ints as list), or ``default`` when absent."""
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


# --------------------------------------------------------------------------------------------
# graph index: producers, consumers, constants, shapes


#: Rounds of folding and shape inference at the most (a dynamic-batch TorchScript ShuffleNet V2
#: x0.5 settles after 9).
MAX_FOLD_ROUNDS = 64


def infer_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """ONNX shape inference with data propagation; falls back to the model as given."""
    for data_prop in (True, False):
        try:
            return onnx.shape_inference.infer_shapes(model, data_prop=data_prop)
        except Exception:  # noqa: BLE001 - inference is best effort on arbitrary models
            continue
    return model


class GraphIndex:
    """Lookup tables over one shape-inferred graph.

    ``const(name)`` reads constant tensors, ``partial(name)`` folds a 0-D / 1-D int tensor
    element by element (None where unknown), ``shape(name)`` gives dims from initializers,
    constants or shape inference. Shape inference runs twice when needed: the second time on a
    copy whose foldable integer tensors are initializers, because ONNX's data propagation stops
    at some ops exporters use for shape arithmetic (torchscript's ``chunk`` -> ``Slice`` with
    ends from ``Shape -> Gather -> Add -> Div -> Mul`` leaves every later H and W unknown).
    """

    def __init__(self, model: onnx.ModelProto):
        self.model = model
        self.graph = infer_shapes(model).graph
        self.opset = default_opset(model) or 1
        self.nodes: list[onnx.NodeProto] = list(self.graph.node)
        self.initializers = {t.name: t for t in self.graph.initializer}
        #: Initializers also listed as graph inputs from IR 4 on: defaults a feed may replace,
        #: so their values are no constants (:meth:`const` gives None for them).
        self.overridable = (
            {vi.name for vi in self.graph.input if vi.name in self.initializers}
            if model.ir_version >= 4
            else set()
        )
        self.producer: dict[str, onnx.NodeProto] = {}
        self.consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
        for node in self.nodes:
            for out in node.output:
                if out:
                    self.producer[out] = node
            # a tensor read inside an If / Loop / Scan body is read by that node
            for inp in dict.fromkeys([*node.input, *outer_scope_reads(node)]):
                if inp:
                    self.consumers[inp].append(node)
        self.graph_outputs = {o.name for o in self.graph.output}
        self._inferred: dict[str, tuple[Dim, ...] | None] = {}
        self._elem_type: dict[str, int] = {}
        self._const_cache: dict[str, np.ndarray | None] = {}
        self._partial_cache: dict[str, list[int | None] | None] = {}
        #: The symbolic dim names the model itself writes (its inputs' ``batch``, an exporter's
        #: value_info): one name is one size. ONNX shape inference names the dims it cannot
        #: (``unk__3``) afresh on every run: one such name is one size within its run only, so
        #: each run's are kept apart (``unk__3@2``: run 2's), never one size across runs.
        self._names = {
            d.dim_param
            for vi in (*model.graph.input, *model.graph.output, *model.graph.value_info)
            for d in vi.type.tensor_type.shape.dim
            if d.dim_param
        }
        self._merge_shapes(self.graph, 0)
        for run in range(1, MAX_FOLD_ROUNDS + 1):
            known = sum(_known(dims) for dims in self._inferred.values())
            folded = self._fold_int_tensors()
            reshaped = self._reshape_outputs()
            if folded is None and not reshaped:
                break
            model = folded or copy_model(self.model)
            model.graph.value_info.extend(reshaped)  # inference goes on from them
            self._merge_shapes(model.graph, run)
            self._merge_shapes(infer_shapes(model).graph, run)
            self._partial_cache.clear()  # shapes learnt this round fold more integers
            if sum(_known(dims) for dims in self._inferred.values()) == known:
                break

    def _merge_shapes(self, graph: onnx.GraphProto, run: int) -> None:
        """Take each tensor's inferred dims where they say more than what is known so far; the
        names inference run ``run`` made up are marked as its own."""
        for vi in (*graph.input, *graph.value_info, *graph.output):
            dims = _value_info_dims(vi)
            if dims is not None:
                dims = tuple(
                    f"{d}@{run}"
                    if isinstance(d, str) and d not in self._names and "@" not in d
                    else d
                    for d in dims
                )
            if _known(dims) > _known(self._inferred.get(vi.name)) or vi.name not in self._inferred:
                self._inferred[vi.name] = dims
            if vi.type.tensor_type.elem_type:
                self._elem_type[vi.name] = vi.type.tensor_type.elem_type

    def _reshape_outputs(self) -> list[onnx.ValueInfoProto]:
        """The output shape of each Reshape, where shape inference knows no more than its
        target says (:meth:`symbolic_target`: constants, and the symbolic dims a Shape gives,
        which torch's TorchScript exporter computes a dynamic batch's targets from; its -1 the
        input's size over the rest), as value_info for inference to go on from."""
        found = []
        for node in self.nodes:
            if node.op_type != "Reshape" or not is_default_domain(node) or not node.output[0]:
                continue
            target, src = self.symbolic_target(node), self.shape(node.input[0])
            if target is None or src is None or attr(node, "allowzero", 0):
                continue
            dims = [src[i] if t == 0 and i < len(src) else t for i, t in enumerate(target)]
            if -1 in dims:
                dims[dims.index(-1)] = _quotient(list(src), [d for d in dims if d != -1])
            dims = [d if d is None or isinstance(d, str) or d > 0 else None for d in dims]
            if _known(tuple(dims)) < _known(self._inferred.get(node.output[0])):
                continue  # (each round infers anew: one already merged is given again)
            elem = self._elem_type.get(node.input[0])
            if elem and node.output[0] not in self.graph_outputs:
                found.append(helper.make_tensor_value_info(node.output[0], elem, dims))
        return found

    def _fold_int_tensors(self) -> onnx.ModelProto | None:
        """Copy of the model where computed 0-D / 1-D int tensors that fold are initializers."""
        folded = {}
        for node in self.nodes:
            for name in node.input:
                if name in folded or name in self.initializers or name not in self.producer:
                    continue
                dims, elem = self._inferred.get(name), self._elem_type.get(name)
                if (
                    self.producer[name].op_type == "Constant"
                    or elem not in _INT_TYPES
                    or dims is None
                ):
                    continue
                if len(dims) > 1 or not all(isinstance(d, int) for d in dims):
                    continue
                values = self.partial(name)
                if values is not None and None not in values and len(values) == math.prod(dims):
                    array = np.array(values, dtype=helper.tensor_dtype_to_np_dtype(elem)).reshape(
                        dims
                    )
                    folded[name] = numpy_helper.from_array(array, f"{name}__folded")
        if not folded:
            return None
        model = onnx.ModelProto()
        model.CopyFrom(self.model)
        for node in model.graph.node:
            for i, name in enumerate(node.input):
                if name in folded:
                    node.input[i] = folded[name].name
        model.graph.initializer.extend(folded.values())
        return model

    def tensor_shapes(self) -> dict[str, tuple[Dim, ...] | None]:
        """Inferred dims of every tensor shape inference saw (inputs, outputs, intermediates)."""
        return dict(self._inferred)

    # -- naming and walking

    @staticmethod
    def label(node: onnx.NodeProto) -> str:
        """Node name, or ``OpType(first_output)`` for unnamed nodes."""
        return node.name or f"{node.op_type}({node.output[0] if node.output else ''})"

    def graph_inputs(self) -> list[onnx.ValueInfoProto]:
        """Real graph inputs (initializers listed as inputs, as in IR < 4, are left out)."""
        return [vi for vi in self.graph.input if vi.name not in self.initializers]

    def only_consumer(self, name: str) -> onnx.NodeProto | None:
        """The single node reading ``name``; None if zero or several read it."""
        users = self.consumers.get(name, [])
        return users[0] if len(users) == 1 else None

    # -- shapes

    def shape(self, name: str) -> tuple[Dim, ...] | None:
        """Dims of a tensor: constant dims first, else shape inference; None if unknown rank."""
        dims = self.const_dims(name)
        return dims if dims is not None else self._inferred.get(name)

    def const_dims(self, name: str) -> tuple[int, ...] | None:
        """Dims of a constant tensor (initializer / Constant / Identity of one, or the
        DequantizeLinear of one: a quantized graph's weights), not its data."""
        root = self.const_root(name)
        if root is None:
            node = self.producer.get(name)
            if node is not None and node.op_type == "DequantizeLinear" and is_default_domain(node):
                return self.const_dims(node.input[0])
            return None
        if root in self.initializers:
            return tuple(self.initializers[root].dims)
        return _constant_node_dims(self.producer[root])

    def const_root(self, name: str) -> str | None:
        """Name of the initializer or Constant output that ``name`` is (through Identity)."""
        seen = 0
        while seen < 16:
            if name in self.initializers:
                return name
            node = self.producer.get(name)
            if node is None or not is_default_domain(node):
                return None
            if node.op_type == "Constant":
                return name
            if node.op_type != "Identity":
                return None
            name, seen = node.input[0], seen + 1
        return None

    # -- constant values

    def const(self, name: str) -> np.ndarray | None:
        """Value of an initializer / Constant (through Identity), else None (also for an
        initializer a feed may override)."""
        if name not in self._const_cache:
            root = self.const_root(name)
            value = None
            try:
                if root in self.overridable:
                    value = None
                elif root in self.initializers:
                    value = numpy_helper.to_array(self.initializers[root])
                elif root is not None:
                    value = _constant_node_value(self.producer[root])
            except Exception:  # noqa: BLE001 - external data not loaded, odd dtype
                value = None
            self._const_cache[name] = value
        return self._const_cache[name]

    def partial(self, name: str) -> list[int | None] | None:
        """Elements of a 0-D / 1-D int tensor, None for each element that does not fold; None
        if the length itself is unknown. Follows what exporters emit for shapes: Shape, Gather,
        Unsqueeze, Squeeze, Reshape, Concat, Cast and integer arithmetic."""
        if name not in self._partial_cache:
            self._partial_cache[name] = None  # guards against cycles in malformed graphs
            self._partial_cache[name] = self._partial(name)
        return self._partial_cache[name]

    def _partial(self, name: str) -> list[int | None] | None:
        value = self.const(name)
        if value is not None:
            return [int(v) for v in value.reshape(-1)] if value.ndim <= 1 else None
        node = self.producer.get(name)
        elems = self._partial_op(node) if node is not None and is_default_domain(node) else None
        if elems is not None:
            return elems
        dims = self._inferred.get(name)
        if dims == ():
            return [None]
        if dims is not None and len(dims) == 1 and isinstance(dims[0], int):
            return [None] * dims[0]
        return None

    def _partial_op(self, node: onnx.NodeProto) -> list[int | None] | None:
        op = node.op_type
        if op == "Shape":
            dims = self._inferred.get(node.input[0])
            if dims is None:
                return None
            return [
                d if isinstance(d, int) else None for d in list(dims)[_shape_slice(node, len(dims))]
            ]
        if op in ("Cast", "Identity", "Unsqueeze", "Squeeze", "Reshape"):
            return self.partial(node.input[0])  # 0-D <-> 1-D (dynamo's sym sizes): same elements
        if op == "Concat":
            parts = [self.partial(i) for i in node.input]
            return None if any(p is None for p in parts) else [v for p in parts for v in p]
        if op == "Gather":
            data, idx = self.partial(node.input[0]), self.const(node.input[1])
            if data is None or idx is None or idx.ndim > 1:
                return None
            return [
                data[int(i)] if -len(data) <= int(i) < len(data) else None for i in idx.reshape(-1)
            ]
        if op in ("Add", "Sub", "Mul", "Div"):
            a, b = self.partial(node.input[0]), self.partial(node.input[1])
            if a is None or b is None or (len(a) != len(b) and 1 not in (len(a), len(b))):
                return None
            n = max(len(a), len(b))
            a, b = (a * n if len(a) == 1 else a), (b * n if len(b) == 1 else b)
            return [_arith(op, x, y) for x, y in zip(a, b, strict=True)]
        return None

    # -- reshape

    def reshape_target(self, node: onnx.NodeProto) -> list[int | None] | None:
        """Raw ``shape`` of a Reshape (may hold 0 / -1 / None), attribute or input form."""
        shape_attr = attr(node, "shape")
        if shape_attr is not None:  # Reshape-1 (opset < 5)
            return [int(v) for v in shape_attr]
        if len(node.input) < 2 or not node.input[1]:
            return None
        return self.partial(node.input[1])

    def symbolic_target(self, node: onnx.NodeProto) -> list[Dim | None] | None:
        """:meth:`reshape_target` with each element that a Shape gives as a symbolic dim (an
        input's ``batch``, ``height``) kept as that dim's name, where :meth:`partial` has None."""
        if attr(node, "shape") is not None or len(node.input) < 2 or not node.input[1]:
            return self.reshape_target(node)
        return self._symbolic(node.input[1], 0)

    def _symbolic(self, name: str, depth: int) -> list[Dim | None] | None:
        exact = self.partial(name)
        node = self.producer.get(name)
        if exact is None or None not in exact or node is None or depth > 16:
            return exact
        op = node.op_type if is_default_domain(node) else ""
        if op == "Shape" and self._inferred.get(node.input[0]) is not None:
            dims = list(self._inferred[node.input[0]])
            found: list[Dim | None] = dims[_shape_slice(node, len(dims))]
        elif op in ("Cast", "Identity", "Unsqueeze", "Squeeze", "Reshape"):
            found = self._symbolic(node.input[0], depth + 1) or []
        elif op == "Concat":
            parts = [self._symbolic(i, depth + 1) or [] for i in node.input]
            found = [v for p in parts for v in p]
        elif op == "Gather" and (idx := self.const(node.input[1])) is not None and idx.ndim <= 1:
            data = self._symbolic(node.input[0], depth + 1) or []
            found = [data[int(i)] if -len(data) <= int(i) < len(data) else None for i in idx.flat]
        else:
            return exact
        return found if len(found) == len(exact) else exact

    def reshape_dims(self, node: onnx.NodeProto) -> list[int | None] | None:
        """Actual output dims of a Reshape: 0 and -1 resolved where possible, else None."""
        raw = self.reshape_target(node)
        out = self._inferred.get(node.output[0])
        if raw is None:
            return None if out is None else [d if isinstance(d, int) else None for d in out]
        src = self.shape(node.input[0]) or ()
        allowzero = attr(node, "allowzero", 0)
        dims: list[int | None] = []
        for i, r in enumerate(raw):
            if r is not None and r > 0:
                dims.append(r)
            elif r == 0 and not allowzero and i < len(src) and isinstance(src[i], int):
                dims.append(src[i])
            elif out is not None and i < len(out) and isinstance(out[i], int):
                dims.append(out[i])
            else:
                dims.append(None)
        if -1 in raw and dims.count(None) == 1 and dims[raw.index(-1)] is None and _static(src):
            known = math.prod(d for d in dims if d is not None)
            if known:
                dims[raw.index(-1)] = math.prod(src) // known  # type: ignore[arg-type]
        return dims


_INT_TYPES = (onnx.TensorProto.INT64, onnx.TensorProto.INT32)


def outer_scope_reads(node: onnx.NodeProto) -> list[str]:
    """The tensors of the enclosing graph that ``node``'s subgraphs (If branches, Loop and Scan
    bodies, nested) read: every name a subgraph node reads that the subgraph does not make."""
    reads: list[str] = []
    for attribute in node.attribute:
        graphs = [attribute.g] if attribute.type == onnx.AttributeProto.GRAPH else []
        graphs += list(attribute.graphs)
        for graph in graphs:
            made = {vi.name for vi in graph.input} | {t.name for t in graph.initializer}
            for inner in graph.node:
                made.update(inner.output)
            for inner in graph.node:
                reads += [n for n in [*inner.input, *outer_scope_reads(inner)] if n not in made]
    return list(dict.fromkeys(reads))


def _known(dims: tuple[Dim, ...] | None) -> int:
    """How much a shape says: -1 for unknown rank, else per dim 4 for a number, 3 for a name the
    model writes, 2 for one an inference run made up (``unk__3@2``), 0 for none."""
    if dims is None:
        return -1
    return sum(4 if isinstance(d, int) else 0 if d is None else 2 if "@" in d else 3 for d in dims)


def _quotient(numerator: list[Dim], denominator: list[Dim]) -> Dim:
    """``prod(numerator) / prod(denominator)`` of dims, where it is one int or one symbolic
    dim (symbols cancel by name); None otherwise, or where a dim is unknown."""
    if None in numerator or None in denominator:
        return None
    names = Counter(d for d in numerator if isinstance(d, str))
    names.subtract(d for d in denominator if isinstance(d, str))
    top = math.prod(d for d in numerator if isinstance(d, int))
    bottom = math.prod(d for d in denominator if isinstance(d, int))
    if any(n < 0 for n in names.values()) or not bottom or top % bottom:
        return None
    left = [name for name, n in names.items() for _ in range(n)]
    if not left:
        return top // bottom
    return left[0] if len(left) == 1 and top == bottom else None


def _static(dims: tuple[Dim, ...] | None) -> bool:
    return bool(dims) and all(isinstance(d, int) for d in dims)


def _arith(op: str, a: int | None, b: int | None) -> int | None:
    """Integer Add / Sub / Mul / Div (truncating, as ONNX integer Div) of known elements."""
    if a is None or b is None:
        return None
    if op == "Add":
        return a + b
    if op == "Sub":
        return a - b
    if op == "Mul":
        return a * b
    return int(a / b) if b else None


def _value_info_dims(vi: onnx.ValueInfoProto) -> tuple[Dim, ...] | None:
    if not vi.type.HasField("tensor_type") or not vi.type.tensor_type.HasField("shape"):
        return None
    return tuple(
        d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
        for d in vi.type.tensor_type.shape.dim
    )


def _shape_slice(node: onnx.NodeProto, rank: int) -> slice:
    """Slice taken by a Shape node (``start`` / ``end`` attributes, opset 15+)."""
    return slice(attr(node, "start", 0), attr(node, "end", rank))


def _constant_node_value(node: onnx.NodeProto) -> np.ndarray | None:
    for a in node.attribute:
        if a.name == "value":
            return numpy_helper.to_array(a.t)
        if a.name == "value_int":
            return np.array(a.i, dtype=np.int64)
        if a.name == "value_ints":
            return np.array(list(a.ints), dtype=np.int64)
        if a.name == "value_float":
            return np.array(a.f, dtype=np.float32)
        if a.name == "value_floats":
            return np.array(list(a.floats), dtype=np.float32)
    return None


def _constant_node_dims(node: onnx.NodeProto) -> tuple[int, ...] | None:
    for a in node.attribute:
        if a.name == "value":
            return tuple(a.t.dims)
        if a.name in ("value_int", "value_float"):
            return ()
        if a.name == "value_ints":
            return (len(a.ints),)
        if a.name == "value_floats":
            return (len(a.floats),)
    return None


def as_index(model_or_index: onnx.ModelProto | GraphIndex) -> GraphIndex:
    return model_or_index if isinstance(model_or_index, GraphIndex) else GraphIndex(model_or_index)
