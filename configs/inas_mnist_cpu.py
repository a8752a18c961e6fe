"""active-iNAS sized for a 2-core CPU on the MNIST test set in ../shared/data/mnist_test.

    python -m jaxal.main --config=configs/inas_mnist_cpu.py --workdir=runs/inas_mnist

The 10,000 images are split into a pool of 8,000 and 2,000 held out for testing. The grid
has a narrow base width of 16; each round trains 6 epochs of 2,048 samples, iNAS evaluates
candidates for 2. Fixed-architecture baselines at the same width:
    --config.search.name=fixed --config.model.options.blocks=1 --config.model.options.stacks=2
    --config.search.name=fixed --config.model.options.blocks=2 --config.model.options.stacks=4
"""

from jaxal import config as config_lib



def get_config():
  c = config_lib.base_config()
  config_lib.use_mnist_test(c, test_size=2000)
  c.data.normalization = "scalar"
  c.model.name = "resnet_grid"
  c.model.options.blocks = 1
  c.model.options.stacks = 1
  c.model.options.width = 16
  c.train.batch_size = 64
  c.train.epochs = 6
  c.train.epoch_size = 2048
  c.train.lr_schedule = "0:0.05,5:0.005"
  c.train.weight_decay = 1e-3
  c.augment.max_shift = 2
  c.al.initial_size = 100
  c.al.balanced_initial = True
  c.al.query_schedule = "0:100"
  c.al.num_rounds = 8
  c.acquisition.name = "least_confidence"
  c.search.name = "inas"
  c.search.epochs = 2
  c.acquisition.chunk_size = 1000
  c.train.eval_chunk_size = 1000
  return c
