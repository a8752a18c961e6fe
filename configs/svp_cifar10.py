"""Selection via Proxy on CIFAR-10 (Coleman et al. 2020; ALGORITHMS.md §11).

    python -m jaxal.main --config=configs/svp_cifar10.py --workdir=runs/svp_c10_proxy
    # the baseline, where the target selects its own data:
    python -m jaxal.main --config=configs/svp_cifar10.py --workdir=runs/svp_c10_base \
        --config.model.name=preact_resnet164 --config.target.name=""

The selection model (`model`) is a pre-activation ResNet-20 trained every round; the target
(`target`) is a pre-activation ResNet-164 trained on the final labeled set. Labels: 1,000 at
random (2%), then 4,000 (8%), then 5,000 (10%) per round up to 25,000 (50%). Training: SGD
with momentum 0.9, weight decay 5e-4, batch 128, 181 epochs at lr 0.01 (1 epoch warm-up),
0.1 (90), 0.01 (45), 0.001 (45); random crops with 4-pixel padding and flips; CIFAR-10
per-channel normalization. A cheaper proxy trains fewer epochs, e.g. docs/papers.md's 50-epoch
schedule: `--config.train.epochs=50 --config.train.lr_schedule=0:0.01,1:0.1,46:0.01`.
Speed-up and agreement: `python -m jaxal.svp_report --baseline runs/svp_c10_base --proxy runs/svp_c10_proxy`.
"""

from jaxal import config as config_lib

import ml_collections


def get_config():
  c = config_lib.base_config()
  c.data.source = "tfds"
  c.data.name = "cifar10"
  c.data.normalization = "per_channel"
  c.model.name = "preact_resnet20"
  c.model.options = ml_collections.ConfigDict(dict(width=16))
  c.target.name = "preact_resnet164"
  c.target.options = ml_collections.ConfigDict(dict(width=16))
  c.target.eval_rounds = "last"
  c.train.optimizer = "sgd"
  c.train.momentum = 0.9
  c.train.nesterov = False
  c.train.weight_decay = 5e-4
  c.train.weight_decay_on = "all"
  c.train.batch_size = 128
  c.train.epochs = 181
  c.train.epoch_size = 0
  c.train.lr_schedule = "0:0.01,1:0.1,91:0.01,136:0.001"
  c.augment.flip = True
  c.augment.max_shift = 4
  c.al.initial_size = 1000
  c.al.balanced_initial = False
  c.al.query_schedule = "0:4000,5000:5000"
  c.al.num_rounds = 6  # 1k, 5k, 10k, 15k, 20k, 25k
  c.acquisition.name = "least_confidence"
  return c
