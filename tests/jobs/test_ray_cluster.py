"""The search on a Ray cluster of two nodes (``ray.cluster_utils.Cluster`` on this machine), with the input files
gone from disk once the driver has read them: candidates travel through the object store, not a shared file
system."""

import json
import shutil

import pytest

from tflite_opt.core.config import ConvertConfig, Mode, PruneConfig, SearchConfig
from tflite_opt.core.preprocessing import Preprocessing
from tflite_opt.jobs import ray_search
from tflite_opt.jobs import search as jobs_search
from tflite_opt.jobs.convert import run_convert

ray = pytest.importorskip("ray")
cluster_utils = pytest.importorskip("ray.cluster_utils")
pytestmark = pytest.mark.slow


@pytest.fixture
def two_nodes():
    cluster = cluster_utils.Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    yield cluster.address
    if ray.is_initialized():
        ray.shutdown()
    cluster.shutdown()


def test_candidates_are_built_on_both_nodes_from_what_the_driver_sent(
    two_nodes, outlier_model, outlier_data, tmp_path, monkeypatch
):
    data = shutil.copytree(outlier_data, tmp_path / "data")
    real_portable, real_run, hidden = jobs_search.CandidateBuilder.portable, ray_search.RayRunner.run, []
    rounds = []

    def portable_then_gone(self):
        travelling = real_portable(self)
        hidden.append(data.rename(tmp_path / "gone"))  # nothing a worker could read from the driver's disk
        return travelling

    def run_while_gone(self, builder, requests, ahead=()):
        found = real_run(self, builder, requests, ahead)
        rounds.append(len(requests))
        hidden.pop().rename(data)  # the driver measures the pruned Keras model it ships on its own files
        return found

    monkeypatch.setattr(jobs_search.CandidateBuilder, "portable", portable_then_gone)
    monkeypatch.setattr(ray_search.RayRunner, "run", run_while_gone)
    config = ConvertConfig(
        modes=(Mode.FULL_INT8,),
        model_path=data / outlier_model.name,
        representative_data=data / "calibration",
        eval_data=data / "eval",
        train_data=data / "train.npz",
        output_dir=tmp_path / "out",
        preprocessing=Preprocessing(),
        search=SearchConfig(2.0, sparsities=(0.5, 0.75), refine=False, ray_address=two_nodes),
        prune=PruneConfig(epochs=2, batch_size=64, learning_rate=1e-3, min_steps=0),
    )
    report = run_convert(config)
    assert rounds == [2] and not hidden, "the round of tasks ran without the files"
    saved = json.loads((tmp_path / "out" / "report.json").read_text())["search"]
    assert saved["engine"] == "ray" and saved["address"] == two_nodes and saved["cpus"] == 2
    pruned = [r for r in saved["candidates"] if r["sparsity"]]
    assert len(pruned) == 2 and all(r["failure"] is None for r in pruned)
    nodes = {r["worker"].split("/")[0] for r in pruned}
    assert len(nodes) == 2, f"one level on each node: {nodes}"
    assert report.search.chosen.within_budget
    assert not ray.is_initialized(), "the job disconnects from the cluster it connected to"
