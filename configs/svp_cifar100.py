"""Selection via Proxy on CIFAR-100: the design card's headline command.

    python -m jaxal.main --config=configs/svp_cifar100.py

Every setting is svp_cifar10.py's (ResNet-20 proxy, ResNet-164 target, 1k + 4k + 4 x 5k
labels, the 181-epoch schedule) on CIFAR-100. Workdir defaults to workdirs/svp_cifar100.
"""

import pathlib

from jaxal import config as config_lib


def get_config():
  c = config_lib.load_config_file(pathlib.Path(__file__).with_name("svp_cifar10.py"))
  c.data.name = "cifar100"
  return c
