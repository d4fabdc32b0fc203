"""Small, checked edits on a copy of an ONNX model: what every rewrite in :mod:`.rewrites` and
:mod:`.fold` is made of.

An :class:`Editor` holds a copy of the model; rewrites replace nodes, add initializers under
fresh names (an initializer another node also reads is never changed in place) and rename
tensors. :meth:`Editor.finish` drops what no node reads any more (initializers, stale
``value_info``) and proves the result is a valid graph: ``onnx.checker`` (full check) and strict
shape inference with type checking. A rewrite that breaks either is a bug in the rewrite, raised
as :class:`RewriteError`, never a candidate.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx

from onnxconv.errors import CheckFailed, one_line
from onnxconv.graph import GraphIndex
from onnxconv.graph.edit import add_initializer, copy_model, fresh_name
from onnxconv.graph.index import outer_scope_reads


class RewriteError(CheckFailed):
    """A rewrite produced a graph that fails onnx.checker or strict shape inference."""


class Editor:
    """A copy of ``model`` and the edits made to it; ``model`` itself is never touched."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.model = copy_model(model)
        self.graph = self.model.graph
        self.changed_tensors: set[str] = set()
        """Tensors whose shape or meaning changed: their ``value_info`` is dropped."""
        self._given: set[str] = set()

    # -- names

    def fresh(self, base: str) -> str:
        """``base``, or ``base_<k>``, unused in the model and not given out before."""
        name = fresh_name(self.graph, base, self._given)
        self._given.add(name)
        return name

    # -- tensors

    def add_initializer(self, base: str, value: np.ndarray) -> str:
        """A new initializer under a fresh name (also a graph input before IR 4); its name."""
        return add_initializer(self.model, self.fresh(base), value)

    def rename_tensor(self, old: str, new: str) -> None:
        """Every producer and reader of ``old`` now writes / reads ``new``."""
        for node in self.graph.node:
            for i, name in enumerate(node.input):
                if name == old:
                    node.input[i] = new
            for i, name in enumerate(node.output):
                if name == old:
                    node.output[i] = new
        self.changed_tensors.update((old, new))

    # -- nodes

    def index_of(self, label: str) -> int:
        """Index of the one node with this :meth:`~onnxconv.graph.GraphIndex.label`; a label no
        node or several nodes have is a :class:`RewriteError` (the rewrite cannot tell which)."""
        found = [i for i, node in enumerate(self.graph.node) if GraphIndex.label(node) == label]
        if len(found) != 1:
            many = f"{len(found)} nodes are" if found else "no node is"
            raise RewriteError(f"{many} labelled {label!r}: the rewrite cannot tell which to edit")
        return found[0]

    def replace_nodes(self, indices: Sequence[int], new: Sequence[onnx.NodeProto]) -> None:
        """Remove the nodes at ``indices`` and put ``new`` where the last of them stood."""
        unique = sorted(set(indices), reverse=True)
        at = unique[0] - (len(unique) - 1)
        for i in unique:
            self.changed_tensors.update(self.graph.node[i].output)
            del self.graph.node[i]
        for offset, node in enumerate(new):
            self.graph.node.insert(at + offset, node)
            self.changed_tensors.update(node.output)

    # -- the end

    def finish(self, rewrite: str) -> onnx.ModelProto:
        """Prune, then prove the model valid; the edited model."""
        self._prune()
        try:
            onnx.checker.check_model(self.model, full_check=True)
            onnx.shape_inference.infer_shapes(self.model, check_type=True, strict_mode=True)
        except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as error:
            raise RewriteError(
                f"rewrite {rewrite} made an invalid graph: {one_line(error)}"
            ) from error
        return self.model

    def _prune(self) -> None:
        g = self.graph
        read = {o.name for o in g.output}
        if self.model.ir_version >= 4:  # an initializer listed as an input is the graph's input
            read |= {vi.name for vi in g.input}
        read |= {t for n in g.node for t in [*n.input, *outer_scope_reads(n)]}
        for node in [n for n in g.node if n.op_type == "Constant" and n.output[0] not in read]:
            g.node.remove(node)  # e.g. the shape a replaced Reshape read
        for init in [t for t in g.initializer if t.name not in read]:
            g.initializer.remove(init)
            for vi in [vi for vi in g.input if vi.name == init.name]:
                g.input.remove(vi)  # graph inputs name initializers before IR 4
        produced = {t for n in g.node for t in n.output}
        for vi in [
            vi for vi in g.value_info if vi.name in self.changed_tensors or vi.name not in produced
        ]:
            g.value_info.remove(vi)


def drop_attr(node: onnx.NodeProto, name: str) -> None:
    for a in [a for a in node.attribute if a.name == name]:
        node.attribute.remove(a)
