"""The user's own PyTorch module: where it comes from, how to rebuild it, what it takes.

A :class:`ModuleRecipe` names a factory by import path (``package.module:factory``, a class or a
callable returning an ``nn.Module``), its keyword arguments, the inputs the module takes and the
seed its random weights are drawn with. The recipe goes into the manifest of an export, so
``validate``, ``bench`` and ``tune`` can rebuild the same module later for the PyTorch opinion
and the PyTorch timings. A rebuilt module is checked against the fingerprint of the exported
module's weights (:func:`weights_fingerprint`): a factory that no longer gives the same weights
(new code, a new torch) is not the source of that graph, and is never used as one.

Importing a path runs its code: onnxconv imports only the path the user named, nothing else.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import importlib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .errors import ModuleUnavailable, UserInputError, one_line

#: The dtypes an input may be declared with (``--input 1,3,224,224:float16``).
INPUT_DTYPES = ("float32", "float16", "float64", "int64", "int32", "bool")


@dataclass(frozen=True)
class InputSpec:
    """One input of the module: its shape and dtype."""

    shape: tuple[int, ...]
    dtype: str = "float32"

    @classmethod
    def parse(cls, text: str) -> InputSpec:
        """``1,3,224,224`` or ``1,3,224,224:float16``."""
        dims, _, dtype = text.partition(":")
        dtype = dtype or "float32"
        if dtype not in INPUT_DTYPES:
            raise UserInputError(
                f"--input {text}: unknown dtype {dtype!r} (choose from {', '.join(INPUT_DTYPES)})"
            )
        try:
            shape = tuple(int(d) for d in dims.replace("x", ",").split(","))
        except ValueError:
            raise UserInputError(
                f"--input {text}: expected sizes separated by commas, like 1,3,224,224"
            ) from None
        if not shape or any(d < 1 for d in shape):
            raise UserInputError(f"--input {text}: every size must be a positive integer")
        return cls(shape, dtype)

    def to_dict(self) -> dict[str, Any]:
        return {"shape": list(self.shape), "dtype": self.dtype}

    def __str__(self) -> str:
        return ",".join(map(str, self.shape)) + (
            "" if self.dtype == "float32" else f":{self.dtype}"
        )


def parse_module_args(text: str | None) -> dict[str, Any]:
    """``num_classes=10,aux_logits=False`` -> ``{"num_classes": 10, "aux_logits": False}``.

    Values are Python literals where they parse as one, strings otherwise."""
    args: dict[str, Any] = {}
    for item in [part for part in (text or "").split(",") if part.strip()]:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise UserInputError(f"--module-args: expected key=value, got {item!r}")
        try:
            args[key] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            args[key] = value.strip()
    return args


@dataclass(frozen=True)
class ModuleRecipe:
    """How to build the user's module again: ``path`` (``package.module:factory``), keyword
    ``args``, the ``inputs`` it takes, and the ``seed`` set before the factory runs (random
    weights are drawn from it)."""

    path: str
    args: dict[str, Any] = field(default_factory=dict)
    inputs: tuple[InputSpec, ...] = ()
    seed: int = 0

    @property
    def name(self) -> str:
        """The factory's name: the default graph folder name."""
        return self.path.rpartition(":")[2].rpartition(".")[2]

    def build(self, named_by: str = "--module") -> tuple[Any, list[str]]:
        """The module in eval mode, and notes about loading it (see :func:`import_factory`;
        ``named_by``: who named the path, for the errors)."""
        import torch

        factory, notes = import_factory(self.path, named_by)
        torch.manual_seed(self.seed)
        try:
            module = factory(**self.args)
        except Exception as error:  # the user's code may raise anything
            raise UserInputError(
                f"{named_by} {self.path}: the factory failed: {type(error).__name__}: "
                f"{last_line(error)}"
            ) from None
        if not isinstance(module, torch.nn.Module):
            raise UserInputError(
                f"{named_by} {self.path}: the factory returned an object of type "
                f"{type(module).__name__}, not a torch.nn.Module"
            )
        return module.eval(), notes

    def example_inputs(self, seed: int | None = None) -> tuple[Any, ...]:
        return example_inputs(self.inputs, self.seed if seed is None else seed)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "args": self.args,
            "inputs": [i.to_dict() for i in self.inputs],
            "seed": self.seed,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModuleRecipe:
        return cls(
            data["path"],
            dict(data.get("args") or {}),
            tuple(InputSpec(tuple(i["shape"]), i.get("dtype", "float32")) for i in data["inputs"]),
            int(data.get("seed", 0)),
        )


def example_inputs(specs: tuple[InputSpec, ...], seed: int) -> tuple[Any, ...]:
    """Seeded inputs of the declared shapes: standard normal floats, integers in [0, 10)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    tensors = []
    for spec in specs:
        dtype = getattr(torch, spec.dtype)
        if dtype.is_floating_point:
            tensors.append(torch.randn(spec.shape, generator=generator).to(dtype))
        elif dtype == torch.bool:
            tensors.append(torch.randint(0, 2, spec.shape, generator=generator).bool())
        else:
            tensors.append(torch.randint(0, 10, spec.shape, generator=generator, dtype=dtype))
    return tuple(tensors)


def inputs_from_npz(path: str | Path) -> tuple[tuple[InputSpec, ...], tuple[Any, ...]]:
    """The inputs of ``--input-from file.npz`` in the file's order, and their specs."""
    import torch

    try:
        with np.load(path) as data:
            arrays = [np.array(data[k]) for k in data.files]
    except (OSError, ValueError) as error:
        raise UserInputError(f"{path}: not a readable .npz file ({one_line(error)})") from None
    if not arrays:
        raise UserInputError(f"{path}: holds no arrays")
    specs = []
    for array in arrays:
        if str(array.dtype) not in INPUT_DTYPES:
            raise UserInputError(f"{path}: unsupported input dtype {array.dtype}")
        specs.append(InputSpec(tuple(array.shape), str(array.dtype)))
    return tuple(specs), tuple(torch.from_numpy(a) for a in arrays)


def last_line(error: BaseException) -> str:
    """The last non-empty line of an error's text (what a traceback ends with)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return one_line(lines[-1]) if lines else type(error).__name__


def import_factory(path: str, named_by: str = "--module") -> tuple[Callable[..., Any], list[str]]:
    """The callable named by ``package.module:factory`` (``factory`` may be dotted), and notes.

    The current folder is importable, as with ``python -m``. A failing import is a
    UserInputError naming who named the path (``named_by``), the path and the error's last
    line."""
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise UserInputError(
            f"{named_by} {path}: expected package.module:factory "
            "(e.g. torchvision.models:shufflenet_v2_x1_0)"
        )
    notes: list[str] = []
    with _cwd_importable():
        try:
            module = import_allowing_torchvision(module_name, notes)
        except Exception as error:  # the user's module may raise anything while importing
            hint = ""
            missing = getattr(error, "name", None) or ""
            if isinstance(error, ModuleNotFoundError) and f"{module_name}.".startswith(
                f"{missing}."
            ):  # the path itself was not found, not one of its imports
                hint = " (onnxconv imports from the current folder and PYTHONPATH)"
            raise UserInputError(
                f"{named_by} {path}: cannot import {module_name}: {type(error).__name__}: "
                f"{last_line(error)}{hint}"
            ) from None
    target: Any = module
    for part in attr.split("."):
        if not hasattr(target, part):
            raise UserInputError(f"{named_by} {path}: {module_name} has no attribute {attr!r}")
        target = getattr(target, part)
    if not callable(target):
        raise UserInputError(
            f"{named_by} {path}: {attr} is a {type(target).__name__}, not callable"
        )
    return target, notes


@contextlib.contextmanager
def _cwd_importable():
    added = "" not in sys.path and str(Path.cwd()) not in sys.path
    if added:
        sys.path.insert(0, str(Path.cwd()))
    try:
        yield
    finally:
        if added:
            sys.path.remove(str(Path.cwd()))


#: torchvision's compiled ops register these two without a guard; the rest are skipped when the
#: compiled library does not load (torchvision/_meta_registrations.py).
_TORCHVISION_UNGUARDED_OPS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)


def import_allowing_torchvision(module_name: str, notes: list[str]) -> Any:
    """``importlib.import_module``, with one allowance: a torchvision whose compiled ops cannot
    load beside this torch (PyPI's CUDA build of torchvision beside a CPU torch) still gives its
    models, which are plain PyTorch; its detection ops (nms, roi_align) stay unavailable."""
    try:
        module = importlib.import_module(module_name)
    except RuntimeError as error:
        if "torchvision::" not in str(error) or "does not exist" not in str(error):
            raise
    else:
        if _KEEP_ALIVE and module_name.split(".")[0] == "torchvision":  # allowed earlier
            notes.append(_TORCHVISION_NOTE)
        return module
    import torch

    for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
        del sys.modules[name]
    library = torch.library.Library("torchvision", "FRAGMENT")
    for schema in _TORCHVISION_UNGUARDED_OPS:
        with contextlib.suppress(RuntimeError):  # defined already
            library.define(schema)
    _KEEP_ALIVE.append(library)
    notes.append(_TORCHVISION_NOTE)
    return importlib.import_module(module_name)


_TORCHVISION_NOTE = (
    "torchvision's compiled ops did not load beside this torch build; its models are plain "
    "PyTorch and load, its detection ops (nms, roi_align) are unavailable"
)
_KEEP_ALIVE: list[Any] = []  # a torch.library.Library drops its definitions when collected


def rebuild_from_manifest(
    recipe: dict[str, Any], manifest_path: str | os.PathLike
) -> tuple[ModuleRecipe, Any, list[str]]:
    """The module a manifest entry's ``module`` recipe names, built again here: the recipe, the
    module and notes; :class:`ModuleUnavailable` (one line naming the manifest) when its code
    cannot be imported or built here."""
    parsed = ModuleRecipe.from_dict(recipe)
    try:
        module, notes = parsed.build(named_by=f"{manifest_path}: module")
    except UserInputError as error:
        raise ModuleUnavailable(str(error)) from None
    return parsed, module, notes


def torch_job(recipe: dict[str, Any], inputs: list[str]) -> dict[str, Any]:
    """What a bench or tune worker process needs to rebuild and run the user's module: the
    recipe, the inputs (.npy paths, in order) and this process's import path, so the module
    that imported here imports there too."""
    return {"module": recipe, "inputs": inputs, "sys_path": [str(p) for p in sys.path]}


def adopt_import_path(paths: list[str]) -> None:
    """In a worker: make the parent's import path ours (missing entries appended)."""
    for path in paths:
        if path not in sys.path:
            sys.path.append(path)


def weights_fingerprint(module: Any) -> str:
    """sha256 over the module's parameters and buffers (names, dtypes, shapes, bytes)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        array = tensor.detach().cpu().contiguous().numpy()
        digest.update(f"{name}:{array.dtype}:{array.shape};".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def weights_in_graph(module: Any, model: Any) -> tuple[int, int]:
    """How many of ``module``'s float weight tensors (of 8 values or more, not all one value)
    ``model`` holds as an initializer, and of how many. Tensors are compared as their sorted
    float32 values, so a copy the exporter transposed or reshaped counts; one it folded
    (BatchNorm into a Conv) does not. A tensor of one value (a fresh BatchNorm's ones and zeros)
    is the same under every seed, so it says nothing of where the weights came from."""
    import numpy as np
    from onnx import numpy_helper

    def telling(array: Any) -> bool:
        return array.dtype.kind == "f" and array.size >= 8 and bool(np.ptp(array) > 0)

    def key(array: Any) -> bytes:
        return hashlib.sha256(np.sort(array.astype(np.float32).ravel()).tobytes()).digest()

    held = {key(a) for a in map(numpy_helper.to_array, model.graph.initializer) if telling(a)}
    weights = [
        w
        for w in (
            tensor.detach().cpu().float().numpy()
            for tensor in module.state_dict().values()
            if tensor.is_floating_point()
        )
        if telling(w)
    ]
    return sum(key(w) in held for w in weights), len(weights)


def flatten_outputs(value: Any) -> list[Any]:
    """A module's result as a list of tensors: a tensor, or a (nested) tuple/list of them."""
    import torch

    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for item in value for t in flatten_outputs(item)]
    raise UserInputError(
        f"the module returned a {type(value).__name__}; onnxconv handles a tensor or a tuple "
        "or list of tensors"
    )
