"""Writes the notebooks in colabs/ from the cells below (edit here, then run this file).

    python colabs/build_notebooks.py

Notebooks are stored without outputs; `tests/test_notebooks.py` executes each one.
"""

import pathlib

import nbformat
from nbformat import v4

HERE = pathlib.Path(__file__).resolve().parent

SETUP = '''\
# In Colab: install jaxal from its repository. From a checkout's colabs/ folder: use the checkout.
import pathlib, subprocess, sys, tempfile
JAXAL_GIT = "git+https://github.com/jaxal/jaxal.git"  # the repository to install from in Colab
if "google.colab" in sys.modules:
  subprocess.run([sys.executable, "-m", "pip", "install", "-q", JAXAL_GIT], check=True)
elif (pathlib.Path.cwd().parent / "jaxal").is_dir():
  sys.path.insert(0, str(pathlib.Path.cwd().parent))

import jax
# A persistent compilation cache: runs after the first reuse its compiled steps. It is yours alone
# (in your home, not a shared /tmp where others could plant compiled code for you to load).
XLA_CACHE = pathlib.Path.home() / ".cache" / "jaxal" / "xla"
XLA_CACHE.mkdir(mode=0o700, parents=True, exist_ok=True)
jax.config.update("jax_compilation_cache_dir", str(XLA_CACHE))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
WORK = pathlib.Path(tempfile.mkdtemp(prefix="jaxal_"))  # every run directory of this notebook
print("jax", jax.__version__, jax.devices(), "work in", WORK)'''

DIGITS_CONFIG = '''\
from jaxal import config as config_lib

def digits_config(**changes):
  """A tiny active-learning run on scikit-learn's 8x8 digits (bundled, no download)."""
  c = config_lib.base_config()
  c.data.source = "digits"
  c.data.name = "digits"
  c.data.test_size = 300
  c.model.name = "resnet_grid"           # A(blocks, stacks) ResNet grid of active-iNAS
  c.model.options.blocks = 1
  c.model.options.stacks = 1
  c.model.options.width = 8
  c.train.batch_size = 32
  c.train.epochs = 6
  c.train.epoch_size = 1024             # examples per epoch, drawn from the labeled set
  c.train.steps_per_call = 4
  c.train.lr_schedule = "0:0.05,4:0.005"
  c.al.initial_size = 30                 # class-balanced random start
  c.al.balanced_initial = True
  c.al.query_schedule = "0:30"           # 30 new labels per round
  c.al.num_rounds = 4
  c.acquisition.name = "least_confidence"
  c.output.verbose = False
  c.output.plot = False
  for key, value in changes.items():     # "acquisition.name": "random", ...
    node = c
    *parents, leaf = key.split(".")
    for p in parents:
      node = node[p]
    node[leaf] = value
  return c'''


def md(text):
  return v4.new_markdown_cell(text)


def code(text):
  return v4.new_code_cell(text)


QUICKSTART = [
    md("# jaxal quickstart: active learning on digits\n\n"
       "Active learning trains a model on a few labels, lets it pick the pool points it is least sure of, "
       "asks for their labels, and repeats. This notebook runs that loop on scikit-learn's digits with two "
       "acquisition functions (least confidence and random) and two seeds each, draws the learning curves with "
       "`jaxal.report`, and shows which digits the model asked for. It runs in about a minute on a CPU runtime.\n\n"
       "From a terminal the same run is `python -m jaxal.main --config=configs/digits_demo.py --workdir=DIR`."),
    code(SETUP),
    code(DIGITS_CONFIG),
    md("## Run the loop\n\n`loop.run(config, workdir)` trains, evaluates, scores the pool, selects, labels "
       "(here a simulated oracle reads the true labels) and checkpoints, once per round. It returns the round "
       "records that it also writes to `workdir/rounds.jsonl`."),
    code('''\
from jaxal import loop

runs = {}
for acquisition in ("least_confidence", "random"):
  for seed in (0, 1):
    workdir = WORK / f"{acquisition}_s{seed}"
    history = loop.run(digits_config(**{"acquisition.name": acquisition, "seed": seed}), workdir)
    runs[workdir] = history
    print(f"{acquisition:17s} seed {seed}:", " ".join(f"{r['num_labeled']}:{r['test_accuracy']:.3f}" for r in history))'''),
    md("## Learning curves\n\n`jaxal.report.render` groups the run directories by their config minus the seed, "
       "and draws the mean test accuracy with a standard-error band over seeds, the architecture per round and "
       "the time per round. `jaxal report DIR ... --out FIGS` does the same from a terminal."),
    code('''\
from IPython.display import Image, Markdown, display
from jaxal import report

figures = report.render([str(w) for w in runs], WORK / "figures", passive="random", title="digits")
display(Markdown(figures["table"].read_text()))
display(Image(str(figures["curves"])))
display(Image(str(figures["times"])))'''),
    md("## What did the model ask for?\n\nThe labeled set of a run is in its checkpoint. Leaving out the random "
       "initial set gives the points that least confidence queried; `file_oracle.contact_sheet` draws them "
       "with their labels."),
    code('''\
import numpy as np
from jaxal import checkpoint
from jaxal import file_oracle
from jaxal.data import pool as pool_lib

config = digits_config(**{"acquisition.name": "least_confidence", "seed": 0})
data = loop.load_data(config)
ckpts = checkpoint.RunCheckpoints(WORK / "least_confidence_s0")
pool = ckpts.restore()[0]
ckpts.close()
initial = pool_lib.initial_indices(data.pool.labels, config.al.initial_size, config.seed, balanced=True)
queried = np.setdiff1d(pool.labeled_indices, initial)
print(f"{queried.size} queried points; labels per class:", np.bincount(pool.labels[queried], minlength=10))
file_oracle.contact_sheet(data.pool.inputs[queried[:40]], [f"{pool.labels[i]}" for i in queried[:40]],
                          WORK / "queried.png")
display(Image(str(WORK / "queried.png")))'''),
]

BYOD = [
    md("# Bring your own data: an image folder and people labeling the queries\n\n"
       "A practitioner has a folder of unlabeled images and people who label them. With `oracle.name = "
       "\"files\"` (`--oracle=files` on the command line) jaxal runs until it needs labels, writes the queries "
       "to `WORKDIR/queries/round_NNN.csv` with a contact sheet, and stops. People fill in the `label` column "
       "and the same command continues.\n\n"
       "Here the images come from scikit-learn's digits, and a small function stands in for the person."),
    code(SETUP),
    md("## An image folder\n\nOne subfolder per class (`zero/`, `one/`, ...). The subfolder names are the "
       "class names people write in the label files; jaxal uses the folder labels only to carve out a test "
       "set, never to answer queries when the oracle is `files`."),
    code('''\
import numpy as np
from PIL import Image as PILImage
from sklearn import datasets as skdatasets

NAMES = ["zero", "one", "two", "three", "four"]
FOLDER = WORK / "my_images"
digits = skdatasets.load_digits()
for c, name in enumerate(NAMES):
  (FOLDER / name).mkdir(parents=True)
  for k, img in enumerate(digits.images[digits.target == c][:40]):
    PILImage.fromarray(np.clip(img * 16, 0, 255).astype(np.uint8)).save(FOLDER / name / f"{k:03d}.png")
print(sum(1 for _ in FOLDER.glob("*/*.png")), "images in", FOLDER)'''),
    code('''\
from jaxal import config as config_lib

c = config_lib.base_config()
c.data.source = "image_folder"
c.data.path = str(FOLDER)
c.data.test_size = 50
c.model.options.blocks = 1
c.model.options.stacks = 1
c.model.options.width = 8
c.train.batch_size = 32
c.train.epochs = 6
c.train.epoch_size = 1024
c.train.steps_per_call = 4
c.train.lr_schedule = "0:0.05,4:0.005"
c.al.initial_size = 10
c.al.balanced_initial = False   # a real pool has no labels to balance with
c.al.query_schedule = "0:10"
c.al.num_rounds = 3
c.oracle.name = "files"         # people label the queries
c.output.verbose = False
c.output.plot = False
RUN = WORK / "run"'''),
    md("## Round 0: the run stops and asks\n\nThe initial labeled set also goes through the oracle. "
       "`loop.run` raises `LabelsPending` (the command line prints its message and exits 0)."),
    code('''\
import csv
from IPython.display import Image, display
from jaxal import loop
from jaxal import oracle

def run_until_labels_needed():
  try:
    loop.run(c, RUN)
    print("run finished")
    return True
  except oracle.LabelsPending as pending:
    print(pending)
    return False

run_until_labels_needed()
query = RUN / "queries" / "round_000.csv"
print(query.read_text())
display(Image(str(query.with_suffix(".png"))))'''),
    md("## A person fills in the label column\n\n`answer` plays the person: it looks at an example id (the "
       "image path) and says its class. A person would look at the image or the contact sheet."),
    code('''\
def answer(example_id):
  return pathlib.Path(example_id).parent.name  # stands in for a person looking at the image

def fill_in(path):
  with open(path, newline="") as f:
    rows = list(csv.DictReader(f))
  for row in rows:
    row["label"] = answer(row["id"])
  with open(path, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)

fill_in(query)
run_until_labels_needed()  # trains round 0, selects round 1's queries, and stops again'''),
    md("## A label file with mistakes is rejected whole\n\nInstead of editing the queries file, people can drop "
       "`labels/round_NNN.csv` with `id,label` rows. Every problem is reported with its line, and nothing is "
       "applied until the file is right."),
    code('''\
from jaxal import file_oracle

query = RUN / "queries" / "round_001.csv"
with open(query, newline="") as f:
  ids = [row["id"] for row in csv.DictReader(f)]
bad = RUN / "labels" / "round_001.csv"
bad.parent.mkdir(exist_ok=True)
bad.write_text("id,label\\n" + f"{ids[0]},seven\\n" + f"{ids[1]},1\\n" + "".join(f"{i},{answer(i)}\\n" for i in ids[2:]))
try:
  loop.run(c, RUN)
except file_oracle.LabelFileError as e:
  print(e)'''),
    code('''\
bad.write_text("id,label\\n" + "".join(f"{i},{answer(i)}\\n" for i in ids))  # fixed
for _ in range(c.al.num_rounds):  # each pass answers one round's queries
  if run_until_labels_needed():
    break
  fill_in(sorted((RUN / "queries").glob("round_*.csv"))[-1])'''),
    md("## The result\n\n`jaxal export-labels RUN` (or `cli.export_labels`) writes the labeled set with ids "
       "and class names; `rounds.jsonl` has one line per round."),
    code('''\
from jaxal import checkpoint
from jaxal import cli

print(cli.export_labels(RUN).read_text()[:400])
for r in checkpoint.read_rounds(RUN):
  print(f"round {r['round']}: {r['num_labeled']} labels, test accuracy {r['test_accuracy']:.3f}")'''),
    md("From a terminal the same cycle is:\n\n"
       "```bash\n"
       "python -m jaxal.main --config=my_config.py --workdir=runs/mine --oracle=files\n"
       "# fill in runs/mine/queries/round_000.csv (label column), then rerun the same command\n"
       "jaxal export-labels runs/mine\n"
       "```"),
]

INAS = [
    md("# active-iNAS: the architecture grows with the labeled set\n\n"
       "With `search.name = \"inas\"` each round may deepen or widen the ResNet grid A(blocks, stacks) "
       "(Geifman & El-Yaniv, 2019): candidates one step away are trained briefly on part of the labeled set "
       "and the best one is kept. This notebook runs it on digits and plots the architecture trajectory.\n\n"
       "Full runs: `configs/inas_digits.py`, `configs/inas_mnist_cpu.py`, `configs/inas_cifar10.py`."),
    code(SETUP),
    code(DIGITS_CONFIG),
    code('''\
from jaxal import loop

# steps_per_call=1: each candidate architecture compiles a one-step update (fast to compile).
config = digits_config(**{"search.name": "inas", "search.epochs": 1, "search.max_stacks": 3,
                          "al.num_rounds": 3, "al.initial_size": 40, "al.query_schedule": "0:60",
                          "train.steps_per_call": 1, "train.epoch_size": 512})
history = loop.run(config, WORK / "inas")
for r in history:
  print(f"round {r['round']}: {r['num_labeled']:3d} labels  {r['architecture']:18s} {r['num_params']:6,d} params  "
        f"depth {r['depth']}  test accuracy {r['test_accuracy']:.3f}  search {r['search_seconds']:.1f}s")'''),
    md("## Architecture trajectory\n\n`jaxal.report` draws parameters and depth against the number of labels, "
       "and the time per round split into search, train and score+select."),
    code('''\
from IPython.display import Image, display
from jaxal import report

figures = report.render([f"iNAS={WORK / 'inas'}"], WORK / "figures")
display(Image(str(figures["trajectory"])))
display(Image(str(figures["times"])))'''),
]

SVP = [
    md("# Selection via Proxy: a small model picks the data for a big one\n\n"
       "SVP (Coleman et al., 2020) lets a cheap *proxy* model run the active-learning rounds; the expensive "
       "*target* is trained once on the selected labels. jaxal measures the data-selection speed-up and how "
       "well proxy and target agree on which points are uncertain (Spearman's rho of their scores, top-b "
       "overlap). Here: a small CNN proxy and a pre-activation ResNet-20 target on digits.\n\n"
       "Full runs: `configs/svp_mnist_cpu.py`, `configs/svp_cifar10.py`."),
    code(SETUP),
    code(DIGITS_CONFIG),
    code('''\
import ml_collections
from jaxal import loop

def svp_config(proxy: bool):
  c = digits_config(**{"al.num_rounds": 2, "al.initial_size": 40, "al.query_schedule": "0:60",
                       "train.steps_per_call": 1})
  target = ("preact_resnet20", ml_collections.ConfigDict(dict(width=4)))
  if proxy:
    c.model.name, c.model.options = "small_cnn", ml_collections.ConfigDict(dict(width=4))
    c.target.name, c.target.options = target
    c.target.eval_rounds = "0,last"   # also train the target in round 0 to measure agreement
  else:                               # baseline: the target selects its own data
    c.model.name, c.model.options = target
  return c

baseline = loop.run(svp_config(proxy=False), WORK / "baseline")
proxy = loop.run(svp_config(proxy=True), WORK / "proxy")
for r in proxy:
  print({k: r[k] for k in ("round", "num_labeled", "test_accuracy", "target_test_accuracy", "spearman",
                          "topk_overlap") if k in r})'''),
    md("## SVP's Table 1\n\nSelection time counts training the selection model and scoring the pool, not the "
       "final target training. `python -m jaxal.svp_report --baseline DIR --proxy DIR` prints the same table."),
    code('''\
from IPython.display import Markdown, display
from jaxal import svp_report

table = svp_report.table(svp_report.summarize([str(WORK / "baseline")]), [svp_report.summarize([str(WORK / "proxy")])])
display(Markdown(table))'''),
]

OWN_LOOP = [
    md("# Bring your own training loop: `jaxal.query`\n\n"
       "You train your model your way (here a hand-written Flax MLP and an optax loop) and want jaxal only to "
       "pick which pool points to label next. One call does that:\n\n"
       "```python\n"
       "picked = jaxal.query(apply_fn, variables, pool_inputs, labeled_mask, budget,\n"
       "                     acquisition=\"least_confidence\", key=None, **options)\n"
       "```\n\n"
       "`apply_fn(variables, x, *, train, mc_dropout, rngs=None)` returns `(logits, embedding)`, as jaxal's own "
       "models do; `mc_dropout=True` turns dropout on for BALD-style acquisitions. The pool reaches `apply_fn` "
       "chunk by chunk exactly as you give it (no normalization), through the same chunked, compile-once "
       "scoring and the same acquisitions as `loop.run`. It runs in a few seconds on a CPU runtime."),
    code(SETUP),
    md("## Your data and your model\n\nscikit-learn's 8x8 digits as uint8 images: 1,497 pool points whose "
       "labels stand in for an annotator, and 300 test points."),
    code('''\
import flax.linen as nn
import jax.numpy as jnp
import numpy as np
import optax
from sklearn import datasets as skdatasets

digits = skdatasets.load_digits()
images = np.clip(digits.images * 16, 0, 255).astype(np.uint8)
labels = digits.target.astype(np.int32)
order = np.random.default_rng(0).permutation(len(images))
test_x, test_y = images[order[:300]], labels[order[:300]]
pool_x, pool_y = images[order[300:]], labels[order[300:]]

class MLP(nn.Module):
  """Returns (logits, embedding); dropout is on when training or when asked for MC dropout."""

  @nn.compact
  def __call__(self, x, *, train, mc_dropout):
    h = x.reshape(x.shape[0], -1).astype(jnp.float32) / 255.0  # the model does its own scaling
    h = nn.relu(nn.Dense(64)(h))
    logits = nn.Dense(10)(nn.Dropout(0.3, deterministic=not (train or mc_dropout))(h))
    return logits, h

model = MLP()

def apply_fn(variables, x, *, train, mc_dropout, rngs=None):
  return model.apply(variables, x, train=train, mc_dropout=mc_dropout, rngs=rngs)'''),
    md("## Your training loop\n\nPlain optax: Adam on minibatches of the labeled rows, a fresh model "
       "every round."),
    code('''\
tx = optax.adam(3e-3)

@jax.jit
def train_step(variables, opt_state, x, y, key):
  def loss_fn(v):
    logits, _ = apply_fn(v, x, train=True, mc_dropout=False, rngs={"dropout": key})
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
  updates, opt_state = tx.update(jax.grad(loss_fn)(variables), opt_state)
  return optax.apply_updates(variables, updates), opt_state

@jax.jit
def predict(variables, x):
  return apply_fn(variables, x, train=False, mc_dropout=False)[0].argmax(-1)

def train(labeled_indices, seed, steps=200, batch_size=32):
  key = jax.random.key(seed)
  variables = model.init(key, pool_x[:1], train=False, mc_dropout=False)
  opt_state = tx.init(variables)
  rng = np.random.default_rng(seed)
  for step in range(steps):
    batch = rng.choice(labeled_indices, batch_size)
    variables, opt_state = train_step(variables, opt_state, pool_x[batch], pool_y[batch],
                                      jax.random.fold_in(key, step))
  return variables'''),
    md("## Active learning with `jaxal.query`\n\nEach round trains on the labeled rows, measures test "
       "accuracy, and asks jaxal for the next 20 points. `key` drives the random, BADGE and MC-dropout "
       "acquisitions; `mc_samples` is an acquisition option, as in `config.acquisition.options`."),
    code('''\
import jaxal

def active_learning(acquisition, rounds=5, initial=20, budget=20, seed=0):
  labeled = np.zeros(len(pool_x), bool)
  labeled[np.random.default_rng(seed).choice(len(pool_x), initial, replace=False)] = True
  curve = []
  for r in range(rounds):
    variables = train(np.flatnonzero(labeled), seed=seed * 100 + r)
    curve.append((int(labeled.sum()), float((np.asarray(predict(variables, test_x)) == test_y).mean())))
    picked = jaxal.query(apply_fn, variables, pool_x, labeled, budget, acquisition=acquisition,
                         key=jax.random.fold_in(jax.random.key(seed), r), mc_samples=10)
    labeled[picked] = True  # the annotator labels them; here pool_y already holds the labels
  return curve

curves = {name: active_learning(name) for name in ("least_confidence", "bald", "random")}
for name, curve in curves.items():
  print(f"{name:17s}", " ".join(f"{n}:{acc:.3f}" for n, acc in curve))'''),
    code('''\
import matplotlib.pyplot as plt

fig, ax = plt.subplots(figsize=(5, 3.2))
for name, curve in curves.items():
  ax.plot(*zip(*curve), marker="o", label=name)
ax.set_xlabel("labeled points")
ax.set_ylabel("test accuracy")
ax.legend()
plt.show()'''),
    md("## Compiled once\n\nThe apply function is a static argument of the compiled scoring, so pass the same "
       "function object every round: later calls (another labeled set, another budget) compile nothing."),
    code('''\
from jaxal import compiles

labeled = np.zeros(len(pool_x), bool)
labeled[:50] = True
variables = train(np.arange(50), seed=1)
with compiles.CompileCounter() as counter:
  picked = jaxal.query(apply_fn, variables, pool_x, labeled, 30)
print("picked", picked[:10], "...")
print("compilations on a later call:", counter.count)'''),
]

NOTEBOOKS = {
    "quickstart.ipynb": QUICKSTART,
    "bring_your_own_data.ipynb": BYOD,
    "inas.ipynb": INAS,
    "svp.ipynb": SVP,
    "own_training_loop.ipynb": OWN_LOOP,
}


def build(folder: pathlib.Path = HERE) -> list[pathlib.Path]:
  """Writes every notebook to `folder`; returns their paths."""
  paths = []
  for name, cells in NOTEBOOKS.items():
    nb = v4.new_notebook(cells=cells)
    for k, cell in enumerate(nb.cells):
      cell.id = f"{pathlib.Path(name).stem}-{k:02d}"  # stable ids: rebuilding changes nothing
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["colab"] = {"provenance": []}
    nb.metadata["accelerator"] = "None"
    nbformat.validate(nb)
    path = folder / name
    nbformat.write(nb, path)
    paths.append(path)
  return paths


if __name__ == "__main__":
  for p in build():
    print(p)
