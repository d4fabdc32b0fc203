"""int8: ORT's static/dynamic quantizer on the zoo, accuracy tolerances, planted QDQ defects.

Every test uses the committed single-block graphs (graphs/<variant>/model.onnx) and, as the
fp32 reference, the PyTorch module rebuilt from the manifest's config and seed. Calibration
feeds are seeds 0-7, evaluation feeds seeds 1000-1003: the int8 model is judged on inputs it
was not calibrated on.

Whole networks (mobilenet_v1, shufflenet) are left out on purpose. With random weights the
BatchNorm statistics decide what a network is: drawn ones let the signal die within a few blocks
(the logits' spread over a batch was ~1e-7 of their size, so "int8 agrees with fp32" was
trivially true); measured on data, as the zoo builds them now, the random network is chaotic
instead: a 40 dB perturbation of the input alone leaves 10-14 dB at the logits, so correct int8
(every QDQ pair 35-43 dB on its own) ends far below a block's bounds. Neither says anything about
the quantizer; trained weights would.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import helper, numpy_helper

from onnxconv import feeds, int8, variants
from onnxconv.cli import main
from onnxconv.errors import CheckFailed, UserInputError
from onnxconv.graph.edit import add_initializer, copy_model, fresh_name
from onnxconv.quant_metrics import TOLERANCES, judge, quant_metrics, sqnr_db
from onnxconv.runtime import Target, make_session, run

ROOT = Path(__file__).resolve().parents[1]
GRAPHS = ROOT / "graphs"
MANIFEST = json.loads((GRAPHS / "manifest.json").read_text())["graphs"]
CPU = Target("cpu", "all", "fp32")
CALIBRATION_SEEDS = range(8)
FRESH_SEEDS = range(1000, 1004)
#: Every committed graph with a convolution (channel_shuffle has none).
CONV_VARIANTS = [name for name in MANIFEST if name != "channel_shuffle"]


def zoo(name: str) -> onnx.ModelProto:
    return onnx.load(GRAPHS / name / "model.onnx")


def make_feeds(model: onnx.ModelProto, seeds, scale: np.ndarray | None = None) -> list[dict]:
    out = []
    for seed in seeds:
        feed = feeds.generate(model, "test", batch=1, spatial={}, distribution="normal", seed=seed)
        if scale is not None:
            feed = {k: (v * scale).astype(np.float32) for k, v in feed.items()}
        out.append(feed)
    return out


def ort_outputs(model: onnx.ModelProto, feed_list: list[dict]) -> np.ndarray:
    info = make_session(model, CPU)
    return np.concatenate([run(info, f)["output"] for f in feed_list])


def torch_outputs(name: str, feed_list: list[dict]) -> np.ndarray:
    entry = MANIFEST[name]
    module = variants.get(name).build(entry["config"], seed=entry["seed"])
    with torch.no_grad():
        return np.concatenate([module(torch.from_numpy(f["input"])).numpy() for f in feed_list])


def initializers(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}


def dq_param_name(model: onnx.ModelProto, dq_node: str, index: int) -> str:
    return next(n for n in model.graph.node if n.name == dq_node).input[index]


def plant(model: onnx.ModelProto, dq_node: str, defect: str) -> onnx.ModelProto:
    """A copy where one DequantizeLinear reads its own, wrong scale (x2) or zero point (+1), so
    it no longer inverts its QuantizeLinear. (The same change to the initializer both share
    would cancel out, and ORT shares one pair's parameters across Reshape/Transpose chains.)"""
    bad = copy_model(model)
    node = next(n for n in bad.graph.node if n.name == dq_node)
    index = 1 if defect == "scale" else 2
    value = initializers(bad)[node.input[index]]
    if defect == "scale":
        wrong = value * 2
    else:
        step = 1 if value.max() < np.iinfo(value.dtype).max else -1
        wrong = (value.astype(np.int32) + step).astype(value.dtype)
    name = fresh_name(bad.graph, f"{node.input[index]}_planted")
    add_initializer(bad, name, wrong)
    node.input[index] = name
    return bad


def pair_for(model: onnx.ModelProto, fp32: onnx.ModelProto, tensor: str) -> int8.QdqPair:
    names = {o for n in fp32.graph.node for o in n.output} | {i.name for i in fp32.graph.input}
    return next(p for p in int8.activation_pairs(model, names) if p.tensor == tensor)


# ---------------------------------------------------------------------------------------------
# calibration


def test_calibration_is_deterministic_and_follows_the_data():
    model = zoo("separable")
    calibration = make_feeds(model, range(4))
    first = int8.quantize_static(model, calibration)
    again = int8.quantize_static(model, make_feeds(model, range(4)))
    assert first.SerializeToString() == again.SerializeToString()

    # MinMax: the input's uint8 scale and zero point are exactly ORT's formula on the data
    # (range widened to include 0; zero point rounds -rmin/scale)
    x = np.concatenate([f["input"] for f in calibration])
    rmin, rmax = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
    params = int8.qdq_params(first)
    scale, zero = params["input_DequantizeLinear"]
    assert zero.dtype == np.uint8
    assert float(scale) == pytest.approx((rmax - rmin) / 255, rel=1e-6)
    assert int(zero) == round(-rmin / float(scale))

    other = int8.qdq_params(int8.quantize_static(model, make_feeds(model, range(10, 14))))
    activations = {p.dequantize_node for p in int8.activation_pairs(first, {"input", "conv2d"})}
    activations.add("output_DequantizeLinear")
    for node, (scale, zero) in params.items():
        moved = not np.array_equal(scale, other[node][0])
        # activation ranges follow the calibration data; weight ranges do not depend on it
        assert moved == (node in activations), node


def test_calibration_is_deterministic_across_processes():
    """ORT builds its default op list from a set: string hashing must not reach the bytes."""
    script = (
        "import hashlib, sys, onnx\n"
        "from onnxconv import feeds, int8\n"
        "m = onnx.load(sys.argv[1])\n"
        "cal = [feeds.generate(m, 'test', batch=1, spatial={}, distribution='normal', seed=s)"
        " for s in range(2)]\n"
        "print(hashlib.sha256(int8.quantize_static(m, cal).SerializeToString()).hexdigest())\n"
    )
    path = GRAPHS / "shufflenet_v2_unit" / "model.onnx"
    model = onnx.load(path)
    here = hashlib.sha256(
        int8.quantize_static(model, make_feeds(model, range(2))).SerializeToString()
    )
    digests = {here.hexdigest()}
    for hash_seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=hash_seed)
        done = subprocess.run(
            [sys.executable, "-c", script, str(path)],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            check=True,
        )
        digests.add(done.stdout.strip())
    assert digests == {here.hexdigest()}


def unloadable_model() -> onnx.ModelProto:
    """One node of an op no domain defines: ORT's quantizer cannot load it."""
    graph = helper.make_graph(
        [helper.make_node("NoSuchOp", ["input"], ["output"], name="mystery")],
        "g",
        [helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("output", onnx.TensorProto.FLOAT, [1, 4])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_quantizer_leaves_no_file_in_cwd_and_prints_nothing(tmp_path, monkeypatch, capsys, caplog):
    """Also when ORT's symbolic shape inference fails, which saves sym_shape_infer_temp.onnx
    to the working directory."""
    monkeypatch.chdir(tmp_path)
    model = zoo("pointwise")
    for method in int8.METHODS:
        int8.quantize_static(model, make_feeds(model, range(2)), method=method)
    int8.quantize_dynamic(model)
    with pytest.raises(CheckFailed, match="pre-processing") as failed:
        int8.quantize_static(unloadable_model(), [{"input": np.ones((1, 4), np.float32)}])
    # what failed, inside which library, and the error's type (a bare Python message before)
    said = str(failed.value)
    assert "(quant_pre_process, its symbolic shape inference) failed inside onnxruntime: " in said
    assert said.split("failed inside onnxruntime: ")[1][0].isupper()  # the exception's class
    assert Path.cwd() == tmp_path
    assert list(tmp_path.iterdir()) == []
    assert capsys.readouterr().out == ""
    assert not [r for r in caplog.records if "onnxruntime" in r.pathname]


# ---------------------------------------------------------------------------------------------
# the zoo passes with per-channel int8


@pytest.mark.parametrize("name", CONV_VARIANTS)
def test_per_channel_int8_of_the_zoo_passes_the_tolerances(name):
    model = zoo(name)
    quantized = int8.quantize_static(model, make_feeds(model, CALIBRATION_SEEDS))

    # it really is int8: every Conv reads an int8 per-channel weight and a quantized input
    inits = initializers(quantized)
    producers = {o: n for n in quantized.graph.node for o in n.output}
    convs = [n for n in quantized.graph.node if n.op_type == "Conv"]
    assert len(convs) == sum(n.op_type == "Conv" for n in model.graph.node) > 0
    for conv in convs:
        x_dq, w_dq = producers[conv.input[0]], producers[conv.input[1]]
        assert x_dq.op_type == w_dq.op_type == "DequantizeLinear"
        assert inits[x_dq.input[2]].dtype == np.uint8
        weight, scale, zero = (inits[i] for i in w_dq.input)
        assert weight.dtype == np.int8 and not zero.any()  # symmetric
        assert scale.shape == (weight.shape[0],)  # one scale per output channel

    fresh = make_feeds(model, FRESH_SEEDS)
    metrics = quant_metrics(torch_outputs(name, fresh), ort_outputs(quantized, fresh))
    verdict = judge(metrics)
    assert verdict.status == "pass", verdict.reasons
    assert metrics.sqnr_db < 60  # quantized, not the fp32 graph passing itself
    assert metrics.top1 is None  # a feature map, not a classifier's logits


def depthwise_with_a_folded_channel(factor: float):
    """The depthwise graph as BatchNorm folding leaves a trained one: input channel 0 carries a
    `factor`-times weaker signal (a nearly dead channel) and its filter is `factor` times
    larger, so every output channel has the same magnitude but the filters' ranges differ by
    `factor`."""
    model = zoo("depthwise")
    weights = initializers(model)["conv.weight"].copy()
    weights[0] *= factor
    for init in model.graph.initializer:
        if init.name == "conv.weight":
            init.CopyFrom(numpy_helper.from_array(weights, init.name))
    scale = np.ones((1, weights.shape[0], 1, 1), np.float32)
    scale[0, 0] = 1 / factor
    return model, scale


def channel_sqnr(reference: np.ndarray, actual: np.ndarray) -> np.ndarray:
    return np.array([sqnr_db(reference[:, c], actual[:, c]) for c in range(reference.shape[1])])


def test_depthwise_needs_per_channel_weights():
    """Per-tensor weights: one scale for all 64 depthwise filters, set by the widest one.

    The random zoo weights have the same range in every channel, so per-tensor and per-channel
    agree there (36.1 vs 36.2 dB). Trained depthwise filters do not: folding BatchNorm scales
    each filter by gamma/sigma of its channel, and ranges differ by 10-100x. Here one filter is
    30x wider (its input 30x weaker, the fp32 output unchanged in magnitude): per-tensor leaves
    the other 63 filters ~4 of the 127 levels and the block fails; per-channel gives every
    filter its own scale and passes. Channel 0 itself stays the worst in both modes: its weak
    input shares the input's per-tensor activation scale, which no weight setting fixes.
    """
    plain = zoo("depthwise")
    fresh = make_feeds(plain, FRESH_SEEDS)
    reference = ort_outputs(plain, fresh)
    for per_channel in (True, False):
        q = int8.quantize_static(
            plain, make_feeds(plain, CALIBRATION_SEEDS), per_channel=per_channel
        )
        assert quant_metrics(reference, ort_outputs(q, fresh)).sqnr_db > 35

    model, scale = depthwise_with_a_folded_channel(30.0)
    calibration = make_feeds(model, CALIBRATION_SEEDS, scale)
    fresh = make_feeds(model, FRESH_SEEDS, scale)
    reference = ort_outputs(model, fresh)
    results = {}
    for per_channel in (True, False):
        q = int8.quantize_static(model, calibration, per_channel=per_channel)
        got = ort_outputs(q, fresh)
        results[per_channel] = (quant_metrics(reference, got), channel_sqnr(reference, got))
    (pc, pc_channels), (pt, pt_channels) = results[True], results[False]

    assert judge(pt).status == "fail"
    assert any(r.startswith("output: sqnr_db") for r in judge(pt).reasons)
    assert judge(pc).status == "pass", judge(pc).reasons
    assert pc.sqnr_db - pt.sqnr_db > 6  # measured 28.7 vs 20.4 dB
    # the 63 unscaled channels: per-channel keeps them at the plain graph's ~36 dB
    assert np.median(pc_channels) > 34 and np.median(pc_channels) - np.median(pt_channels) > 10
    assert np.argmin(pc_channels) == np.argmin(pt_channels) == 0


# ---------------------------------------------------------------------------------------------
# planted defects: caught and localised


@pytest.mark.parametrize(
    ("name", "tensor", "defect", "failing_metric"),
    [
        ("shuffle_unit", "getitem_3", "scale", "sqnr_db"),  # the depthwise conv's output
        ("separable", "conv2d", "scale", "sqnr_db"),
        ("separable", "output", "zero_point", "mean_error_over_range"),
        ("standard", "output", "zero_point", "mean_error_over_range"),
    ],
)
def test_planted_qdq_defect_fails_and_is_named_first(name, tensor, defect, failing_metric):
    model = zoo(name)
    quantized = int8.quantize_static(model, make_feeds(model, CALIBRATION_SEEDS))
    fresh = make_feeds(model, FRESH_SEEDS)
    reference = torch_outputs(name, fresh)
    assert judge(quant_metrics(reference, ort_outputs(quantized, fresh))).status == "pass"

    pair = pair_for(quantized, model, tensor)
    broken = plant(quantized, pair.dequantize_node, defect)
    verdict = judge(quant_metrics(reference, ort_outputs(broken, fresh)))
    assert verdict.status == "fail"
    assert any(r.startswith(f"output: {failing_metric}") for r in verdict.reasons), verdict.reasons

    ranked = int8.layer_errors(model, broken, fresh[0])
    assert ranked[0].tensor == tensor
    assert ranked[0].dequantize_node == pair.dequantize_node
    assert ranked[0].op_type == next(n.op_type for n in model.graph.node if tensor in n.output)
    # the defect's own pair stands out from every correct one
    assert ranked[0].local_sqnr_db < ranked[1].local_sqnr_db - 5
    clean = int8.layer_errors(model, quantized, fresh[0])
    assert min(e.local_sqnr_db for e in clean) > 30


def test_local_error_names_a_defect_the_cumulative_error_hides():
    """An off-by-one zero point on shufflenet_v2_unit's input pair: its tensor is 28 dB off,
    but tensors further down carry every upstream layer's rounding too and rank worse by the
    cumulative error; the error each pair adds by itself names the right one."""
    model = zoo("shufflenet_v2_unit")
    quantized = int8.quantize_static(model, make_feeds(model, CALIBRATION_SEEDS))
    pair = pair_for(quantized, model, "input")
    broken = plant(quantized, pair.dequantize_node, "zero_point")
    feed = make_feeds(model, FRESH_SEEDS)[0]

    by_local = int8.layer_errors(model, broken, feed)
    by_sqnr = int8.layer_errors(model, broken, feed, by="sqnr")
    assert by_local[0].tensor == "input" and by_local[0].op_type == "input"
    assert by_sqnr[0].tensor != "input"
    assert [e.sqnr_db for e in by_sqnr] == sorted(e.sqnr_db for e in by_sqnr)


def test_pairs_follow_ort_naming_and_its_folded_relu():
    """ORT 1.32 names: ``t -> t_QuantizeLinear_Output -> t_DequantizeLinear_Output``; a graph
    output keeps its name on the DequantizeLinear (the producer writes
    ``output_QuantizeLinear_Input``); a Relu after a Conv is dropped and the Conv writes the
    Relu's name, its QuantizeLinear's [0, max] range doing the clipping."""
    model = zoo("shuffle_unit")
    quantized = int8.quantize_static(model, make_feeds(model, range(2)))
    names = {o for n in model.graph.node for o in n.output} | {"input"}
    pairs = {p.tensor: p for p in int8.activation_pairs(quantized, names)}
    assert pairs["getitem_3"].float_input == "getitem_3"
    assert pairs["getitem_3"].dequantized == "getitem_3_DequantizeLinear_Output"
    assert pairs["output"].float_input == "output_QuantizeLinear_Input"
    assert pairs["output"].dequantized == "output"
    producer = {o: n.op_type for n in quantized.graph.node for o in n.output}
    assert "Relu" not in producer.values() and producer["relu"] == "Conv"
    assert "getitem" not in pairs  # the pre-Relu fp32 tensor has no pair
    # the local error of a folded Relu compares with relu(x), not with the pre-Relu x
    errors = {e.tensor: e for e in int8.layer_errors(model, quantized, make_feeds(model, [7])[0])}
    assert errors["relu"].op_type == "Relu" and errors["relu"].local_sqnr_db > 30


# ---------------------------------------------------------------------------------------------
# methods, dynamic quantization, errors


def test_each_calibration_method_gives_a_runnable_passing_model():
    name = "shuffle_unit"
    model = zoo(name)
    calibration = make_feeds(model, CALIBRATION_SEEDS)
    fresh = make_feeds(model, FRESH_SEEDS)
    reference = torch_outputs(name, fresh)
    built = {}
    for method in int8.METHODS:
        built[method] = int8.quantize_static(model, calibration, method=method)
        metrics = quant_metrics(reference, ort_outputs(built[method], fresh))
        assert judge(metrics).status == "pass", (method, judge(metrics).reasons)
    # percentile clips the tails (99.999th percentile of |x|): a narrower input range
    minmax_scale = int8.qdq_params(built["minmax"])["input_DequantizeLinear"][0]
    percentile_scale = int8.qdq_params(built["percentile"])["input_DequantizeLinear"][0]
    assert percentile_scale < minmax_scale
    # ORT 1.32: Entropy through quantize_static has one candidate threshold (128 bins for
    # 128 quantized bins), the full range: byte-identical to MinMax (see onnxconv.int8). If
    # this fails, ORT changed its entropy calibration; update the int8 module docstring.
    assert built["entropy"].SerializeToString() == built["minmax"].SerializeToString()


@pytest.mark.parametrize("name", ["pointwise", "separable", "shuffle_unit"])
def test_dynamic_quantization_where_it_applies(name):
    model = zoo(name)
    dynamic = int8.quantize_dynamic(model)
    ops = [n.op_type for n in dynamic.graph.node]
    assert ops.count("ConvInteger") == sum(n.op_type == "Conv" for n in model.graph.node)
    assert "Conv" not in ops and "DynamicQuantizeLinear" in ops
    fresh = make_feeds(model, FRESH_SEEDS)
    verdict = judge(quant_metrics(torch_outputs(name, fresh), ort_outputs(dynamic, fresh)))
    assert verdict.status == "pass", verdict.reasons


def test_dynamic_quantization_says_when_there_is_nothing_to_quantize():
    with pytest.raises(CheckFailed, match="nothing to quantize dynamically.*Reshape, Transpose"):
        int8.quantize_dynamic(zoo("channel_shuffle"), label="channel_shuffle")


def test_bad_arguments_and_quantizer_errors_are_one_line():
    model = zoo("pointwise")
    calibration = make_feeds(model, range(1))
    with pytest.raises(UserInputError, match="unknown calibration method 'kl'"):
        int8.quantize_static(model, calibration, method="kl")
    with pytest.raises(UserInputError, match="unknown activation type"):
        int8.quantize_static(model, calibration, activation_type="int4")
    with pytest.raises(UserInputError, match="at least one feed"):
        int8.quantize_static(model, [])
    with pytest.raises(UserInputError, match="list of feed dicts"):
        int8.quantize_static(model, calibration[0])
    with pytest.raises(UserInputError, match="calibration feed 0: missing input 'input'"):
        int8.quantize_static(model, [{"x": calibration[0]["input"]}])

    broken = unloadable_model()
    feed = [{"input": np.ones((1, 4), np.float32)}]
    for preprocess in (True, False):
        with pytest.raises(CheckFailed) as caught:
            int8.quantize_static(broken, feed, preprocess=preprocess, label="mystery.onnx")
        message = str(caught.value)
        assert message.startswith("mystery.onnx: ONNX Runtime's") and "\n" not in message


# ---------------------------------------------------------------------------------------------
# metrics


def test_metrics_match_their_definitions():
    ref = np.array([[1.0, -2.0, 3.0, 0.0]])
    got = np.array([[1.0, -2.0, 2.0, 0.5]])
    m = quant_metrics(ref, got)
    assert m.sqnr_db == pytest.approx(10 * math.log10(14 / 1.25))
    assert m.cosine == pytest.approx(
        np.dot(ref[0], got[0]) / np.linalg.norm(ref) / np.linalg.norm(got)
    )
    assert m.max_abs_over_range == pytest.approx(1.0 / 5.0)
    assert m.mean_abs_over_range == pytest.approx(1.5 / 4 / 5.0)
    assert m.top1 is None  # 4 columns: no classifier
    assert quant_metrics(ref, ref).sqnr_db == math.inf
    assert m.to_dict()["sqnr_db"] == m.sqnr_db
    assert quant_metrics(ref, ref).to_dict()["sqnr_db"] == "inf"

    nan = quant_metrics(ref, np.array([[1.0, np.nan, 3.0, 0.0]]))
    assert math.isnan(nan.sqnr_db) and judge(nan).status == "fail"
    with pytest.raises(UserInputError, match="shape"):
        quant_metrics(ref, ref.T)


def test_topk_agreement_of_classifier_logits():
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((100, 20))
    got = ref.copy()
    order = np.argsort(-ref, axis=1)
    rows = np.arange(10)
    # rows 0-9: the fp32 winner drops to 3rd place (still in the top 5)
    got[rows, order[rows, 0]] = (ref[rows, order[rows, 2]] + ref[rows, order[rows, 3]]) / 2
    # rows 10-19: it drops to the bottom
    got[rows + 10, order[rows + 10, 0]] = ref.min() - 1
    m = quant_metrics(ref, got)
    assert m.top1 == pytest.approx(0.80) and m.top5 == pytest.approx(0.90)
    verdict = judge(m)
    assert verdict.status == "fail"
    assert [r.split(" = ")[0] for r in verdict.reasons if "top" in r] == [
        "output: top1",
        "output: top5",
    ]


def test_judge_reports_each_violated_bound_and_rejects_unknown_metrics():
    good = quant_metrics(np.arange(10.0), np.arange(10.0) + 0.001)
    assert judge(good).status == "pass" and judge(good).reasons == ()
    bad = quant_metrics(np.arange(10.0), 2 * np.arange(10.0))
    verdict = judge(bad, name="logits")
    assert verdict.status == "fail"
    assert all(r.startswith("logits: ") and "expected" in r for r in verdict.reasons)
    assert verdict.to_dict()["status"] == "fail"
    assert {r.split(":")[1].split("=")[0].strip() for r in verdict.reasons} == {
        "sqnr_db",
        "max_abs_over_range",
        "mean_abs_over_range",
        "mean_error_over_range",
    }  # cosine is 1.0: a pure scale error keeps the direction
    with pytest.raises(UserInputError, match="no such quantization metric"):
        judge(good, {**TOLERANCES, "psnr": TOLERANCES["sqnr_db"]})


@pytest.mark.slow
def test_deep_network_localisation_and_why_whole_networks_are_not_judged():
    """mobilenet_v1 (width 1/4, 64x64): every QDQ pair is correct on its own, yet the chaotic
    random network (BatchNorm statistics of its data) ends far below a block's int8 bounds at
    its logits, so they cannot judge it; a scale x2 planted in a pair in the middle of the
    network is named first by the layer errors all the same."""
    from onnxconv.export import ExportOptions, to_onnx

    spec = variants.get("mobilenet_v1")
    config = spec.config(dict(width_multiplier=0.25, height=64, width=64, num_classes=100))
    module = spec.build(config, seed=0)
    model = to_onnx(module, spec.example_input(config), {0: "batch"}, ExportOptions())
    batch = feeds.generate(model, "m", batch=16, spatial={}, distribution="normal", seed=1000)
    with torch.no_grad():
        logits = module(torch.from_numpy(batch["input"])).numpy()
    assert logits.std(axis=0).mean() > 0.1 * np.abs(logits).mean()  # they move with the input

    calibration = [
        feeds.generate(model, "m", batch=4, spatial={}, distribution="normal", seed=s)
        for s in range(4)
    ]
    quantized = int8.quantize_static(model, calibration)
    feed = {"input": batch["input"][:2]}
    clean = int8.layer_errors(model, quantized, feed)
    assert len(clean) > 25 and min(e.local_sqnr_db for e in clean) > 30
    correct = quant_metrics(logits, ort_outputs(quantized, [batch]))
    assert judge(correct).status == "fail"  # every pair right, the chaotic logits off

    middle = pair_for(quantized, model, "relu_13")
    broken = plant(quantized, middle.dequantize_node, "scale")
    ranked = int8.layer_errors(model, broken, feed)
    assert ranked[0].tensor == "relu_13" and ranked[0].local_sqnr_db < 1


def expand_dims_model() -> onnx.ModelProto:
    """A Conv then ``com.microsoft.ExpandDims``: ONNX Runtime runs it, its quantization
    pre-processing (symbolic shape inference) gives up on it."""
    weight = numpy_helper.from_array(
        np.random.default_rng(0).standard_normal((4, 4, 3, 3)).astype(np.float32), "w"
    )
    axis = numpy_helper.from_array(np.array(1, np.int32), "axis")
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["input", "w"], ["c"], pads=[1, 1, 1, 1]),
            helper.make_node("ExpandDims", ["c", "axis"], ["output"], domain="com.microsoft"),
        ],
        "g",
        [helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, [1, 4, 8, 8])],
        [helper.make_tensor_value_info("output", onnx.TensorProto.FLOAT, [1, 1, 4, 8, 8])],
        [weight, axis],
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    return helper.make_model(graph, opset_imports=opsets)


def test_a_graph_the_pre_processing_gives_up_on_is_quantized_without_it(tmp_path, monkeypatch):
    """Where ORT's pre-processing fails, the int8 cell used to FAIL conversion; the quantizer
    now runs without it, the deployment is judged like any other, and a note says why."""
    model = expand_dims_model()
    monkeypatch.chdir(tmp_path)  # where the failing shape inference saves its temporary file
    with pytest.raises(Exception, match="Incomplete symbolic shape inference"):
        from onnxruntime.quantization import quant_pre_process

        quant_pre_process(model, str(tmp_path / "pre.onnx"))
    folder = tmp_path / "expand"  # stored outputs speak for it (the reference evaluator cannot)
    (folder / "test_data_set_0").mkdir(parents=True)
    onnx.save(model, folder / "model.onnx")
    x = np.random.default_rng(3).standard_normal((1, 4, 8, 8)).astype(np.float32)
    y = run(make_session(model, Target("cpu", "disabled")), {"input": x})["output"]
    for name, value in (("input_0", ("input", x)), ("output_0", ("output", y))):
        tensor = numpy_helper.from_array(value[1], value[0])
        (folder / "test_data_set_0" / f"{name}.pb").write_bytes(tensor.SerializeToString())
    path = folder
    report = tmp_path / "report.json"
    argv = ["validate", str(path), "--precision", "int8", "--opt-level", "all", "--quiet"]
    assert main([*argv, "--int8-samples", "8", "--json", str(report)]) == 0
    data = json.loads(report.read_text())
    (cell,) = data["cells"]
    assert cell["status"] == "pass" and cell["quant"]["metrics"]["output"]["sqnr_db"] > 30
    (note,) = [n for n in data["subjects"][0]["notes"] if "pre-processing" in n]
    assert note.startswith("int8: ONNX Runtime's quantization pre-processing")
    assert "Incomplete symbolic shape inference; quantized without it" in note


def test_a_bias_is_told_apart_from_noise():
    """mean_abs_over_range mixed noise with bias: correct int8 of squeeze-and-excitation blocks
    (0.0026-0.0031) failed the bound meant for an off-by-one zero point (0.0036-0.0044). The
    signed mean error is 0 for noise of any size and one step for the bias."""
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((8, 16, 7, 7))
    step = (ref.max() - ref.min()) / 255
    noisy = ref + rng.uniform(-1.5, 1.5, ref.shape) * step  # more noise than rounding
    biased = ref + step
    noise, bias = quant_metrics(ref, noisy), quant_metrics(ref, biased)
    assert noise.mean_abs_over_range > 0.0025 and noise.mean_error_over_range < 1e-4
    assert bias.mean_error_over_range == pytest.approx(1 / 255)
    assert "mean_error_over_range" not in " ".join(judge(noise).reasons)
    assert any(r.startswith("output: mean_error_over_range") for r in judge(bias).reasons)


def test_an_accuracy_budget_names_each_metric_once_within_its_range():
    from onnxconv.quant_metrics import parse_budget

    for text, says in [
        ("", "expected metric=value"),
        ("sqnr_db=10,sqnr_db=99", "sqnr_db is named twice"),
        ("cosine=-3", "cosine lies between -1 and 1"),
        ("top1=1.5", "top1 lies between 0 and 1"),
        ("mean_error_over_range=-0.1", "mean_error_over_range lies between 0 and inf"),
    ]:
        with pytest.raises(UserInputError, match=says):
            parse_budget(text)
    assert parse_budget("sqnr_db=-5")["sqnr_db"].value == -5  # any dB is a level
