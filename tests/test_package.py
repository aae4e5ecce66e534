"""Bundles: manifests read from the file, generated app code, the reference runner, publish and pull."""

import functools
import hashlib
import http.server
import json
import re
import threading

import pytest

from tflite_opt import default_model, repository
from tflite_opt.convert import main as convert_main
from tflite_opt.publish import main as publish_main
from tflite_opt.pull import main as pull_main
from tflite_opt.reference_runner import BundleClassifier, top1_on_folder
from tflite_opt.tflite_file import read_tflite

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    """The default job's output: float32 and int8 bundles."""
    out = tmp_path_factory.mktemp("bundles")
    assert convert_main(["--full-int8", "--output-dir", str(out)]) == 0
    return out


@pytest.fixture
def http_repository(tmp_path):
    """A repository folder served by a local HTTP server on 127.0.0.1."""
    folder = tmp_path / "repo"
    folder.mkdir()

    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_int8_manifest_matches_the_file(bundle_dir):
    manifest = json.loads((bundle_dir / "mnist_cnn.int8.manifest.json").read_text())
    content = (bundle_dir / "mnist_cnn.int8.tflite").read_bytes()
    assert manifest["schema_version"] == 1 and manifest["variant"] == "int8" and manifest["version"] == "1"
    assert manifest["file"]["sha256"] == hashlib.sha256(content).hexdigest()
    assert manifest["file"]["size_bytes"] == len(content)
    tensor_in, tensor_out = read_tflite(content).input_tensors()[0], read_tflite(content).output_tensors()[0]
    assert manifest["input"]["scale"] == tensor_in.quantization.scale
    assert manifest["input"]["zero_point"] == tensor_in.quantization.zero_point
    assert manifest["output"]["zero_point"] == tensor_out.quantization.zero_point
    assert manifest["input"]["shape"] == list(tensor_in.shape) and manifest["input"]["dtype"] == "int8"
    assert manifest["labels"] == [str(i) for i in range(10)]
    assert (bundle_dir / manifest["labels_file"]).read_text().split() == manifest["labels"]
    report = json.loads((bundle_dir / "report.json").read_text())
    measured = next(v for v in report["variants"] if v["variant"] == "int8")
    assert manifest["metrics"]["top1"] == measured["top1"] and manifest["metrics"]["verdict"] == measured["verdict"]
    assert manifest["preprocessing"]["scale"] == report["preprocessing"]["scale"]


def constant(source: str, name: str) -> str:
    match = re.search(rf"\b{name}\b(?::\s*\w+)?\s*=\s*(.+)", source)
    assert match, f"{name} not in the generated code"
    return match.group(1).strip()


def test_generated_kotlin_and_swift_carry_the_manifest_constants(bundle_dir):
    manifest = json.loads((bundle_dir / "mnist_cnn.int8.manifest.json").read_text())
    kotlin = (bundle_dir / "mnist_cnn.int8.kt").read_text()
    swift = (bundle_dir / "mnist_cnn.int8.swift").read_text()
    tensor_in, prep = manifest["input"], manifest["preprocessing"]
    assert float(constant(kotlin, "INPUT_QUANT_SCALE").rstrip("f")) == pytest.approx(tensor_in["scale"], rel=1e-7)
    assert int(constant(kotlin, "INPUT_ZERO_POINT")) == tensor_in["zero_point"]
    assert int(constant(kotlin, "INPUT_HEIGHT")) == prep["resize"]["height"]
    assert constant(kotlin, "MODEL_SHA256").strip('"') == manifest["file"]["sha256"]
    assert constant(kotlin, "val SCALE") == f"floatArrayOf({prep['scale'][0]!r}f)"
    assert int(constant(kotlin, "NUM_CLASSES")) == len(manifest["labels"])
    assert float(constant(swift, "static let inputQuantScale")) == pytest.approx(tensor_in["scale"], rel=1e-7)
    assert int(constant(swift, "static let inputZeroPoint")) == tensor_in["zero_point"]
    assert constant(swift, "static let modelSHA256").strip('"') == manifest["file"]["sha256"]
    assert constant(swift, "static let labelsFile").strip('"') == manifest["labels_file"]


def test_reference_runner_reading_only_the_bundle_matches_the_benchmark(bundle_dir, tmp_path):
    import shutil

    alone = tmp_path / "alone"  # only the three files an app pulls
    alone.mkdir()
    for name in ("mnist_cnn.int8.tflite", "mnist_cnn.int8.manifest.json", "mnist_cnn.labels.txt"):
        shutil.copy(bundle_dir / name, alone / name)
    classifier = BundleClassifier(alone / "mnist_cnn.int8.manifest.json")
    report = json.loads((bundle_dir / "report.json").read_text())
    expected = next(v for v in report["variants"] if v["variant"] == "int8")["top1"]
    assert top1_on_folder(classifier, default_model.EVAL_DIR) == pytest.approx(expected, abs=1e-9)


def test_publish_then_pull_over_http_is_byte_identical(bundle_dir, http_repository, tmp_path, capsys):
    folder, url = http_repository
    assert publish_main(["--from", str(bundle_dir), "--to", str(folder)]) == 0
    index = json.loads((folder / "index.json").read_text())
    assert index["models"]["mnist_cnn"]["latest"] == "1"
    assert set(index["models"]["mnist_cnn"]["versions"]["1"]["variants"]) == {"float32", "int8"}
    destination = tmp_path / "app"
    assert pull_main(["--from", url, "--model", "mnist_cnn", "--variant", "int8", "--to", str(destination)]) == 0
    pulled = (destination / "mnist_cnn.int8.tflite").read_bytes()
    assert pulled == (bundle_dir / "mnist_cnn.int8.tflite").read_bytes()
    assert (destination / "mnist_cnn.int8.manifest.json").is_file() and (destination / "mnist_cnn.labels.txt").is_file()


def test_a_published_version_is_never_overwritten(bundle_dir, tmp_path, capsys):
    repo = tmp_path / "repo"
    assert publish_main(["--from", str(bundle_dir), "--to", str(repo)]) == 0
    before = (repo / "index.json").read_bytes()
    assert publish_main(["--from", str(bundle_dir), "--to", str(repo)]) == 2
    assert "already published" in capsys.readouterr().err
    assert (repo / "index.json").read_bytes() == before
    assert publish_main(["--from", str(bundle_dir), "--to", str(repo), "--version", "2"]) == 0
    index = json.loads((repo / "index.json").read_text())
    assert index["models"]["mnist_cnn"]["latest"] == "2" and set(index["models"]["mnist_cnn"]["versions"]) == {"1", "2"}


def test_a_tampered_file_is_refused_and_nothing_is_left_in_the_destination(
    bundle_dir, http_repository, tmp_path, capsys
):
    folder, url = http_repository
    assert publish_main(["--from", str(bundle_dir), "--to", str(folder)]) == 0
    published = folder / "mnist_cnn" / "1" / "mnist_cnn.int8.tflite"
    tampered = bytearray(published.read_bytes())
    tampered[1000] ^= 0xFF
    published.write_bytes(bytes(tampered))
    destination = tmp_path / "app"
    assert pull_main(["--from", url, "--model", "mnist_cnn", "--variant", "int8", "--to", str(destination)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "altered or damaged" in err
    assert not destination.exists() or list(destination.iterdir()) == []


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "nope"], "has no model 'nope'"),
        (["--model", "mnist_cnn", "--variant", "float16"], "has no variant 'float16'"),
        (["--model", "mnist_cnn", "--version", "9"], "has no version '9'"),
    ],
)
def test_pull_names_what_is_missing(bundle_dir, tmp_path, capsys, args, message):
    repo = tmp_path / "repo"
    assert publish_main(["--from", str(bundle_dir), "--to", str(repo)]) == 0
    assert pull_main(["--from", str(repo), *args, "--to", str(tmp_path / "app")]) == 2
    assert message in capsys.readouterr().err


def test_an_interrupted_publish_leaves_no_version_and_the_index_unchanged(bundle_dir, tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    assert publish_main(["--from", str(bundle_dir), "--to", str(repo), "--version", "1"]) == 0
    before = (repo / "index.json").read_bytes()
    copies = []

    def interrupted_copy(source, target):
        copies.append(source)
        if len(copies) == 3:
            raise KeyboardInterrupt
        return __import__("shutil").copyfile(source, target)

    monkeypatch.setattr(repository.shutil, "copy2", interrupted_copy)
    with pytest.raises(KeyboardInterrupt):
        repository.publish(bundle_dir, repo, version="2")
    assert sorted(p.name for p in (repo / "mnist_cnn").iterdir()) == ["1"]
    assert (repo / "index.json").read_bytes() == before
