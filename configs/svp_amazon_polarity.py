"""Selection via Proxy on Amazon Review Polarity: a fastText proxy selects for a VDCNN-29 target.

    python -m jaxal.main --config=configs/svp_amazon_polarity.py \
        --config.data.path=DATA/amazon_review_polarity_csv/train.csv \
        --config.data.test_path=DATA/amazon_review_polarity_csv/test.csv
    # the baseline: VDCNN-29 selects for itself
    python -m jaxal.main --config=configs/svp_amazon_polarity.py --workdir=workdirs/svp_amazon_base \
        --config.model.name=vdcnn29 --config.model.options.width=64 --config.target.name="" \
        --config.train.epochs=15 --config.data.path=... --config.data.test_path=...
    python -m jaxal.svp_report --baseline workdirs/svp_amazon_base --proxy workdirs/svp_amazon_polarity

The data is the user's copy of Zhang et al.'s (2015) CSVs (3.6M training and 400k test
reviews; no header; columns: class 1|2, title, review), read from local files: nothing is
downloaded. The review body (column 2) is the text, the class (column 0) the label.
The pool is streamed (`data.pool_storage = "stream"`): the first run converts the CSV once into
WORKDIR/pool_stream (ArrayRecord shards of token ids), and every round reads the pool from there
by index (docs/large_pools.md). To convert ahead of time, run `jaxal convert
--config=configs/svp_amazon_polarity.py --out=DIR` (it reads the default paths below, under
~/data), then `--config=configs/svp_amazon_polarity.py:DIR` reads DIR instead of the CSVs.

Paper settings (SVP §3, ALGORITHMS.md §11): VDCNN-29 target on characters (Zhang et al.'s
alphabet, 1,024 per review); SGD, momentum 0.9, batch 128, 15 epochs with the learning rate
0.01 halved every 3 epochs (the reference code's schedule); SVP's schedule 2% at random,
then 8%, then 10% per round up to 50%; least-confidence selection.

One deviation, recorded here: the loop feeds one tokenization to both roles, so the fastText
proxy reads the same characters and hashes character n-grams up to 5 (the paper's fastText
reads words and word bigrams). It is still a bag of hashed n-grams, mean-pooled, then linear,
and far cheaper than VDCNN-29, which is what SVP needs of a proxy.
"""

import ml_collections

from jaxal import config as config_lib

TRAIN_SIZE = 3_600_000


def get_config(converted: str = ""):
  """`converted`: a directory `jaxal convert` wrote from this config, read instead of the CSVs."""
  c = config_lib.base_config()
  c.data.source = "csv"
  c.data.name = "amazon_review_polarity"
  c.data.path = "~/data/amazon_review_polarity_csv/train.csv"
  c.data.test_path = "~/data/amazon_review_polarity_csv/test.csv"
  c.data.csv_header = False
  c.data.text_column = "2"
  c.data.label_column = "0"
  c.data.tokenizer = "chars"
  c.data.max_length = 1024
  c.data.pool_storage = "stream"  # 3.6M reviews of 1,024 int32 ids: 14.7 GB that never sit in memory
  c.model.name = "fasttext"
  c.model.options = ml_collections.ConfigDict(dict(dim=10, ngrams=5, buckets=2_000_000))
  c.target.name = "vdcnn29"
  c.target.options = ml_collections.ConfigDict(dict(width=64))
  c.target.epochs = 15
  c.target.lr_schedule = "0:0.01,3:0.005,6:0.0025,9:0.00125,12:0.000625"
  c.target.eval_rounds = "last"
  c.train.optimizer = "sgd"
  c.train.momentum = 0.9
  c.train.nesterov = False
  c.train.weight_decay = 0.0
  c.train.batch_size = 128
  c.train.epochs = 5
  c.train.epoch_size = 0
  c.train.lr_schedule = "0:0.1,4:0.01"
  c.al.initial_size = TRAIN_SIZE * 2 // 100  # 72,000
  c.al.query_schedule = f"0:{TRAIN_SIZE * 8 // 100},{TRAIN_SIZE * 10 // 100}:{TRAIN_SIZE * 10 // 100}"
  c.al.num_rounds = 6  # 2%, 10%, 20%, 30%, 40%, 50%
  c.acquisition.name = "least_confidence"
  c.acquisition.chunk_size = 4096
  c.train.eval_chunk_size = 4096
  if converted:  # token ids already: the CSV and tokenizer fields go back to their defaults
    defaults = config_lib.base_config().data
    for field in ("test_path", "csv_header", "text_column", "label_column", "tokenizer", "max_length"):
      c.data[field] = defaults[field]
    c.data.source, c.data.path, c.data.modality = "array_record", converted, "text"
  return c
