"""active-iNAS on SVHN (cropped digits), trimmed to a 50,000-image pool as in the paper.

    python -m jaxal.main --config=configs/inas_svhn.py --workdir=runs/inas_svhn

Every other setting is inas_cifar10.py's; no horizontal flips for digits.
"""

import importlib.util
import pathlib


def get_config():
  spec = importlib.util.spec_from_file_location("inas_cifar10", pathlib.Path(__file__).with_name("inas_cifar10.py"))
  base = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(base)
  c = base.get_config()
  c.data.name = "svhn_cropped"
  c.data.max_train = 50000
  c.augment.flip = False
  return c
