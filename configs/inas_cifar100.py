"""active-iNAS on CIFAR-100, the paper's protocol (see inas_cifar10.py for every setting).

    python -m jaxal.main --config=configs/inas_cifar100.py --workdir=runs/inas_cifar100
"""

import pathlib

from jaxal import config as config_lib


def get_config():
  c = config_lib.load_config_file(pathlib.Path(__file__).with_name("inas_cifar10.py"))
  c.data.name = "cifar100"
  return c
