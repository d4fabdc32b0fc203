"""Random configs for every variant (hypothesis).

Valid configs (channels, groups, kernel, stride, multiplier, odd and tiny spatial sizes down to
1×1, batch) must export with both exporters and pass the export's own checks (onnx.checker,
strict shape inference, the family's structure, ONNX Runtime reproducing PyTorch on CPU), and
their analytic cost must be the module's parameter count and the graph's multiply-adds. Invalid
configs must raise ``UserInputError`` (a ValueError) naming the parameter, never an exception
from inside torch or onnx.

The default suite runs a few derandomized examples per variant (the TorchScript exporter; one
dynamo example per single-layer variant; 30 invalid configs each); ``./scripts/test --all`` runs
many more of each, both exporters, under ``slow``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from onnxconv import graph, validate, variants
from onnxconv.cost import SHUFFLENET_STAGE_CHANNELS
from onnxconv.errors import UserInputError
from onnxconv.export import ExportOptions, export_variants

Config = dict[str, Any]
Draw = Callable[..., Any]

FAST = settings(
    max_examples=3,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
ONE = settings(FAST, max_examples=1)
MANY = settings(FAST, max_examples=25)


def sizes(draw: Draw, largest: int = 9) -> Config:
    """Spatial size (odd and tiny ones down to 1×1, not square) and batch."""
    return {
        "height": draw(st.integers(1, largest)),
        "width": draw(st.integers(1, largest)),
        "batch": draw(st.integers(1, 3)),
    }


KERNELS = st.sampled_from([1, 3, 5, 7])


@st.composite
def standard(draw: Draw) -> Config:
    return {
        "in_channels": draw(st.integers(1, 8)),
        "out_channels": draw(st.integers(1, 8)),
        "kernel_size": draw(KERNELS),
        "stride": draw(st.integers(1, 3)),
        "bias": draw(st.booleans()),
        **sizes(draw),
    }


@st.composite
def pointwise(draw: Draw) -> Config:
    return {
        "in_channels": draw(st.integers(1, 8)),
        "out_channels": draw(st.integers(1, 8)),
        "bias": draw(st.booleans()),
        **sizes(draw),
    }


@st.composite
def flattened(draw: Draw) -> Config:
    return {
        "in_channels": draw(st.integers(1, 8)),
        "out_channels": draw(st.integers(1, 8)),
        "kernel_size": draw(KERNELS),
        "bias": draw(st.booleans()),
        "nonlinearity": draw(st.booleans()),
        **sizes(draw),
    }


@st.composite
def inception(draw: Draw) -> Config:
    keys = ("in_channels", "ch1x1", "ch3x3red", "ch3x3", "ch5x5red", "ch5x5", "pool_proj")
    return {
        **{key: draw(st.integers(1, 6)) for key in keys},
        "factorized": draw(st.booleans()),
        "relu": draw(st.booleans()),
        **sizes(draw),
    }


@st.composite
def depthwise(draw: Draw) -> Config:
    return {
        "in_channels": draw(st.integers(2, 8)),
        "kernel_size": draw(KERNELS),
        "stride": draw(st.integers(1, 2)),
        "multiplier": draw(st.integers(1, 3)),
        "bias": draw(st.booleans()),
        **sizes(draw),
    }


@st.composite
def separable(draw: Draw) -> Config:
    return {
        "in_channels": draw(st.integers(2, 8)),
        "out_channels": draw(st.integers(1, 8)),
        "kernel_size": draw(KERNELS),
        "stride": draw(st.integers(1, 2)),
        "bias": draw(st.booleans()),
        "activation": draw(st.booleans()),
        **sizes(draw),
    }


@st.composite
def grouped(draw: Draw) -> Config:
    groups = draw(st.integers(1, 4))
    return {
        "groups": groups,
        "in_channels": groups * draw(st.integers(1, 3)),
        "out_channels": groups * draw(st.integers(1, 3)),
        "kernel_size": draw(KERNELS),
        "stride": draw(st.integers(1, 2)),
        "bias": draw(st.booleans()),
        **sizes(draw),
    }


@st.composite
def channel_shuffle(draw: Draw) -> Config:
    groups = draw(st.integers(2, 5))  # 1 group, or 1 channel per group: the identity
    return {
        "groups": groups,
        "channels": groups * draw(st.integers(2, 4)),
        "shuffle_rank": draw(st.sampled_from([4, 5])),
        **sizes(draw),
    }


@st.composite
def shuffle_unit(draw: Draw) -> Config:
    """Stride 1: in == out; the bottleneck out/4 and the output divisible by groups."""
    groups = draw(st.integers(1, 4))
    channels = 4 * groups * draw(st.integers(1, 2))
    return {
        "in_channels": channels,
        "out_channels": channels,
        "groups": groups,
        "stride": 1,
        "first_grouped": draw(st.booleans()),
        "shuffle_rank": draw(st.sampled_from([4, 5])),
        **sizes(draw),
    }


@st.composite
def shuffle_unit_s2(draw: Draw) -> Config:
    """Stride 2: out > in, the branch (out - in) and out/4 divisible by groups."""
    groups = draw(st.integers(1, 4))
    out = 4 * groups * draw(st.integers(1, 2))
    first_grouped = draw(st.booleans())
    step = groups  # in and out - in both multiples of groups
    in_channels = step * draw(st.integers(1, out // step - 1)) if out > step else 0
    if in_channels == 0:  # groups == out: no room for a shortcut that groups evenly
        out, in_channels = 4 * groups * 2, groups
    return {
        "in_channels": in_channels,
        "out_channels": out,
        "groups": groups,
        "stride": 2,
        "first_grouped": first_grouped,
        "shuffle_rank": draw(st.sampled_from([4, 5])),
        **sizes(draw),
    }


@st.composite
def shufflenet(draw: Draw) -> Config:
    groups = draw(st.sampled_from([1, 2, 3, 4, 8]))
    first = SHUFFLENET_STAGE_CHANNELS[groups][0]  # the first unit's branch: first - stem
    stems = [s for s in (8, 12, 16, 24) if (first - s) % groups == 0]
    return {
        "groups": groups,
        "num_classes": draw(st.integers(1, 10)),
        "stem_channels": draw(st.sampled_from(stems)),
        "shuffle_rank": draw(st.sampled_from([4, 5])),
        **sizes(draw, 40),
    }


@st.composite
def shufflenet_v2_unit(draw: Draw) -> Config:
    return {
        "channels": 2 * draw(st.integers(1, 6)),
        "shuffle_rank": draw(st.sampled_from([4, 5])),
        **sizes(draw),
    }


@st.composite
def mobilenet_v1(draw: Draw) -> Config:
    return {
        "num_classes": draw(st.integers(1, 10)),
        "width_multiplier": draw(st.sampled_from([0.0625, 0.1, 0.125, 0.25])),
        **sizes(draw, 40),
    }


VALID: dict[str, Callable[[], st.SearchStrategy[Config]]] = {
    "standard": standard,
    "pointwise": pointwise,
    "flattened": flattened,
    "inception": inception,
    "depthwise": depthwise,
    "separable": separable,
    "grouped": grouped,
    "channel_shuffle": channel_shuffle,
    "shuffle_unit": shuffle_unit,
    "shuffle_unit_s2": shuffle_unit_s2,
    "shufflenet": shufflenet,
    "shufflenet_v2_unit": shufflenet_v2_unit,
    "mobilenet_v1": mobilenet_v1,
}


def test_every_variant_has_a_strategy():
    assert sorted(VALID) == sorted(variants.names())


def module_params(module) -> int:
    return sum(p.numel() for p in module.parameters())


def check_valid(name: str, overrides: Config, exporter: str, tmp: Path) -> None:
    """Export (which checks structure and ORT against PyTorch), then the analytic cost against
    the module and the graph, then validate's own CPU parity with the reference evaluator."""
    spec = variants.get(name)
    config = spec.config(overrides)
    (result,) = export_variants([name], tmp, ExportOptions(exporter=exporter), overrides)
    cost = spec.cost(config)
    assert cost.params == module_params(spec.build(config)), (name, config)
    model = graph.load_model(result.model_path)
    macs = graph.cost_breakdown(graph.GraphIndex(model), batch_size=1).macs  # a static batch
    assert cost.macs * config["batch"] == macs, (name, config, cost.macs, macs)
    subject = validate.load_subject(str(result.folder))
    report = validate.validate(
        [subject],
        ["cpu"],
        ["all"],
        ["fp32"],
        seeds=[0],
        distributions=["normal"],
        localise_failures=False,
    )
    assert not report.summary().get("fail"), [c.reason for c in report.cells]


def valid_case(name: str, exporter: str, how: settings):
    @how
    @given(overrides=VALID[name]())
    def run(overrides: Config, tmp_path_factory) -> None:
        check_valid(name, overrides, exporter, tmp_path_factory.mktemp(name))

    return run


ORDERED = sorted(VALID, key=variants.names().index)
#: Whole networks take seconds per export: one TorchScript example in the default suite.
NETWORKS = [n for n in ORDERED if not variants.get(n).commit_graph]
UNITS = [n for n in ORDERED if n not in NETWORKS]


@pytest.mark.parametrize("name", ORDERED)
def test_valid_configs_torchscript(name, tmp_path_factory):
    how = ONE if name in NETWORKS else FAST
    valid_case(name, "torchscript", how)(tmp_path_factory=tmp_path_factory)


@pytest.mark.parametrize("name", UNITS)
def test_valid_configs_dynamo(name, tmp_path_factory):
    valid_case(name, "dynamo", ONE)(tmp_path_factory=tmp_path_factory)


@pytest.mark.slow
@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
@pytest.mark.parametrize("name", ORDERED)
def test_valid_configs_many(name, exporter, tmp_path_factory):
    valid_case(name, exporter, MANY)(tmp_path_factory=tmp_path_factory)


# --- invalid configs ---------------------------------------------------------------------------

#: A broken config: the overrides and the parameter the refusal must name.
Broken = tuple[Config, str]


def int_keys(name: str) -> list[str]:
    config = variants.get(name).config()
    return [k for k, v in config.items() if isinstance(v, int) and not isinstance(v, bool)]


@st.composite
def non_positive(draw: Draw, name: str, valid: Config) -> Broken:
    key = draw(st.sampled_from(int_keys(name)))
    return {**valid, key: draw(st.integers(-3, 0))}, key


@st.composite
def wrong_type(draw: Draw, name: str, valid: Config) -> Broken:
    config = variants.get(name).config()
    key = draw(st.sampled_from(sorted(config)))
    default = config[key]
    if isinstance(default, bool):
        value = draw(st.sampled_from(["maybe", "2", 0.5]))
    elif isinstance(default, int):
        value = draw(st.sampled_from(["abc", "3.5", 2.5, True, None]))
    else:
        value = draw(st.sampled_from(["abc", None]))
    return {**valid, key: value}, key


@st.composite
def too_big(draw: Draw, name: str, valid: Config) -> Broken:
    """An input or a parameter count no machine (or no 2 GiB protobuf) holds."""
    keys = variants.get(name).config()
    if "in_channels" in keys and "out_channels" in keys and draw(st.booleans()):
        g = valid.get("groups", 1)
        return {**valid, "in_channels": g * 10**5, "out_channels": g * 10**5}, "in_channels"
    return {**valid, "height": 10**5, "width": 10**5}, "height"


@st.composite
def even_kernel(draw: Draw, name: str, valid: Config) -> Broken:
    return {**valid, "kernel_size": 2 * draw(st.integers(1, 3))}, "kernel_size"


@st.composite
def bad_stride(draw: Draw, name: str, valid: Config) -> Broken:
    return {**valid, "stride": draw(st.integers(3, 5))}, "stride"


@st.composite
def bad_shuffle_rank(draw: Draw, name: str, valid: Config) -> Broken:
    return {**valid, "shuffle_rank": draw(st.sampled_from([1, 2, 3, 6]))}, "shuffle_rank"


def one_channel_depthwise(name: str, valid: Config) -> st.SearchStrategy[Broken]:
    return st.just(({**valid, "in_channels": 1}, "in_channels"))


@st.composite
def indivisible_groups(draw: Draw, name: str, valid: Config) -> Broken:
    groups = draw(st.integers(2, 5))
    key = "channels" if name == "channel_shuffle" else "in_channels"
    return {**valid, "groups": groups, key: groups * draw(st.integers(1, 3)) + 1}, key


@st.composite
def identity_shuffle(draw: Draw, name: str, valid: Config) -> Broken:
    channels = valid["channels"]
    return {**valid, "groups": draw(st.sampled_from([1, channels]))}, "groups"


@st.composite
def unit_channels(draw: Draw, name: str, valid: Config) -> Broken:
    """Stride 1 without in == out, stride 2 without out > in, or out < 4 (no bottleneck)."""
    how = draw(st.sampled_from(["mismatch", "tiny"]))
    if how == "tiny":
        return {**valid, "groups": 1, "out_channels": draw(st.integers(1, 3))}, "out_channels"
    if valid["stride"] == 1:
        return {**valid, "out_channels": valid["in_channels"] + 4 * valid["groups"]}, "in_channels"
    return {**valid, "in_channels": valid["out_channels"]}, "out_channels"


@st.composite
def network_groups(draw: Draw, name: str, valid: Config) -> Broken:
    return {**valid, "groups": draw(st.sampled_from([5, 6, 7, 9, 16]))}, "groups"


@st.composite
def big_stem(draw: Draw, name: str, valid: Config) -> Broken:
    first = SHUFFLENET_STAGE_CHANNELS[valid["groups"]][0]
    return {**valid, "stem_channels": draw(st.sampled_from([first, first + 1, 1000]))}, (
        "stem_channels"
    )


@st.composite
def bad_width(draw: Draw, name: str, valid: Config) -> Broken:
    value = draw(st.sampled_from([0.0, -1.0, 0.01, 0.05, 4.5, float("nan"), float("inf")]))
    return {**valid, "width_multiplier": value}, "width_multiplier"


GENERIC = [non_positive, wrong_type, too_big]
INVALID: dict[str, list[Callable[..., st.SearchStrategy[Broken]]]] = {
    "standard": [even_kernel],
    "pointwise": [],
    "flattened": [even_kernel],
    "inception": [],
    "depthwise": [even_kernel, bad_stride, one_channel_depthwise],
    "separable": [even_kernel, bad_stride, one_channel_depthwise],
    "grouped": [even_kernel, bad_stride, indivisible_groups],
    "channel_shuffle": [bad_shuffle_rank, indivisible_groups, identity_shuffle],
    "shuffle_unit": [bad_stride, bad_shuffle_rank, unit_channels],
    "shuffle_unit_s2": [bad_stride, bad_shuffle_rank, unit_channels],
    "shufflenet": [bad_shuffle_rank, network_groups, big_stem],
    "shufflenet_v2_unit": [bad_shuffle_rank],
    "mobilenet_v1": [bad_width],
}


def test_every_variant_has_invalid_configs():
    assert sorted(INVALID) == sorted(VALID) == sorted(variants.names())


@st.composite
def broken(draw: Draw, name: str) -> Broken:
    valid = draw(VALID[name]())
    breaker = draw(st.sampled_from(GENERIC + INVALID[name]))
    return draw(breaker(name, valid))


def check_refused(name: str, overrides: Config, key: str, tmp: Path) -> None:
    """Refused by the config checks, before anything is written, naming the parameter."""
    with pytest.raises(UserInputError) as caught:
        export_variants([name], tmp, ExportOptions(exporter="torchscript"), overrides)
    message = str(caught.value)
    assert key in message, (overrides, message)
    assert "\n" not in message
    assert not tmp.exists() or not any(tmp.iterdir()), "an impossible config wrote something"


def invalid_case(name: str, how: settings):
    @how
    @given(case=broken(name))
    def run(case: Broken, tmp_path_factory) -> None:
        overrides, key = case
        check_refused(name, overrides, key, tmp_path_factory.mktemp(name) / "out")

    return run


INVALID_FAST = settings(FAST, max_examples=30)


@pytest.mark.parametrize("name", ORDERED)
def test_invalid_configs_are_refused_naming_the_parameter(name, tmp_path_factory):
    invalid_case(name, INVALID_FAST)(tmp_path_factory=tmp_path_factory)


@pytest.mark.slow
@pytest.mark.parametrize("name", ORDERED)
def test_invalid_configs_many(name, tmp_path_factory):
    invalid_case(name, settings(FAST, max_examples=200))(tmp_path_factory=tmp_path_factory)
