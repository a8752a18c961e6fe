"""active-iNAS on SVHN (cropped digits), trimmed to a 50,000-image pool as in the paper.

    python -m jaxal.main --config=configs/inas_svhn.py --workdir=runs/inas_svhn

Every other setting is inas_cifar10.py's; no horizontal flips for digits.
"""

import pathlib

from jaxal import config as config_lib


def get_config():
  c = config_lib.load_config_file(pathlib.Path(__file__).with_name("inas_cifar10.py"))
  c.data.name = "svhn_cropped"
  c.data.max_train = 50000
  c.augment.flip = False
  return c
