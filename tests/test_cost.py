"""Closed-form costs against the papers' own formulas and tables."""

from __future__ import annotations

import pytest

from onnxconv import cost, variants


def test_separable_to_standard_ratio_is_mobilenet_formula():
    # MobileNet Sec. 3.1: (D_K²·M·D_F² + M·N·D_F²) / (D_K²·M·N·D_F²) = 1/N + 1/D_K²
    for m, n, k in [(64, 64, 3), (32, 128, 3), (128, 256, 5)]:
        sep = cost.separable(m, n, k, 28, 28)
        std = cost.standard(m, n, k, 28, 28, bias=False)
        assert sep.macs / std.macs == pytest.approx(1 / n + 1 / k**2, rel=1e-12)


def test_grouped_costs_one_g_th_of_standard():
    for g in (1, 2, 4, 8, 32):
        assert cost.grouped(64, 64, 3, g, 28, 28).macs * g == cost.standard(64, 64, 3, 28, 28).macs


def test_flattened_costs_cf_plus_2kf_per_pixel():
    c, f, k, h, w = 64, 96, 5, 13, 17
    assert cost.flattened(c, f, k, h, w).macs == h * w * (c * f + 2 * k * f)


def test_shuffle_unit_matches_paper_formula():
    # ShuffleNet Sec. 3.2: a stride-1 unit costs hw(2cm/g + 9m) with m = c/4
    for c, g, h in [(240, 3, 28), (480, 3, 14), (272, 4, 28), (1536, 8, 7)]:
        m = c // 4
        assert cost.shuffle_unit(c, c, g, h, h).macs == h * h * (2 * c * m // g + 9 * m)


def test_shufflenet_1x_g3_is_within_2_percent_of_paper_137m():
    macs = variants.get("shufflenet").cost(variants.get("shufflenet").config()).macs
    assert macs == pytest.approx(137e6, rel=0.02)


@pytest.mark.parametrize("groups,paper_mflops", [(1, 143), (2, 140), (3, 137), (4, 133), (8, 137)])
def test_shufflenet_1x_every_group_count_matches_table_1(groups, paper_mflops):
    # ShuffleNet Table 1, "Complexity" column (MFLOPs, i.e. multiply-adds)
    assert cost.shufflenet(groups, 224, 224).macs == pytest.approx(paper_mflops * 1e6, rel=0.02)


def test_mobilenet_v1_matches_paper_table():
    # MobileNet Table 8 (1.0 MobileNet-224): 569 M Mult-Adds, 4.2 M parameters
    c = cost.mobilenet_v1(224, 224)
    assert c.macs == pytest.approx(569e6, rel=0.01)
    assert c.params == pytest.approx(4.2e6, rel=0.02)


def test_inception_3a_matches_googlenet_table_1():
    # GoogLeNet Table 1, inception (3a): 128 M ops (multiply-adds) at 28×28
    spec = variants.get("inception")
    assert spec.cost(spec.config()).macs == pytest.approx(128e6, rel=0.01)


def test_conv_out_matches_the_usual_formula():
    assert cost.conv_out(224, 3, 2, 1) == 112
    assert cost.conv_out(7, 3, 2, 1) == 4
    assert cost.conv_out(28, 5, 1, 2) == 28
