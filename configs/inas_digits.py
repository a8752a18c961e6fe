"""active-iNAS on scikit-learn's digits: the growing architecture in about a minute on CPU.

    python -m jaxal.main --config=configs/inas_digits.py --workdir=/tmp/inas_digits
"""

import importlib.util
import pathlib


def get_config():
  spec = importlib.util.spec_from_file_location("digits_demo", pathlib.Path(__file__).with_name("digits_demo.py"))
  base = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(base)
  c = base.get_config()
  c.model.options.blocks = 1
  c.model.options.stacks = 1
  c.search.name = "inas"
  c.search.epochs = 3
  c.search.max_stacks = 3  # 8x8 inputs: 4x4 after the stem, so at most 3 stacks
  return c
