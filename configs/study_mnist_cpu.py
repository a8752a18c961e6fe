"""The acquisition x architecture study, sized for a 2-core CPU on ../shared/data/mnist_test.

    python -m jaxal.study --config=configs/study_mnist_cpu.py --root=runs/study_mnist

Three architectures of different size (small CNN, narrow ResNet-18, narrow VGG-11), seven
acquisitions, DeepCluster pretraining off and on, two seeds; 8,000-image pool, 2,000 held
out; 100 balanced initial labels and 5 rounds of 100. Pretraining is cut from Siméoni's 400
epochs to 10 (about 10-25 s an epoch here), uses DeepCluster's head re-init and uniform
cluster sampler, and runs once per model and seed: the study shares each backbone across
the acquisitions through ROOT/pretrained.
"""

import ml_collections

from jaxal import config as config_lib



def get_config():
  c = config_lib.base_config()
  config_lib.use_mnist_test(c, test_size=2000)
  c.model.options.dropout = 0.5
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
  c.acquisition.chunk_size = 1000
  c.train.eval_chunk_size = 1000
  c.pretrain.epochs = 10  # the study's pretrain axis turns it on per run
  # Siméoni's head-kept style collapsed here (2 of 50 clusters by epoch 6, small CNN: every
  # pretrained run stuck at 10% accuracy); DeepCluster's head re-init + uniform sampler kept 50.
  c.pretrain.style = "deepcluster"
  c.output.plot = False
  c.output.verbose = False
  c.study = ml_collections.ConfigDict(dict(
      models=ml_collections.ConfigDict(dict(
          small_cnn=dict(width=16, dropout=0.5),
          resnet18=dict(width=8, dropout=0.5),
          vgg11=dict(width=8, fc_width=128, embed=64, dropout=0.5),
      )),
      acquisitions="random,least_confidence,margin,entropy,bald,coreset,badge",
      pretrain="none,deepcluster",
      seeds="0,1",
  ))
  return c
