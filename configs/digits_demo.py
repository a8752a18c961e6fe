"""The demo: active learning on scikit-learn's digits (no download), minutes on 2 CPU cores.

    python -m jaxal.main --config=configs/digits_demo.py --workdir=/tmp/jaxal_digits

A narrow ResNet-grid A(1,2) on 8x8 images; 100 class-balanced initial labels, then 100
per round by least confidence; 360 digits held out for testing.
"""

from jaxal import config as config_lib


def get_config():
  c = config_lib.base_config()
  c.data.source = "digits"
  c.data.name = "digits"
  c.data.test_size = 360
  c.model.name = "resnet_grid"
  c.model.options.blocks = 1
  c.model.options.stacks = 2
  c.model.options.width = 16
  c.train.batch_size = 64
  c.train.epochs = 12
  c.train.epoch_size = 2048
  c.train.steps_per_call = 1  # a small model: compile time, not dispatch, dominates (NOTES §6)
  c.train.lr_schedule = "0:0.05,8:0.005"
  c.train.weight_decay = 1e-3
  c.al.initial_size = 100
  c.al.balanced_initial = True
  c.al.query_schedule = "0:100"
  c.al.num_rounds = 7
  c.acquisition.name = "least_confidence"
  return c
