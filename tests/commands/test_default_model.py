"""``python -m tflite_opt.default_model``: export or train, what each printed, and a wrong subcommand as a usage
line and exit 2 (the jobs stubbed: training takes minutes; the jobs are tested in tests/jobs)."""

import types

import pytest

from tflite_opt import default_model
from tflite_opt.core.default_data import DATA_DIR, EVAL_DIR, MODEL_NAME
from tflite_opt.default_model import main
from tflite_opt.jobs.default_model import BUILDERS

USAGE = "usage: python -m tflite_opt.default_model export | train [mnist_cnn|mnist_mobilenet]"


def test_export_writes_the_default_data_and_says_how_many_digits_where(stub, capsys):
    export = stub(default_model, "export_mnist", result=types.SimpleNamespace(train=4000, calibration=200, eval=1000))
    assert main(["export"]) == 0
    assert capsys.readouterr().out == f"wrote 4000 training, 200 calibration, 1000 eval digits to {DATA_DIR}\n"
    assert export.received == {"seed": 0, "data_dir": DATA_DIR}


@pytest.mark.parametrize("argv, name", [(["train"], MODEL_NAME), (["train", "mnist_mobilenet"], "mnist_mobilenet")])
def test_train_retrains_the_model_named_or_the_default_and_prints_its_top1(stub, argv, name, capsys):
    train = stub(default_model, "train_default_model", result=0.98765)
    assert main(argv) == 0
    assert train.received["name"] == name
    assert capsys.readouterr().out == f"saved {BUILDERS[name][1]}; top-1 on {EVAL_DIR}: 0.9877\n"


@pytest.mark.parametrize(
    "argv",
    [[], ["retrain", "everything"], ["train", "resnet50"], ["Export"]],
    ids=["none", "retrain", "unknown model", "case"],
)
def test_an_unknown_subcommand_prints_the_usage_and_runs_nothing(stub, argv, capsys):
    export = stub(default_model, "export_mnist")
    train = stub(default_model, "train_default_model")
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.strip() == USAGE and captured.out == ""
    assert export.calls == train.calls == []
