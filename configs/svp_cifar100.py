"""Selection via Proxy on CIFAR-100: the design card's headline command.

    python -m jaxal.main --config=configs/svp_cifar100.py

Every setting is svp_cifar10.py's (ResNet-20 proxy, ResNet-164 target, 1k + 4k + 4 x 5k
labels, the 181-epoch schedule) on CIFAR-100. Workdir defaults to workdirs/svp_cifar100.
"""

import importlib.util
import pathlib


def get_config():
  spec = importlib.util.spec_from_file_location("svp_cifar10", pathlib.Path(__file__).with_name("svp_cifar10.py"))
  base = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(base)
  c = base.get_config()
  c.data.name = "cifar100"
  return c
