"""active-iNAS on CIFAR-100, the paper's protocol (see inas_cifar10.py for every setting).

    python -m jaxal.main --config=configs/inas_cifar100.py --workdir=runs/inas_cifar100
"""

import importlib.util
import pathlib


def get_config():
  spec = importlib.util.spec_from_file_location("inas_cifar10", pathlib.Path(__file__).with_name("inas_cifar10.py"))
  base = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(base)
  c = base.get_config()
  c.data.name = "cifar100"
  return c
