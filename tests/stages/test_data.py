from pathlib import Path

import numpy as np
import pytest
from helpers import CORPUS, mnist_digits, write_pngs
from PIL import Image

from tflite_opt.core.errors import DataError
from tflite_opt.core.preprocessing import Preprocessing
from tflite_opt.core.shipping import Resize
from tflite_opt.stages.data import (
    ImageSize,
    apply_preprocessing,
    calibration_generator,
    load_dataset,
    load_image,
    open_source,
    range_warnings,
    read_labels,
)

GREY_12 = ImageSize(12, 12, 1)


def test_flat_folder_is_resized_to_the_model_input_and_has_no_labels(digit_folders):
    calibration, _ = digit_folders
    dataset = load_dataset(calibration, GREY_12)
    assert dataset.raw.shape == (40, 12, 12, 1)
    assert dataset.raw.dtype == np.uint8
    assert dataset.labels is None


def test_class_subfolders_give_labels_from_folder_names(digit_folders):
    _, evaluation = digit_folders
    dataset = load_dataset(evaluation, ImageSize(28, 28, 1), require_labels=True)
    for label, source in zip(dataset.labels, dataset.sources, strict=True):
        assert source.split("/")[-2] == str(label)


def test_rgb_images_are_converted_to_the_model_channel_count(tmp_path):
    Image.new("RGB", (20, 10), (200, 100, 50)).save(tmp_path / "colour.png")
    grey = load_dataset(tmp_path, GREY_12)
    rgb = load_dataset(tmp_path, ImageSize(12, 12, 3))
    assert grey.raw.shape == (1, 12, 12, 1)
    assert rgb.raw.shape == (1, 12, 12, 3)
    assert tuple(rgb.raw[0, 5, 5]) == (200, 100, 50)


def test_draw_is_deterministic_per_seed_and_sized_as_asked(digit_folders):
    calibration, _ = digit_folders
    first = load_dataset(calibration, GREY_12, limit=10, seed=3)
    again = load_dataset(calibration, GREY_12, limit=10, seed=3)
    other = load_dataset(calibration, GREY_12, limit=10, seed=4)
    assert len(first) == 10
    assert first.sources == again.sources
    assert first.sources != other.sources


def test_fewer_samples_than_asked_is_a_warning(digit_folders):
    calibration, _ = digit_folders
    dataset = load_dataset(calibration, GREY_12, limit=500)
    assert len(dataset) == 40
    assert any("fewer than the 500 asked" in w for w in dataset.warnings)


def test_calibration_samples_are_float32_batches_of_one(digit_folders):
    calibration, _ = digit_folders
    samples = load_dataset(calibration, GREY_12, limit=3).model_input(Preprocessing())
    batches = list(calibration_generator(samples))
    assert len(batches) == 3
    assert all(len(b) == 1 and b[0].shape == (1, 12, 12, 1) and b[0].dtype == np.float32 for b in batches)
    assert 0.0 <= batches[0][0].min() and batches[0][0].max() <= 1.0


def test_empty_folder_is_refused(tmp_path):
    with pytest.raises(DataError, match="contains no images"):
        load_dataset(tmp_path, GREY_12)


def test_missing_source_is_refused(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(tmp_path / "nowhere", GREY_12)


def test_truncated_image_is_refused_naming_the_file(tmp_path):
    images, _ = mnist_digits(2)
    write_pngs(tmp_path, images)
    broken = tmp_path / "digit_001.png"
    broken.write_bytes(broken.read_bytes()[:60])
    with pytest.raises(DataError, match="digit_001.png: unreadable or truncated image"):
        load_dataset(tmp_path, GREY_12)


def test_text_file_named_png_is_refused(tmp_path):
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(DataError, match="notes.png: unreadable"):
        load_dataset(tmp_path, GREY_12)


def test_array_of_the_wrong_shape_is_refused_naming_the_file(tmp_path):
    np.save(tmp_path / "wrong.npy", np.zeros((4, 10, 10, 1), dtype=np.uint8))
    with pytest.raises(DataError, match=r"wrong.npy: array has shape \(4, 10, 10, 1\); expected \(N, 12, 12, 1\)"):
        load_dataset(tmp_path / "wrong.npy", GREY_12)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_inf_is_refused_naming_the_sample(tmp_path, bad):
    x = np.ones((3, 12, 12), dtype=np.float32)
    x[2, 4, 4] = bad
    np.save(tmp_path / "bad.npy", x)
    with pytest.raises(DataError, match="bad.npy: sample 2 contains NaN or inf"):
        load_dataset(tmp_path / "bad.npy", GREY_12)


def test_npz_labels_must_match_the_sample_count(tmp_path):
    np.savez(tmp_path / "data.npz", x=np.zeros((5, 12, 12), np.uint8), y=np.zeros(4, np.int64))
    with pytest.raises(DataError, match="5 samples but 4 labels"):
        load_dataset(tmp_path / "data.npz", GREY_12)


def test_npz_without_labels_is_refused_where_labels_are_required(tmp_path):
    np.savez(tmp_path / "data.npz", x=np.zeros((5, 12, 12), np.uint8))
    with pytest.raises(DataError, match="has no labels"):
        load_dataset(tmp_path / "data.npz", GREY_12, require_labels=True)


def test_object_arrays_are_not_unpickled(tmp_path):
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="objects.npy: cannot read arrays"):
        load_dataset(tmp_path / "objects.npy", GREY_12)


def test_already_normalized_arrays_get_a_range_warning(tmp_path):
    np.save(tmp_path / "normalized.npy", np.random.default_rng(0).random((8, 12, 12), dtype=np.float32))
    dataset = load_dataset(tmp_path / "normalized.npy", GREY_12)
    warnings = range_warnings(dataset, Preprocessing(), tmp_path / "normalized.npy")
    assert len(warnings) == 1 and "already normalized" in warnings[0]


def test_values_far_outside_the_expected_range_get_a_warning(tmp_path):
    np.save(tmp_path / "big.npy", np.full((2, 12, 12), 4000.0, dtype=np.float32))
    dataset = load_dataset(tmp_path / "big.npy", GREY_12)
    assert "far outside" in range_warnings(dataset, Preprocessing(), tmp_path / "big.npy")[0]


def test_pixels_in_range_get_no_warning(digit_folders):
    calibration, _ = digit_folders
    assert range_warnings(load_dataset(calibration, GREY_12), Preprocessing(), calibration) == []


def test_streamed_batches_cover_every_sample_in_order(digit_folders):
    _, evaluation = digit_folders
    source = open_source(evaluation, GREY_12, require_labels=True)
    seen = [indices for _, indices in source.batches(7)]
    assert [len(i) for i in seen] == [7, 7, 7, 7, 7, 5]
    assert np.array_equal(np.concatenate(seen), np.arange(40))
    first, _ = next(iter(source.batches(7)))
    assert np.array_equal(first, source.read(np.arange(7)))


def test_a_broken_image_surfaces_from_the_background_reader(tmp_path):
    images, labels = mnist_digits(6)
    write_pngs(tmp_path, images, labels)
    broken = sorted(tmp_path.rglob("*.png"))[4]
    broken.write_bytes(b"not a png")
    batches = open_source(tmp_path, GREY_12, require_labels=True).batches(2)
    with pytest.raises(DataError, match=f"{broken.name}: unreadable"):
        list(batches)


def test_preprocessing_applies_per_channel_scale_and_offset():
    raw = np.array([[[[0, 255, 100]]]], dtype=np.uint8)
    spec = Preprocessing.from_mean_std(mean=(0.0, 127.5, 100.0), std=(1.0, 127.5, 50.0))
    np.testing.assert_allclose(apply_preprocessing(raw, spec), [[[[0.0, 1.0, 0.0]]]], atol=1e-6)


@pytest.mark.parametrize("path", sorted((CORPUS / "images").iterdir()), ids=lambda p: p.name)
def test_malformed_images_are_a_data_error_naming_the_file(path):
    with pytest.raises(DataError, match=path.name):
        load_image(path, ImageSize(8, 8, 1))


def test_images_past_the_pixel_limit_are_refused_not_just_warned(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5000)
    Image.new("L", (90, 90)).save(tmp_path / "warns.png")  # 8100 pixels: Pillow would only warn
    with pytest.raises(DataError, match="too large to load safely"):
        load_image(tmp_path / "warns.png", ImageSize(8, 8, 1))


@pytest.mark.parametrize("mode", ["I;16", "F", "CMYK", "P", "LA", "1"])
def test_unusual_image_modes_load_as_the_model_channels(tmp_path, mode):
    path = tmp_path / ("image.tiff" if mode in ("I;16", "F", "CMYK") else "image.png")
    Image.new(mode, (10, 12)).save(path)
    for channels in (1, 3):
        loaded = load_image(path, ImageSize(8, 8, channels))
        assert loaded.shape == (8, 8, channels) and loaded.dtype == np.uint8


def class_folders(root, names, per_class=2):
    images, _ = mnist_digits(per_class * len(names), seed=5)
    for i, name in enumerate(names):
        folder = root / name
        folder.mkdir(parents=True)
        for j in range(per_class):
            Image.fromarray(images[i * per_class + j]).save(folder / f"{name}_{j}.png")
    return root


def test_with_labels_each_class_folder_is_looked_up_by_name_whatever_is_missing(tmp_path):
    labels = ["neutral", "happy", "sad", "angry"]  # the model's order, not alphabetical
    source = open_source(class_folders(tmp_path, ["sad", "angry", "neutral"]), GREY_12, labels=labels)
    assert source.mapping.how == "labels" and source.class_names == labels
    by_folder = {Path(source.name(i)).parent.name: int(label) for i, label in enumerate(source.labels)}
    assert by_folder == {"angry": 3, "neutral": 0, "sad": 2}  # happy has no folder and shifts nothing
    assert "looked up by name in --labels" in source.mapping.describe()


def test_a_folder_the_labels_do_not_name_is_refused_listing_the_labels(tmp_path):
    with pytest.raises(DataError, match="class folder 'joy' is not in --labels; the labels are: neutral, happy"):
        open_source(class_folders(tmp_path, ["joy", "happy"]), GREY_12, labels=["neutral", "happy"])


def test_without_labels_numbers_are_indices_and_names_a_sorted_guess(tmp_path):
    numbered = open_source(class_folders(tmp_path / "n", ["3", "1"]), GREY_12)
    assert numbered.mapping.how == "numbers" and not numbered.mapping.guessed
    assert sorted(set(numbered.labels.tolist())) == [1, 3] and numbered.class_names == ["0", "1", "2", "3"]
    named = open_source(class_folders(tmp_path / "s", ["sad", "angry", "happy"]), GREY_12)
    assert named.mapping.guessed and named.class_names == ["angry", "happy", "sad"]
    assert named.mapping.describe() == "3 class folders numbered in sorted order (angry = 0, happy = 1, sad = 2)"


def test_a_flat_folder_is_unlabelled_evaluation_data(digit_folders):
    calibration, _ = digit_folders
    source = open_source(calibration, GREY_12)
    assert source.labels is None and source.mapping is None and len(source) == 40


def test_labels_files_skip_blank_lines_and_refuse_repeats(tmp_path):
    (tmp_path / "labels.txt").write_text("cat\n\n dog \n")
    assert read_labels(tmp_path / "labels.txt") == ["cat", "dog"]
    (tmp_path / "twice.txt").write_text("cat\ndog\ncat\n")
    with pytest.raises(DataError, match="names 'cat' more than once"):
        read_labels(tmp_path / "twice.txt")


def test_center_crop_takes_the_middle_of_a_wider_picture_and_stretch_the_whole(tmp_path):
    picture = np.random.default_rng(0).integers(0, 256, (12, 30)).astype(np.uint8)
    Image.fromarray(picture, mode="L").save(tmp_path / "wide.png")
    cropped = load_image(tmp_path / "wide.png", ImageSize(6, 6, 1, Resize.CENTER_CROP))
    middle = Image.fromarray(picture[:, 9:21], mode="L").resize((6, 6), Image.Resampling.BILINEAR)
    np.testing.assert_array_equal(cropped[..., 0], np.asarray(middle))
    stretched = load_image(tmp_path / "wide.png", ImageSize(6, 6, 1))
    whole = Image.fromarray(picture, mode="L").resize((6, 6), Image.Resampling.BILINEAR)
    np.testing.assert_array_equal(stretched[..., 0], np.asarray(whole))
    assert not np.array_equal(cropped, stretched)
