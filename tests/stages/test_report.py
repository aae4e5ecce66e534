"""The report: which variant is chosen, the terminal table, report.json, report.md and the plots."""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from tflite_opt.core.config import Mode, QatConfig, SearchConfig
from tflite_opt.core.preprocessing import Preprocessing
from tflite_opt.core.variant import QatScheme, VariantSpec
from tflite_opt.results.clients import Client, ClientKind
from tflite_opt.results.files import Check, Verification
from tflite_opt.results.inputs import ClassMapping, PixelInputChoice
from tflite_opt.results.measures import LatencyStats, SizeStats, Verdict, VerdictLabel
from tflite_opt.results.report import ConvertReport, TensorInfo, VariantResult
from tflite_opt.results.search import Candidate, SearchOutcome, SearchPhase
from tflite_opt.results.tuning import FineTuned, QatResult, QatStats
from tflite_opt.stages.benchmark import accuracy_stats
from tflite_opt.stages.report import (
    format_markdown,
    format_table,
    latency_spike,
    pixel_input_note,
    write_report_files,
)
from tflite_opt.stages.verdict import paired_drop

LABELS = np.arange(20) % 10


def accuracy(correct: int):
    """Stats of a model that gets the first ``correct`` of 20 images right."""
    predicted = LABELS.copy()
    predicted[correct:] = (predicted[correct:] + 1) % 10
    top_k = np.stack([predicted, *[(predicted + i) % 10 for i in range(1, 5)]], axis=1)
    return accuracy_stats(LABELS, top_k, 10, reference=LABELS)


def result(name, size, gzip_size, correct, label, p50=0.2):
    latency = LatencyStats(p50, 0.01, p50 * 0.9, p50, p50 * 1.1, p50 * 1.2, 3.0, 1, 100, 10, "xnnpack")
    dtype = "FLOAT32" if name == "float32" else "INT8"
    tensor = TensorInfo("x", dtype, (1, 28, 28, 1), None if dtype == "FLOAT32" else 0.004, None)
    return VariantResult(
        variant=name,
        path=Path("out") / f"m.{name}.tflite",
        size=SizeStats(size, gzip_size, {dtype.lower(): 1000}),
        sparsity=0.0,
        verification=Verification(name, (Check("input dtype", True, dtype),)),
        input=tensor,
        output=tensor,
        latency=latency,
        verdict=Verdict(VerdictLabel(label), f"{label} because"),
        accuracy=accuracy(correct),
    )


def report(*variants, **kwargs):
    return ConvertReport(
        model="m",
        output_dir=Path("out"),
        keras_top1=1.0,
        eval_samples=20,
        calibration_samples=10,
        preprocessing=Preprocessing(),
        variants=variants,
        **kwargs,
    )


FLOAT = result("float32", 4000, 3600, 20, "reference")
INT8 = result("int8", 1000, 900, 20, "good")
PRUNED = result("int8-pruned80", 1000, 300, 19, "good")
WRECKED = result("int8-pruned95", 1000, 100, 10, "bad")
INT8_SPEC = VariantSpec(Mode.FULL_INT8)


def test_the_smallest_good_variant_is_chosen_not_a_smaller_bad_one():
    assert report(FLOAT, INT8, PRUNED, WRECKED).chosen.variant == "int8-pruned80"


def test_without_a_good_variant_the_one_losing_least_is_chosen():
    marginal = result("float16", 2000, 1800, 20, "marginal")
    assert report(FLOAT, marginal, WRECKED).chosen.variant == "float16"


def test_a_variant_named_by_a_search_or_option_is_chosen_over_the_rule():
    assert report(FLOAT, INT8, PRUNED, chosen_variant="int8").chosen.variant == "int8"


def test_the_table_has_a_row_per_variant_with_ratios_drop_and_the_chosen_mark():
    table = format_table(report(FLOAT, INT8, PRUNED))
    lines = table.splitlines()
    assert lines[0] == "m: top-1 on 20 held-out images; latency of one image, 1 thread(s), median of 100 runs"
    assert lines[1].split()[:3] == ["variant", "size", "vs"] and lines[1].split()[-1] == "verdict"
    rows = {line.split()[0]: line for line in lines[3:7]}
    assert rows["keras"].split() == ["keras", "100.00%"]
    assert "25.0%" in rows["int8"] and "+0.00 pts" in rows["int8"] and rows["int8"].endswith("good")
    assert "8.3%" in rows["int8-pruned80"] and "+5.00 pts" in rows["int8-pruned80"]
    assert rows["int8-pruned80"].endswith("good *")
    assert "* chosen: int8-pruned80" in lines
    assert lines[-1] == "report: out/report.json (also report.md, tradeoff.png, confusion.png)"


def test_report_json_records_every_variant_with_paths_relative_to_it():
    saved = report(FLOAT, INT8).to_dict()
    assert saved["schema_version"] == 1 and saved["keras_top1"] == 1.0 and saved["reference"] == "float32"
    int8 = saved["variants"][1]
    assert int8["path"] == "m.int8.tflite" and int8["size_ratio"] == 0.25 and int8["gzip_ratio"] == 0.25
    assert int8["top1_drop_points"] == 0.0 and int8["chosen"] and not saved["variants"][0]["chosen"]
    assert int8["checks"] == ["✓ input dtype: INT8"] and int8["verified"]
    assert set(int8["latency_ms"]) == {"mean", "std", "min", "p50", "p90", "p99"}
    assert saved["pruning"] is None and saved["search"] is None


def test_the_search_section_lists_each_candidate_marked():
    mixed = VariantSpec(Mode.FULL_INT8, float_layers=("squash",))
    candidates = (
        Candidate(INT8_SPEC, SearchPhase.INT8, 0.5, 50.0, 900, False, None),
        Candidate(mixed, SearchPhase.FLOAT_LAYERS, 0.99, 1.0, 1500, True, "int8"),
    )
    outcome = SearchOutcome(SearchConfig(2.0), 1.0, 20, False, candidates)
    table = format_table(report(FLOAT, INT8, search=outcome))
    assert "search: budget 2 top-1 points below Keras (100.00%); 2 candidates" in table
    assert any(line.startswith("✗ int8 ") for line in table.splitlines())
    assert any(line.startswith("* int8-mixed1") and line.endswith("squash") for line in table.splitlines())


def test_the_search_section_says_each_candidates_remedy_and_its_fine_tuning_time():
    trained = FineTuned(qat=QatResult(None, QatStats(QatConfig(), 12.4, ())))
    candidates = (
        Candidate(INT8_SPEC, SearchPhase.INT8, 0.5, 50.0, 900, False, None),
        Candidate(
            VariantSpec(Mode.FULL_INT8, qat=QatScheme.QAT), SearchPhase.QAT, 0.99, 1.0, 880, True, "int8", tuned=trained
        ),
    )
    table = format_table(report(FLOAT, INT8, search=SearchOutcome(SearchConfig(2.0), 1.0, 20, False, candidates)))
    rows = {line.split()[1]: line.split() for line in table.splitlines() if line[:2] in ("* ", "✗ ")}
    assert rows["int8"][-2:] == ["0", "none"] and rows["int8-qat"][-2:] == ["12", "qat"]
    missed = SearchOutcome(SearchConfig(2.0), 1.0, 20, False, candidates[:1], qat_not_tried="--qat tries it")
    assert "  quantization-aware training not tried: --qat tries it" in format_table(report(FLOAT, INT8, search=missed))


def test_markdown_has_the_table_verdicts_and_latency():
    text = format_markdown(report(FLOAT, INT8))
    assert text.startswith("# m\n")
    assert "| int8 | 1.0 KiB | 25.0% |" in text and "Chosen: **int8**." in text
    assert "- **int8**: good, good because." in text
    assert "| int8 | 0.200 | 0.010 | 0.180 | 0.200 | 0.220 | 0.240 | 3.0 | xnnpack |" in text


def test_the_report_files_are_written_and_report_json_matches(tmp_path):
    written = report(FLOAT, INT8)
    moved = ConvertReport(**{**written.__dict__, "output_dir": tmp_path})
    write_report_files(moved, overwrite=False)
    assert json.loads((tmp_path / "report.json").read_text()) == json.loads(json.dumps(moved.to_dict()))
    for plot in ("tradeoff.png", "confusion.png"):
        assert (tmp_path / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (tmp_path / "search.png").exists()
    with pytest.raises(Exception, match="exists; pass --overwrite"):
        write_report_files(moved, overwrite=False)


def test_without_labels_the_table_speaks_of_agreement_and_kl():
    fidelity_report = report(FLOAT, INT8, labelled=False)
    lines = format_table(fidelity_report).splitlines()
    assert lines[0].startswith("m: agreement with the float model's top-1 on 20 unlabelled held-out images")
    assert lines[1].split()[-6:] == ["agree", "top-5", "ovl", "drop", "KL", "verdict"]
    saved = fidelity_report.to_dict()
    assert saved["evaluation"]["kind"] == "fidelity" and saved["keras_top1"] is None
    assert saved["variants"][1]["top1"] is None and saved["variants"][1]["agreement_drop_points"] == 0.0


def test_an_implausible_reference_marks_every_verdict_and_says_why():
    doubtful = report(FLOAT, INT8, reference_warning="the float model itself scores 9.0% top-1")
    table = format_table(doubtful)
    assert "warning: the float model itself scores 9.0% top-1; the verdicts (marked ?) are not to be trusted" in table
    assert any(line.rstrip().endswith("good? *") for line in table.splitlines())
    assert [v["verdict_trusted"] for v in doubtful.to_dict()["variants"]] == [False, False]


def test_the_class_mapping_and_the_pixel_input_choice_are_said():
    mapping = ClassMapping("sorted names", ("angry", "happy"), 2)
    choice = PixelInputChoice(True, 256, None, Preprocessing.from_mean_std(127.5, 127.5), 1)
    table = format_table(report(FLOAT, INT8, class_mapping=mapping, pixel_input=choice))
    assert "classes: 2 class folders numbered in sorted order (angry = 0, happy = 1)" in table
    assert (
        "pixel input: the int8 model takes camera pixels as they are (uint8: the pixel; int8: pixel - 128) and "
        "normalizes them itself (x = (pixel - 127.5) / 127.5), because quantizing the normalized input would put "
        "256 of the 256 pixel values on a rounding tie" in table
    )
    off = PixelInputChoice(False, 256, False, Preprocessing.from_mean_std(127.5, 127.5), 1)
    assert "pixel input: off (--noraw-pixel-input): 256 of the 256 pixel values" in pixel_input_note(off)
    assert pixel_input_note(PixelInputChoice(False, 0, None, Preprocessing(), 1)) is None
    prep = Preprocessing.from_mean_std(127.5, 127.5)
    measured = PixelInputChoice(False, 256, None, prep, 1, compared=(0.98, 1.0), compared_on=50)
    assert pixel_input_note(measured) == (
        "pixel input: 256 of the 256 pixel values sit on a rounding tie, so both int8 inputs were measured: taking "
        "pixels 98.00%, taking the normalized input 100.00% (1 image of 50 apart); the normalized-input files ship "
        "(the app rounds half away from zero, in float32, as the manifest says)"
    )
    assert measured.to_dict()["measured"] == {"pixels": 0.98, "normalized": 1.0, "images": 50}
    uint8 = PixelInputChoice(True, 0, None, Preprocessing(), 3, uint8_input=True)
    assert "MediaPipe Tasks fill a uint8 input with camera bytes as they are" in pixel_input_note(uint8)


def counted(variant: VariantResult, labelled: bool = True) -> VariantResult:
    """``variant`` with its drop counted image by image against a reference right on all 20 images."""
    right = variant.accuracy.confusion.diagonal().sum()
    model_right = np.arange(20) < right
    paired = paired_drop(np.ones(20, bool), model_right, labelled)
    return replace(variant, accuracy=replace(variant.accuracy, paired=paired))


def test_the_drop_column_shows_the_interval_and_report_json_records_it():
    counted_report = report(counted(FLOAT), counted(INT8), counted(PRUNED))
    lines = format_table(counted_report).splitlines()
    rows = {line.split()[0]: line for line in lines[3:7]}
    assert "+0.00 ±16.11" in rows["int8"] and "+5.00 ±18.61" in rows["int8-pruned80"]
    assert (
        "drop: top-1 points lost against the float model, counted image by image; ± reaches the farther end of its "
        "95% interval" in lines
    )
    int8 = counted_report.to_dict()["variants"][1]
    assert int8["top1_drop_points"] == 0.0 and int8["top1_drop_ci95_points"] == [-16.1125, 16.1125]  # ±100·z²/(n + z²)
    assert int8["agreement_drop_ci95_points"] is None
    assert int8["accuracy"]["paired_drop"]["reference_only"] == 0
    assert report(FLOAT, INT8).to_dict()["variants"][1]["top1_drop_ci95_points"] is None  # not counted: no interval


def test_without_labels_the_agreement_drop_carries_the_interval():
    fidelity = report(counted(FLOAT, False), counted(PRUNED, False), labelled=False)
    pruned = fidelity.to_dict()["variants"][1]
    assert pruned["top1_drop_ci95_points"] is None and pruned["agreement_drop_points"] == pytest.approx(5.0)
    low, high = pruned["agreement_drop_ci95_points"]
    assert low == pytest.approx(0.89, abs=0.01) and high == pytest.approx(23.61, abs=0.01)  # Wilson, 1 of 20
    assert "+5.00 ±18.61" in format_table(fidelity)
    assert "drop: agreement points lost against the float model" in format_table(fidelity)


def test_the_chosen_variant_of_an_untrusted_reference_is_not_presented_as_plainly_good():
    doubtful = report(FLOAT, INT8, reference_warning="the float model itself scores 38.6% top-1")
    lines = format_table(doubtful).splitlines()
    assert "* chosen: int8 (its verdict, good?, is untrusted: see the warning above)" in lines
    assert any(line.startswith("int8: good?: good because;") for line in lines)
    text = format_markdown(doubtful)
    assert "**Warning:** the float model itself scores 38.6% top-1; the verdicts (marked ?) are not to be trusted." in (
        text
    )
    assert "Chosen: **int8** (its verdict, good?, is untrusted: see the warning above)." in text
    assert "- **int8**: good?, good because." in text
    assert "* chosen: int8" in format_table(report(FLOAT, INT8)).splitlines()  # trusted: as before


def test_each_variant_says_which_app_runtimes_take_it_in_the_table_markdown_and_json():
    refused = "int8 input: MediaPipe Tasks takes uint8 or float32 input; int8 output: it reads uint8 or float32 scores"
    said = (
        Client(ClientKind.INTERPRETER, True, "the bundle's helpers feed it int8 input"),
        Client(ClientKind.MEDIAPIPE_TASKS, False, refused),
    )
    with_clients = report(FLOAT, replace(INT8, clients=said))
    line = "runs in: LiteRT Interpreter / TensorFlowLiteSwift; not in: MediaPipe Tasks ImageClassifier (int8 input, "
    assert f"  {line}int8 output)" in format_table(with_clients).splitlines()
    assert f"{line}int8 output)." in format_markdown(with_clients)
    saved = with_clients.to_dict()["variants"][1]["clients"]
    assert saved["mediapipe_tasks"] == {"name": "MediaPipe Tasks ImageClassifier", "runs": False, "why": refused}
    assert saved["interpreter"]["runs"] and with_clients.to_dict()["variants"][0]["clients"] == {}


def test_report_md_lists_each_files_checks_tensors_feed_operators_and_bundle():
    int8 = replace(INT8, operators=(("CONV_2D", 3), ("SOFTMAX", 1)))
    text = format_markdown(report(FLOAT, int8))
    section = text[text.index("### int8: `m.int8.tflite`") :]
    assert "- ✓ input dtype: INT8" in section
    assert "- input: int8 [1, 28, 28, 1], scale 0.004" in section
    assert "- the app feeds it: x = (pixel - 0) / 255, then q = round(x / 0.004)" in section
    assert "- operators: CONV_2D x3, SOFTMAX x1" in section
    assert "`m.int8.golden.json`, `m.int8.kt`, `m.int8.swift`" in section
    assert "## Files" in text and "latency spikes" not in text
    assert text.rstrip().endswith("![confusion matrix of int8](confusion.png)")


def test_a_latency_spike_is_flagged_where_p99_or_the_mean_runs_far_from_the_p50():
    spiky = replace(INT8.latency, mean=0.63, p50=0.09, p99=14.9)
    assert latency_spike(spiky).startswith("latency spikes: p99 14.900 ms and mean 0.630 ms against a p50 of 0.090")
    assert latency_spike(INT8.latency) is None
    assert "- **int8**: latency spikes" in format_markdown(report(FLOAT, replace(INT8, latency=spiky)))


def test_where_xnnpack_splits_the_graph_the_table_and_markdown_say_what_each_left_operator_costs():
    split = replace(INT8.latency, partitions=2, undelegated=(("SOFTMAX", 1), ("SOME_NEW_OP", 1)))
    text = format_table(report(FLOAT, replace(INT8, latency=split)))
    assert "XNNPACK ran it in 2 parts; left to the built-in kernels: SOFTMAX, SOME_NEW_OP" in text
    assert "    SOFTMAX: float-only in XNNPACK" in text and "SOME_NEW_OP:" not in text
    markdown = format_markdown(report(FLOAT, replace(INT8, latency=split)))
    assert "  - SOFTMAX: float-only in XNNPACK" in markdown
    assert "SOFTMAX: float-only" not in format_table(report(FLOAT, INT8))
