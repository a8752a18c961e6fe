"""Depth-Dropout / BBDropout architecture optimization on the MNIST test set, CPU-sized.

    python -m jaxal.main --config=configs/bayes_arch_mnist_cpu.py:dd_spo --workdir=runs/dd_spo
    python -m jaxal.arch_report runs/dd_spo        # Figure 9: pi_l and active filters by round

The argument picks the architecture optimizer: `dd_spo`, `dd_joint`, `dd_upo`, `bb_spo`,
`bb_joint`, `bb_upo` (Depth-Dropout or BBDropout, in SPO, joint or UPO mode; UPO trains on
DeepCluster pseudo-labels of the pool in DeepCluster's style, which did not collapse on
MNIST where Siméoni's did), `pdarts_spo`, `pdarts_joint`, `pdarts_upo` (P-DARTS; UPO
searches on 200 pool rows labeled by k-means of a random supernet's features, k = 5C), or
a fixed baseline `plain1`, `plain5`,
`plain9` (the paper's 1-, 5- and 9-layer CNNs, same block layout). Pool 8,000, 2,000 held
out; 100 initial labels, 100 per round, 4 rounds. The Bayesian models are narrowed for two
CPU cores: width 16, K = 5 layers, 2 structure samples, 8 epochs of 1,024 samples. The
Depth-Dropout prior is Beta(1.1, 1.0), the paper's Focus-2 setting ("U(0, 1.1) and
U(0, 1.0)" for a and b); the reference code's MNIST β = 10 (ALGORITHMS §9) gives
E[π_1] ≈ 0.1, which with 16 filters and this little training reads out one filter in one
layer. P-DARTS is shrunk harder, because XLA:CPU compiles each stage's supernet step for
minutes: cells of 2 intermediate nodes (5 edges; the paper's 4 give 14), 3 stages of
3 -> 4 -> 5 cells (each has a normal cell; with 2 cells both are reductions), 8 channels,
6 epochs per stage of which 2 weight-only, batch 32; the loop trains a 5-cell, 8-channel
darts_net of the derived cells. Swap the acquisition with `--config.acquisition.name=random`.
"""

import ml_collections

from jaxal import config as config_lib

WIDTH, LAYERS = 16, 5
PDARTS_CHANNELS = 8


def get_config(arg: str = "dd_spo"):
  c = config_lib.base_config()
  config_lib.use_mnist_test(c, test_size=2000)
  c.data.normalization = "scalar"
  if arg.startswith("dd_"):
    c.model.name = "depth_dropout"
    c.model.options = ml_collections.ConfigDict(dict(truncation=LAYERS, width=WIDTH, num_samples=2, beta=1.0))
    c.search.name = "depth_dropout_" + arg[3:]
  elif arg.startswith("bb_"):
    c.model.name = "bbdropout"
    c.model.options = ml_collections.ConfigDict(dict(layers=LAYERS, width=WIDTH))
    c.search.name = "bbdropout_" + arg[3:]
  elif arg.startswith("pdarts_"):
    c.model.name = "darts_net"
    c.model.options = ml_collections.ConfigDict(dict(channels=PDARTS_CHANNELS, layers=5))
    c.search.name = "pdarts"
    c.search.mode = arg[len("pdarts_"):]
    p = c.search.pdarts
    p.layers, p.nodes, p.channels = (3, 4, 5), 2, PDARTS_CHANNELS
    p.epochs, p.warmup_epochs, p.batch_size = 6, 2, 32
    p.upo_size = 200  # upo: pool rows searched on, with their DeepCluster pseudo-labels
  elif arg.startswith("plain"):
    c.model.name = "plain_cnn"
    c.model.options = ml_collections.ConfigDict(dict(layers=int(arg[5:]), width=WIDTH))
    c.search.name = "fixed"
  else:
    raise ValueError(f"unknown variant {arg!r}")
  c.pretrain.style = "deepcluster"  # used by the *_upo searches only
  c.train.optimizer = "adam"
  c.train.weight_decay = 0.0
  c.train.batch_size = 64
  c.train.epochs = 8
  c.train.epoch_size = 1024
  c.train.lr_schedule = "0:0.003"
  c.al.initial_size = 100
  c.al.balanced_initial = True
  c.al.query_schedule = "0:100"
  c.al.num_rounds = 4
  c.acquisition.name = "entropy"
  c.search.epochs = 8
  c.acquisition.chunk_size = 1000
  c.train.eval_chunk_size = 1000
  c.output.plot = False
  return c
