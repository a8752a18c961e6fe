"""Selection via Proxy sized for a 2-core CPU on the MNIST test set (../shared/data/mnist_test).

    python -m jaxal.main --config=configs/svp_mnist_cpu.py --workdir=runs/svp_mnist_proxy
    python -m jaxal.main --config=configs/svp_mnist_cpu.py --workdir=runs/svp_mnist_base \
        --config.model.name=preact_resnet20 --config.train.epochs=6 \
        --config.target.name=""
    python -m jaxal.svp_report --baseline runs/svp_mnist_base --proxy runs/svp_mnist_proxy

Pool of 8,000 and 2,000 held out. SVP's schedule scaled down: 160 random labels (2%), then
640 (8%), then 800 (10%) per round up to 4,000 (50%). Proxy: a small CNN (width 8) trained
4 epochs; target: a pre-activation ResNet-20 (width 8) trained 6 epochs. The target is also
trained at rounds 1 and 3 for the agreement measurements (`target.eval_rounds`).
"""

import ml_collections

from jaxal import config as config_lib



def get_config():
  c = config_lib.base_config()
  config_lib.use_mnist_test(c, test_size=2000)
  c.model.name = "small_cnn"
  c.model.options = ml_collections.ConfigDict(dict(width=8))
  c.target.name = "preact_resnet20"
  c.target.options = ml_collections.ConfigDict(dict(width=8))
  c.target.epochs = 6
  c.target.eval_rounds = "1,3,last"
  c.train.optimizer = "sgd"
  c.train.momentum = 0.9
  c.train.nesterov = False
  c.train.weight_decay = 5e-4
  c.train.weight_decay_on = "all"
  c.train.batch_size = 64
  c.train.epochs = 4
  c.train.epoch_size = 0
  c.train.lr_schedule = "0:0.05"
  c.al.initial_size = 160
  c.al.query_schedule = "0:640,800:800"
  c.al.num_rounds = 6  # 160, 800, 1600, 2400, 3200, 4000
  c.acquisition.name = "least_confidence"
  c.acquisition.chunk_size = 1000
  c.train.eval_chunk_size = 1000
  return c
