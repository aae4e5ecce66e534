"""``python -m tflite_opt.debug``: the ranked table, JSON, and an unknown layer refused."""

import json

import pytest

from tflite_opt.debug import main

pytestmark = pytest.mark.slow


def test_the_ranked_table_and_json(outlier_model, outlier_data, capsys):
    common = ["--model", str(outlier_model), "--representative-data", str(outlier_data / "calibration")]
    assert main([*common, "--input-scale", str(1 / 255)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith("outlier_model: int8 error per layer on 100 calibration samples")
    assert table[3].split()[0] == "squash"

    assert main([*common, "--input-scale", str(1 / 255), "--float-layers", "squash", "--json"]) == 0
    layers = json.loads(capsys.readouterr().out)["layers"]
    assert "squash" not in [e["layer"] for e in layers]  # kept in float, so not measured
    assert max(e["relative_error"] for e in layers) < 0.1

    assert main([*common, "--float-layers", "nosuch"]) == 2
    assert "has no layer nosuch" in capsys.readouterr().err
