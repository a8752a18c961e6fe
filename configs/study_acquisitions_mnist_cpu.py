"""Every acquisition on one model, sized for a 2-core CPU on ../shared/data/mnist_test.

    python -m jaxal.study --config=configs/study_acquisitions_mnist_cpu.py --root=runs/study_acq_mnist

`study_mnist_cpu.py`'s data and training (8,000-image pool, 2,000 held out; 100 balanced
initial labels, 5 rounds of 100; Adam, 15 epochs of 512), with the small CNN only (width 16,
dropout 0.5), no pretraining, and the seven acquisitions of the papers plus the newer ones
(BatchBALD, EPIG, TypiClust, ProbCover, Cluster-Margin), two seeds. MC-dropout uses 10
passes, BatchBALD 200 candidates and 2,000 sampled configurations.
"""

import pathlib

import ml_collections

from jaxal import config as config_lib

ACQUISITIONS = ("random,least_confidence,margin,entropy,bald,coreset,badge,"
                "batchbald,epig,typiclust,probcover,cluster_margin")


def get_config():
  c = config_lib.load_config_file(pathlib.Path(__file__).with_name("study_mnist_cpu.py"))
  c.model.name = "small_cnn"
  c.model.options = ml_collections.ConfigDict(dict(width=16, dropout=0.5))
  c.acquisition.options.batchbald_candidates = 200
  c.acquisition.options.batchbald_samples = 2000
  c.study.models = ml_collections.ConfigDict(dict(small_cnn=dict(width=16, dropout=0.5)))
  c.study.acquisitions = ACQUISITIONS
  c.study.pretrain = "none"
  return c
