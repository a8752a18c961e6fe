"""active-iNAS on CIFAR-10 with the paper's hyperparameters (Geifman & El-Yaniv 2019).

    python -m jaxal.main --config=configs/inas_cifar10.py --workdir=runs/inas_cifar10 \
        --config.data.data_dir=~/tensorflow_datasets

The architecture starts at A(1,1) and grows by iNAS (one expansion step per round, 50-epoch
premature evaluation on an 80/20 split). The paper's fixed baselines are the same loop with
`--config.search.name=fixed` and `--config.model.options.blocks=1 --config.model.options.stacks=2`
(A(1,2)) or `blocks=2, stacks=4` (A(2,4) = ResNet-18). Settings from ALGORITHMS.md §7.3: 2,000 initial labels, queries of 2,000 until
10,000 labels and 5,000 after, up to 50,000; 200 epochs of 390 x 128 samples; Nesterov SGD
0.1 -> 0.01 (epoch > 100) -> 0.001 (epoch > 150); Keras l2(5e-4) on conv kernels, i.e.
weight decay 1e-3 on the gradient; +-15 deg rotation, 10% shifts, flips; scalar mean/std.
The acquisition is a config field: least_confidence (softmax response), mc_variance
(MC-dropout, p = 0.5 before the classifier), or coreset.
"""

from jaxal import config as config_lib


def get_config():
  c = config_lib.base_config()
  c.data.source = "tfds"
  c.data.name = "cifar10"
  c.data.normalization = "scalar"
  c.model.name = "resnet_grid"
  c.model.options.blocks = 1  # the fixed-architecture baseline; iNAS overrides it
  c.model.options.stacks = 2
  c.model.options.width = 64
  c.model.options.dropout = 0.5  # only active during MC-dropout scoring
  c.train.optimizer = "sgd"
  c.train.nesterov = True
  c.train.momentum = 0.9
  c.train.batch_size = 128
  c.train.epochs = 200
  c.train.epoch_size = 390 * 128
  c.train.lr_schedule = "0:0.1,101:0.01,151:0.001"
  c.train.weight_decay = 1e-3
  c.train.weight_decay_on = "conv"
  c.augment.flip = True
  c.augment.max_shift = 3  # 10% of 32
  c.augment.max_degrees = 15.0
  c.al.initial_size = 2000
  c.al.balanced_initial = False
  c.al.query_schedule = "0:2000,10000:5000"
  c.al.num_rounds = 13  # 2k, 4k, 6k, 8k, 10k, 15k, ..., 50k
  c.acquisition.name = "least_confidence"
  c.acquisition.options.mc_samples = 100
  c.search.name = "inas"
  c.search.initial_blocks = 1
  c.search.initial_stacks = 1
  c.search.steps = 1
  c.search.epochs = 50
  return c
