"""active-iNAS on scikit-learn's digits: the growing architecture in about a minute on CPU.

    python -m jaxal.main --config=configs/inas_digits.py --workdir=/tmp/inas_digits
"""

import pathlib

from jaxal import config as config_lib


def get_config():
  c = config_lib.load_config_file(pathlib.Path(__file__).with_name("digits_demo.py"))
  c.model.options.blocks = 1
  c.model.options.stacks = 1
  c.search.name = "inas"
  c.search.epochs = 3
  c.search.max_stacks = 3  # 8x8 inputs: 4x4 after the stem, so at most 3 stacks
  return c
