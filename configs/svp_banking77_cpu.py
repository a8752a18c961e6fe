"""Selection via Proxy on Banking77 text (../shared/data/banking77), sized for a 2-core CPU.

    python -m jaxal.main --config=configs/svp_banking77_cpu.py --workdir=runs/svp_b77_proxy
    python -m jaxal.main --config=configs/svp_banking77_cpu.py --workdir=runs/svp_b77_base \
        --config.model.name=text_cnn --config.model.options.dim=128 --config.train.epochs=8 --config.target.name=""
    python -m jaxal.svp_report --baseline runs/svp_b77_base --proxy runs/svp_b77_proxy

10,003 training queries (77 intents) form the pool; the 3,080 test queries are held out.
Texts are lower-cased word ids (vocabulary from the training split, 32 tokens). Proxy:
fastText (word + hashed bigram embeddings of width 32); target: a convolutional text
classifier (widths 3/4/5 x 100 filters over 128-wide embeddings). SVP's schedule: 200 at
random (2%), then 800 (8%), then 1,000 (10%) per round up to 5,000 (50%). Adam, lr 1e-3.
"""

import ml_collections

from jaxal import config as config_lib

BANKING77 = config_lib.SHARED_DATA / "banking77"


def get_config():
  c = config_lib.base_config()
  c.data.source = "csv"
  c.data.name = "banking77"
  c.data.path = str(BANKING77 / "train.csv")
  c.data.test_path = str(BANKING77 / "test.csv")
  c.data.text_column = "text"
  c.data.label_column = "category"
  c.data.class_names_path = str(BANKING77 / "categories.json")
  c.data.tokenizer = "words"
  c.data.max_length = 32
  c.model.name = "fasttext"
  c.model.options = ml_collections.ConfigDict(dict(dim=32))
  c.target.name = "text_cnn"
  c.target.options = ml_collections.ConfigDict(dict(dim=128))
  c.target.epochs = 8
  c.target.eval_rounds = "all"
  c.train.optimizer = "adam"
  c.train.weight_decay = 0.0
  c.train.batch_size = 64
  c.train.epochs = 8
  c.train.epoch_size = 0
  c.train.lr_schedule = "0:0.001"
  c.al.initial_size = 200
  c.al.query_schedule = "0:800,1000:1000"
  c.al.num_rounds = 6  # 200, 1000, 2000, 3000, 4000, 5000
  c.acquisition.name = "least_confidence"
  c.acquisition.chunk_size = 1024
  c.train.eval_chunk_size = 1024
  return c
