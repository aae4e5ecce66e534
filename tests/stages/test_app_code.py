"""The generated code's names: model, variant and version in words, so variants and versions never collide."""

from tflite_opt.core.shipping import AppCode
from tflite_opt.stages.app_code import type_name


def test_type_names_carry_model_variant_version_and_prefix():
    manifest = {"model": "mnist_cnn", "variant": "int8-pruned80", "version": "2.0.1"}
    assert type_name(manifest, AppCode()) == "MnistCnnInt8Pruned80V2_0_1"
    assert type_name({**manifest, "model": "3d-faces"}, AppCode()) == "M3dFacesInt8Pruned80V2_0_1"
    assert type_name(manifest, AppCode(class_prefix="Acme")) == "AcmeMnistCnnInt8Pruned80V2_0_1"
    assert type_name({**manifest, "version": "1"}, AppCode()) != type_name({**manifest, "version": "2"}, AppCode())
