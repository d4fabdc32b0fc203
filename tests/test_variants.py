"""The zoo's definitions, proven by the mathematics of each convolution type."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from onnxconv import variants
from onnxconv.errors import UserInputError
from onnxconv.variants import channel_shuffle
from onnxconv.variants.flattened import FlattenedConv
from onnxconv.variants.inception import InceptionBlock
from onnxconv.variants.separable import DepthwiseConv, SeparableConv
from onnxconv.variants.shuffle import ShuffleUnit

ALL = variants.names()


def rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", ALL)
def test_analytic_cost_matches_module_and_flop_counter(name):
    spec = variants.get(name)
    config = spec.config()
    module = spec.build(config)
    cost = spec.cost(config)
    assert sum(p.numel() for p in module.parameters()) == cost.params
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module(spec.example_input(config))
    assert counter.get_total_flops() == 2 * cost.macs  # one multiply-add is two FLOPs


@pytest.mark.parametrize("name", ALL)
def test_build_is_deterministic_and_in_eval_mode(name):
    spec = variants.get(name)
    a, b = spec.build(seed=3), spec.build(seed=3)
    assert not a.training
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)


@pytest.mark.parametrize("name", [n for n in ALL if n.startswith("shuffle") or n == "mobilenet_v1"])
def test_batchnorm_statistics_are_not_trivial(name):
    bns = [m for m in variants.get(name).build().modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns
    for bn in bns:
        assert not torch.allclose(bn.running_var, torch.ones_like(bn.running_var))
        assert not torch.allclose(bn.running_mean, torch.zeros_like(bn.running_mean))


# --- channel shuffle -------------------------------------------------------------------------


@pytest.mark.parametrize("rank", [5, 4])
@pytest.mark.parametrize("channels,groups", [(12, 3), (64, 8), (6, 2), (5, 1)])
def test_channel_shuffle_is_the_paper_permutation(channels, groups, rank):
    n = channels // groups
    x = torch.arange(channels, dtype=torch.float32).reshape(1, channels, 1, 1).expand(2, -1, 3, 4)
    y = channel_shuffle(x, groups, rank)
    for i in range(groups):
        for j in range(n):
            assert torch.equal(y[:, j * groups + i], x[:, i * n + j])


@pytest.mark.parametrize("rank", [5, 4])
def test_channel_shuffle_twice_is_identity(rank):
    x = rand(2, 24, 5, 7)
    assert torch.equal(channel_shuffle(channel_shuffle(x, 3, rank), 8, rank), x)
    assert not torch.equal(channel_shuffle(x, 3, rank), x)


def test_channel_shuffle_rank4_equals_rank5():
    x = rand(3, 60, 7, 9)
    assert torch.equal(channel_shuffle(x, 3, 4), channel_shuffle(x, 3, 5))


# --- grouped, depthwise, separable -------------------------------------------------------------


@torch.no_grad()
def test_grouped_is_block_diagonal():
    spec = variants.get("grouped")
    config = spec.config(
        {"in_channels": 32, "out_channels": 48, "groups": 4, "height": 9, "width": 9}
    )
    module = spec.build(config)
    x = spec.example_input(config)
    base = module(x)
    cin, cout = 32 // 4, 48 // 4
    for k in range(4):
        x2 = x.clone()
        x2[:, k * cin : (k + 1) * cin] += rand(1, cin, 9, 9, seed=k + 1)
        changed = (module(x2) - base).abs().amax(dim=(0, 2, 3)) > 0
        expected = torch.zeros(48, dtype=torch.bool)
        expected[k * cout : (k + 1) * cout] = True
        assert torch.equal(changed, expected)


@torch.no_grad()
@pytest.mark.parametrize("multiplier", [1, 2])
def test_depthwise_output_channel_depends_only_on_its_input_channel(multiplier):
    module = DepthwiseConv(6, kernel_size=3, multiplier=multiplier).eval()
    x = rand(1, 6, 8, 8)
    base = module(x)
    for c in range(6):
        x2 = x.clone()
        x2[:, c] += 1.0
        changed = (module(x2) - base).abs().amax(dim=(0, 2, 3)) > 0
        expected = torch.zeros(6 * multiplier, dtype=torch.bool)
        expected[c * multiplier : (c + 1) * multiplier] = True
        assert torch.equal(changed, expected)


@torch.no_grad()
def test_separable_equals_depthwise_then_pointwise_with_same_weights():
    module = SeparableConv(16, 24, kernel_size=5, stride=2, bias=True).eval()
    x = rand(2, 16, 11, 11)
    dw, pw = module.depthwise, module.pointwise
    expected = F.conv2d(
        F.conv2d(x, dw.weight, dw.bias, stride=2, padding=2, groups=16), pw.weight, pw.bias
    )
    torch.testing.assert_close(module(x), expected, rtol=0, atol=0)


# --- flattened --------------------------------------------------------------------------------


@torch.no_grad()
@pytest.mark.parametrize("kernel_size", [3, 5])
def test_flattened_equals_full_convolution_of_outer_products(kernel_size):
    module = FlattenedConv(7, 10, kernel_size, bias=True).double().eval()
    lateral = module.lateral.weight[:, :, 0, 0]  # (F, C)
    vertical = module.vertical.weight[:, 0, :, 0]  # (F, k)
    horizontal = module.horizontal.weight[:, 0, 0, :]  # (F, k)
    full = torch.einsum("fc,fi,fj->fcij", lateral, vertical, horizontal)
    x = rand(2, 7, 9, 6)  # small and non-square so every output touches a border
    expected = F.conv2d(x.double(), full, module.horizontal.bias, padding=kernel_size // 2)
    torch.testing.assert_close(module(x.double()), expected, rtol=1e-12, atol=1e-12)


@torch.no_grad()
def test_flattened_with_nonlinearity_is_not_a_full_convolution():
    module = FlattenedConv(4, 4, 3, nonlinearity=True).eval()
    linear = FlattenedConv(4, 4, 3).eval()
    linear.load_state_dict(module.state_dict())
    x = rand(1, 4, 6, 6)
    assert not torch.allclose(module(x), linear(x))


# --- inception ---------------------------------------------------------------------------------


@torch.no_grad()
@pytest.mark.parametrize("factorized", [False, True])
def test_inception_is_the_concatenation_of_its_branches(factorized):
    module = InceptionBlock(12, 4, 6, 8, 2, 3, 5, factorized=factorized).eval()
    x = rand(2, 12, 10, 10)
    y = module(x)
    assert y.shape == (2, 4 + 8 + 3 + 5, 10, 10)
    start = 0
    for branch in module.branches():
        alone = branch(x)
        torch.testing.assert_close(y[:, start : start + alone.shape[1]], alone, rtol=0, atol=0)
        start += alone.shape[1]
    assert start == y.shape[1]


# --- ShuffleNet units -------------------------------------------------------------------------


@torch.no_grad()
def test_shuffle_units_keep_or_halve_the_size_with_the_paper_channels():
    # the defaults are stage 4 of ShuffleNet 1x g=3 (Table 1): 480 -> 960 channels, 14 -> 7
    unit = variants.get("shuffle_unit").build()
    assert unit(rand(1, 960, 7, 7)).shape == (1, 960, 7, 7)
    unit2 = variants.get("shuffle_unit_s2").build()
    assert unit2(rand(1, 480, 14, 14)).shape == (1, 960, 7, 7)
    # stage 2 of ShuffleNet 1x g=3 starts from 24 channels with an ungrouped first 1x1 conv
    first = ShuffleUnit(24, 240, groups=3, stride=2, first_grouped=False).eval()
    assert first(rand(1, 24, 56, 56)).shape == (1, 240, 28, 28)
    assert first.gconv1[0].groups == 1 and first.gconv2[0].groups == 3


@torch.no_grad()
def test_shuffle_unit_s2_shortcut_is_the_average_pool_of_the_input():
    unit = variants.get("shuffle_unit_s2").build()
    x = rand(1, 480, 14, 14)
    y = unit(x)
    torch.testing.assert_close(y[:, :480], F.relu(F.avg_pool2d(x, 3, 2, 1)))


@torch.no_grad()
def test_shuffle_unit_s1_is_residual():
    unit = variants.get("shuffle_unit").build()
    with torch.no_grad():
        unit.gconv2[1].weight.zero_()
        unit.gconv2[1].bias.zero_()
    x = rand(1, 960, 7, 7)
    torch.testing.assert_close(unit(x), F.relu(x))


@torch.no_grad()
def test_shufflenet_v2_unit_passes_half_the_channels_through_shuffled():
    unit = variants.get("shufflenet_v2_unit").build()
    x = rand(1, 232, 8, 8)
    y = unit(x)
    # after the 2-group shuffle, even channels are the untouched first half
    torch.testing.assert_close(y[:, 0::2], x[:, :116], rtol=0, atol=0)


@torch.no_grad()
@pytest.mark.parametrize(
    "name", ["shuffle_unit", "shuffle_unit_s2", "shufflenet_v2_unit", "channel_shuffle"]
)
def test_shuffle_rank_option_does_not_change_outputs(name):
    spec = variants.get(name)
    config = spec.config()
    x = spec.example_input(config)
    a = spec.build(config)(x)
    b = spec.build({**config, "shuffle_rank": 4})(x)
    torch.testing.assert_close(a, b, rtol=0, atol=0)


# --- impossible configs -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,overrides,words",
    [
        ("grouped", {"in_channels": 30, "groups": 4}, ["in_channels=30", "groups=4", "divisible"]),
        ("grouped", {"out_channels": 30, "groups": 4}, ["out_channels=30", "divisible"]),
        ("standard", {"kernel_size": 4}, ["kernel_size=4", "odd"]),
        ("depthwise", {"kernel_size": 2}, ["kernel_size=2", "odd"]),
        ("separable", {"stride": 3}, ["stride=3"]),
        ("channel_shuffle", {"channels": 10, "groups": 3}, ["channels=10", "groups=3"]),
        ("channel_shuffle", {"shuffle_rank": 3}, ["shuffle_rank=3"]),
        ("shuffle_unit", {"out_channels": 240}, ["in_channels == out_channels"]),
        ("shuffle_unit_s2", {"out_channels": 200}, ["out_channels > in_channels"]),
        (
            "shuffle_unit",
            {"in_channels": 200, "out_channels": 200, "first_grouped": False},
            ["out_channels/4=50", "groups=3"],
        ),
        ("shufflenet", {"groups": 5}, ["groups=5"]),
        ("shufflenet_v2_unit", {"channels": 115}, ["channels=115"]),
        ("pointwise", {"in_channels": 0}, ["in_channels=0", "positive"]),
    ],
)
def test_impossible_configs_name_the_parameter_and_the_rule(name, overrides, words):
    with pytest.raises(UserInputError) as info:
        variants.get(name).build(overrides)
    assert isinstance(info.value, ValueError)
    for word in words:
        assert word in str(info.value)


def test_unknown_variant_and_config_key_and_bad_value():
    with pytest.raises(UserInputError, match="unknown variant 'nope'"):
        variants.get("nope")
    with pytest.raises(UserInputError, match="unknown config key 'kernel'.*kernel_size"):
        variants.get("standard").config({"kernel": "3"})
    with pytest.raises(UserInputError, match="groups='four'"):
        variants.get("grouped").config({"groups": "four"})
    assert variants.get("grouped").config({"groups": "4", "bias": "false"})["bias"] is False
