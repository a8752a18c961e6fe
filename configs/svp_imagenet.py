"""Selection via Proxy on ImageNet (Coleman et al. 2020, §3 and Table 1; ALGORITHMS.md §11).

    python -m jaxal.main --config=configs/svp_imagenet.py --workdir=runs/svp_in_r18     # ResNet-18 proxy
    python -m jaxal.main --config=configs/svp_imagenet.py:resnet50_short --workdir=runs/svp_in_r50s
    python -m jaxal.main --config=configs/svp_imagenet.py:resnet18,coreset --workdir=runs/svp_in_r18_cs
    python -m jaxal.main --config=configs/svp_imagenet.py:baseline --workdir=runs/svp_in_base   # R-50 selects
    python -m jaxal.svp_report --baseline runs/svp_in_base --proxy runs/svp_in_r18

The argument is `PROXY[,ACQUISITION]`: PROXY `resnet18` (default; the paper's proxy, trained on
the target's 90-epoch schedule), `resnet50_short` (the target's architecture trained for fewer
epochs, SHORT_EPOCHS, the schedule's milestones scaled by half: the paper's "training for fewer
epochs" proxy, its 2.9x speed-up) or `baseline` (ResNet-50 selects for itself); ACQUISITION
`least_confidence` (default) or `coreset` (greedy k-center on the pooled penultimate features).

The target is ResNet-50 (He et al. 2016, ImageNet stem), trained on the final labeled set.
Labels: the paper's schedule, 2% at random (25,623), then 8%, then 10% per round up to 50%.
Training: the standard ImageNet recipe of the reference (PyTorch) code base: SGD with momentum 0.9,
weight decay 1e-4, batch 256, 90 epochs at lr 0.1 divided by 10 at epochs 30, 60 and 80; flips;
per-channel normalization. Deviation, recorded here: jaxal has no random-resized crop, so the
augmentation is the horizontal flip alone.

Data: TFDS `imagenet2012` (1,281,167 training and 50,000 validation images), prepared once where
the ILSVRC-2012 tars are (`tfds build imagenet2012 --file_format=array_record --data_dir=DIR`,
the tars in `DIR/downloads/manual`; see docs/large_pools.md), read with `--config.data.data_dir=DIR`.
The pool is streamed (`data.pool_storage = "stream"`): about 190 GB of inputs at 224x224 never fit
one host. TFDS decodes imagenet2012 at each image's own size; `data.image_size = (224, 224)`
resizes each one as it is read (no crop: the whole image, its aspect ratio changed). The
downsampled variant reads faster: `--config.data.name=imagenet_resized/64x64
--config.data.image_size="(64, 64)"` (same splits and classes).
"""

import ml_collections

from jaxal import config as config_lib

TRAIN_SIZE = 1_281_167
EPOCHS, LR_SCHEDULE = 90, "0:0.1,30:0.01,60:0.001,80:0.0001"
SHORT_EPOCHS, SHORT_LR_SCHEDULE = 45, "0:0.1,15:0.01,30:0.001,40:0.0001"
PROXIES = ("resnet18", "resnet50_short", "baseline")
ACQUISITIONS = ("least_confidence", "coreset")


def get_config(arg: str = "resnet18"):
  proxy, _, acquisition = arg.partition(",")
  acquisition = acquisition or "least_confidence"
  if proxy not in PROXIES or acquisition not in ACQUISITIONS:
    raise ValueError(f"svp_imagenet.py:{arg}: the argument is PROXY[,ACQUISITION] with PROXY one of {PROXIES} "
                     f"and ACQUISITION one of {ACQUISITIONS}")
  c = config_lib.base_config()
  c.data.source = "tfds"
  c.data.name = "imagenet2012"
  c.data.train_split = "train"
  c.data.test_split = "validation"
  c.data.normalization = "per_channel"
  c.data.pool_storage = "stream"
  c.data.image_size = (224, 224)  # imagenet2012's images each have their own size
  resnet = lambda: ml_collections.ConfigDict(dict(stem="imagenet", width=64))
  c.model.name = "resnet18" if proxy == "resnet18" else "resnet50"
  c.model.options = resnet()
  c.target.name = "" if proxy == "baseline" else "resnet50"
  c.target.options = resnet()
  c.target.eval_rounds = "last"
  c.train.optimizer = "sgd"
  c.train.momentum = 0.9
  c.train.nesterov = False
  c.train.weight_decay = 1e-4
  c.train.weight_decay_on = "all"
  c.train.batch_size = 256
  c.train.epoch_size = 0
  c.train.epochs, c.train.lr_schedule = (SHORT_EPOCHS, SHORT_LR_SCHEDULE) if proxy == "resnet50_short" else (
      EPOCHS, LR_SCHEDULE)
  if c.target.name:  # the target always trains the full schedule
    c.target.epochs, c.target.lr_schedule = EPOCHS, LR_SCHEDULE
  c.train.eval_chunk_size = 256
  c.augment.flip = True
  c.augment.max_shift = 0
  c.al.initial_size = TRAIN_SIZE * 2 // 100  # 25,623
  c.al.balanced_initial = False
  c.al.query_schedule = f"0:{TRAIN_SIZE * 8 // 100},{TRAIN_SIZE * 10 // 100}:{TRAIN_SIZE * 10 // 100}"
  c.al.num_rounds = 6  # 2%, 10%, 20%, 30%, 40%, 50%
  c.acquisition.name = acquisition
  c.acquisition.chunk_size = 256
  return c
