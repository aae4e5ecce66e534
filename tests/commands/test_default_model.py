"""``python -m tflite_opt.default_model``: a wrong subcommand is a usage line and exit 2."""

from tflite_opt.default_model import main


def test_an_unknown_subcommand_prints_the_usage(capsys):
    assert main(["retrain", "everything"]) == 2
    assert capsys.readouterr().err.strip() == (
        "usage: python -m tflite_opt.default_model export | train [mnist_cnn|mnist_mobilenet]"
    )
