"""Every acquisition on one model, sized for a 2-core CPU on ../shared/data/mnist_test.

    python -m jaxal.study --config=configs/study_acquisitions_mnist_cpu.py --root=runs/study_acq_mnist

The small CNN (width 16, dropout 0.5), the seven acquisitions of the papers and the newer
ones (BatchBALD, EPIG, TypiClust, ProbCover, Cluster-Margin), two seeds; 8,000-image pool,
2,000 held out; 100 balanced initial labels and 5 rounds of 100. MC-dropout uses 10 passes,
BatchBALD 200 candidates and 2,000 sampled configurations, so a cell stays near a minute.
"""

import ml_collections

from jaxal import config as config_lib

ACQUISITIONS = ("random,least_confidence,margin,entropy,bald,coreset,badge,"
                "batchbald,epig,typiclust,probcover,cluster_margin")


def get_config():
  c = config_lib.base_config()
  config_lib.use_mnist_test(c, test_size=2000)
  c.model.name = "small_cnn"
  c.model.options = ml_collections.ConfigDict(dict(width=16, dropout=0.5))
  c.train.optimizer = "adam"
  c.train.lr_schedule = "0:0.001"
  c.train.weight_decay = 0.0
  c.train.batch_size = 64
  c.train.epochs = 15
  c.train.epoch_size = 512
  c.train.stop_at_train_accuracy = 0.99
  c.al.initial_size = 100
  c.al.balanced_initial = True
  c.al.query_schedule = "0:100"
  c.al.num_rounds = 6
  c.acquisition.options.mc_samples = 10
  c.acquisition.options.batchbald_candidates = 200
  c.acquisition.options.batchbald_samples = 2000
  c.acquisition.chunk_size = 1000
  c.train.eval_chunk_size = 1000
  c.output.plot = False
  c.output.verbose = False
  c.study = ml_collections.ConfigDict(dict(
      models=ml_collections.ConfigDict(dict(small_cnn=dict(width=16, dropout=0.5))),
      acquisitions=ACQUISITIONS,
      pretrain="none",
      seeds="0,1",
  ))
  return c
