"""The model card, the generated code's names and the resize policy's crop rule."""

import pytest

from tflite_opt.core.config import ConvertConfig
from tflite_opt.core.errors import UsageError
from tflite_opt.core.shipping import AppCode, ModelCard, Resize, center_box


def test_a_blank_model_card_entry_is_not_given_and_the_others_are_stripped():
    card = ModelCard("  Digits. ", "", None)
    assert card == ModelCard("Digits.") and ConvertConfig().card == ModelCard()
    assert card.to_dict() == {"description": "Digits.", "author": None, "license": None}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"kotlin_package": "com.example."}, "--kotlin-package"), ({"class_prefix": "9x"}, "--class-prefix")],
)
def test_names_that_would_not_compile_are_refused(kwargs, message):
    with pytest.raises(UsageError, match=message):
        AppCode(**kwargs)
    assert AppCode("com.acme.vision", "Acme").class_prefix == "Acme"


@pytest.mark.parametrize(
    ("picture", "target", "box"),
    [
        ((640, 480), (224, 224), (80, 0, 480, 480)),  # landscape to square: the middle
        ((480, 640), (224, 224), (0, 80, 480, 480)),  # portrait to square
        ((10, 6), (5, 6), (2, 0, 5, 6)),  # width:height 5:6 out of 10x6
        ((101, 100), (224, 224), (0, 0, 100, 100)),  # odd leftover: the extra column on the right
        ((224, 224), (224, 224), (0, 0, 224, 224)),
    ],
)
def test_the_centre_box_keeps_the_models_aspect_ratio_in_whole_pixels(picture, target, box):
    assert center_box(*picture, *target) == box
    assert ConvertConfig().resize is Resize.STRETCH and str(Resize.CENTER_CROP) == "center-crop"
