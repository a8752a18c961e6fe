"""The paper's image protocol (feature_space_complexity_dal.md §3.2) as a study config.

    python -m jaxal.study --config=configs/study_paper_image.py --root=runs/paper_cifar10 \
        --config.data.data_dir=~/tensorflow_datasets

CIFAR-10 from TFDS (swap `data.name` for mnist, fashion_mnist or svhn_cropped, and set
`data.validation_size` to 10% of that train split). Per run: an initial balanced set of
1,000 labels, 25 acquisition rounds of 1,000 (26 trainings, up to 26,000 labels), 90/10
train/validation split of the training data, up to 500 epochs per round with early stopping
at 99% training accuracy or after 50 epochs without validation improvement (the best
validation model is kept). No augmentation (the paper's Figure 7 turns on flips and crops:
`--config.augment.flip=True --config.augment.max_shift=4`).

Grid: VGG-11/16/19 and ResNet-18/34/50 (Appendix B.2 widths) x random plus the six
acquisitions x DeepCluster pretraining off/on (Siméoni's settings, ALGORITHMS §5) x three
seeds, as the paper ran.

The paper's other axes are config arguments that add a `study.settings` axis:
`study_paper_image.py:initial_size` (initial 1,000 vs 5,000; Figure 6, curves in
`curves_<model>.png`), `:acquisition_size` (500, 1,000, 1,500 per round; Appendix C.2) and
`:augmentation` (off vs flips and 4-pixel crops; Figure 7, bars per `<model>/<setting>`).

Resolved ambiguities: the paper names no optimizer, batch size or learning rate; we use SGD
with momentum 0.9, lr 0.01, weight decay 5e-4 and batch 64 (an assumption, not from the
paper). "Unlabelled pool of 30,000" does not fit CIFAR-10's 45,000 after the split; the
whole remaining training split is the pool here (trim it with `data.max_train`).
"""

import ml_collections

from jaxal import config as config_lib


AXES = {
    "": None,
    "initial_size": dict(init1000=dict(al=dict(initial_size=1000)), init5000=dict(al=dict(initial_size=5000))),
    "acquisition_size": {f"acq{b}": dict(al=dict(query_schedule=f"0:{b}")) for b in (500, 1000, 1500)},
    "augmentation": dict(no_augment=dict(augment=dict(flip=False, max_shift=0)),
                         augment=dict(augment=dict(flip=True, max_shift=4))),
}


def get_config(axis: str = ""):
  if axis not in AXES:
    raise ValueError(f"unknown axis {axis!r}; known: {sorted(a for a in AXES if a)}")
  c = config_lib.base_config()
  c.data.source = "tfds"
  c.data.name = "cifar10"
  c.data.validation_size = 5000  # 10% of CIFAR-10's 50,000 training images
  c.model.name = "resnet18"
  c.model.options = ml_collections.ConfigDict()
  c.train.optimizer = "sgd"
  c.train.momentum = 0.9
  c.train.nesterov = False
  c.train.lr_schedule = "0:0.01"
  c.train.weight_decay = 5e-4
  c.train.weight_decay_on = "kernels"
  c.train.batch_size = 64
  c.train.epochs = 500
  c.train.epoch_size = 0  # one pass over the labeled set
  c.train.stop_at_train_accuracy = 0.99
  c.train.patience = 50
  c.al.initial_size = 1000
  c.al.balanced_initial = True
  c.al.query_schedule = "0:1000"
  c.al.num_rounds = 26  # the initial training plus 25 acquisition rounds
  c.acquisition.options.mc_samples = 10  # BALD passes (DISTIL / BADGE default, ALGORITHMS §12)
  c.pretrain.name = "none"  # the study's pretrain axis sets it per run
  c.study = ml_collections.ConfigDict(dict(
      models=ml_collections.ConfigDict(dict(
          vgg11={}, vgg16={}, vgg19={}, resnet18={}, resnet34={}, resnet50={},
      )),
      acquisitions="random,least_confidence,margin,entropy,bald,coreset,badge",
      pretrain="none,deepcluster",
      seeds="0,1,2",
  ))
  if AXES[axis]:
    c.study.settings = ml_collections.ConfigDict(AXES[axis])
  return c
