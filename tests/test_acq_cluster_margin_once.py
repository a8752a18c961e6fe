"""Cluster-Margin in the loop clusters once per run (the paper), and a resumed run reuses the
very clustering its checkpoint holds, so it picks what an uninterrupted run picks."""

import numpy as np

from jaxal import checkpoint as checkpoint_lib
from jaxal import loop
from jaxal.acquisition import cluster_margin as cluster_margin_lib
from jaxal.checkpoint import run_files
from tests.conftest import run_killed_after, tiny_config

DETERMINISTIC = ("round", "num_labeled", "test_accuracy", "test_loss", "architecture", "num_params", "depth",
                 "epochs", "train_accuracy", "train_loss", "queried")


def _config():
  return tiny_config(**{"train.steps_per_call": 1, "acquisition.name": "cluster_margin"})


def _counting(monkeypatch):
  calls = []
  real = cluster_margin_lib.cluster_pool

  def counted(embeddings, **kwargs):
    calls.append(int(embeddings.shape[0]))
    return real(embeddings, **kwargs)

  monkeypatch.setattr(cluster_margin_lib, "cluster_pool", counted)
  return calls


def _final(workdir):
  ckpts = checkpoint_lib.RunCheckpoints(workdir)
  pool, _, _ = ckpts.restore()
  state = ckpts.restore_acquisition_state(pool.round)
  ckpts.close()
  return pool, state


def test_clusters_once_and_a_resumed_run_reuses_the_saved_clustering(tmp_path, monkeypatch):
  calls = _counting(monkeypatch)
  reference = loop.run(_config(), tmp_path / "reference")
  assert [r["queried"] for r in reference] == [20, 20, 0]  # rounds 0 and 1 acquire
  assert len(calls) == 1  # in round 0 only; round 1 reuses it
  ref_pool, ref_state = _final(tmp_path / "reference")
  assert set(ref_state) == {"cluster_margin"} and ref_state["cluster_margin"]["labels"].shape == (calls[0],)

  # Killed once round 0 is checkpointed (its jsonl line not yet written), then resumed.
  crash_dir = tmp_path / "crash"
  run_killed_after(monkeypatch, _config(), crash_dir, 1)
  del calls[:]
  resumed = loop.run(_config(), crash_dir)
  assert calls == []  # round 1 selected with the clustering from round 0's checkpoint
  rows = run_files.read_rounds(crash_dir)
  assert [{k: a[k] for k in DETERMINISTIC} for a in rows] == [{k: b[k] for k in DETERMINISTIC} for b in reference]
  assert resumed[-1]["num_labeled"] == 60
  pool, state = _final(crash_dir)
  np.testing.assert_array_equal(pool.labeled_mask, ref_pool.labeled_mask)
  np.testing.assert_array_equal(pool.labels, ref_pool.labels)
  for name, array in ref_state["cluster_margin"].items():
    np.testing.assert_array_equal(state["cluster_margin"][name], array)
