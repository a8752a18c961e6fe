"""Architecture optimization x acquisition on the MNIST test set, CPU-sized (Focus 2).

    python -m jaxal.study --config=configs/study_arch_mnist_cpu.py --root=runs/study_arch

One study whose `settings` are the architecture choices of `configs/bayes_arch_mnist_cpu.py`:
the fixed 1-, 5- and 9-layer CNNs, Depth-Dropout and BBDropout pre-optimized on the initial
labels (SPO) and Depth-Dropout re-optimized every round (joint), each with random plus three
acquisitions. The report's spread figures are the paper's Figures 8 and 10
(`spread_by_architecture.png`, `spread_by_acquisition.png`) and `jaxal.arch_report` draws
Figure 9 from any Depth-Dropout run. Choose the architecture choices with the config
argument, a comma list of variant names of bayes_arch_mnist_cpu.py, e.g.
`--config=configs/study_arch_mnist_cpu.py:plain1,plain5,dd_spo,pdarts_spo`.
"""

import copy
import pathlib

import ml_collections

from jaxal import config as config_lib
from jaxal import study

VARIANTS = "plain1,plain5,plain9,dd_spo,bb_spo,dd_joint"
_HERE = pathlib.Path(__file__).resolve().parent


def get_config(variants: str = VARIANTS):
  base = config_lib.load_config_file(_HERE / "bayes_arch_mnist_cpu.py:plain5")
  c = copy.deepcopy(base)
  settings = {}
  for name in variants.split(","):
    variant = config_lib.load_config_file(_HERE / f"bayes_arch_mnist_cpu.py:{name}")
    settings[name] = study.overrides_between(base, variant)
  c.output.verbose = False
  c.study = ml_collections.ConfigDict(dict(
      models=ml_collections.ConfigDict(dict(plain_cnn=base.model.options.to_dict())),
      settings=ml_collections.ConfigDict(settings),
      acquisitions="random,entropy,coreset,badge",
      seeds="0",
  ))
  return c
