"""Your own model, acquisition, search and pretraining plug in without changing jaxal.

Everything user-side lives outside the package: the backbone in a tiny package written to a
temporary folder (so the "module:Factory" name form is exercised too), the acquisition,
search and pretraining in this test module. Registrations are removed when the module ends.
"""

import sys
import textwrap
import types

import ml_collections
import numpy as np
import pytest

from jaxal import acquisition
from jaxal import config as config_lib
from jaxal import loop
from jaxal import models
from jaxal import pretrain
from jaxal import proxy
from jaxal import search
from jaxal import study
from jaxal.checkpoint import run_files
from tests.conftest import tiny_config

PACKAGE = "jaxal_user_ext"
NETS = textwrap.dedent('''
    import flax.linen as nn
    import jax.numpy as jnp


    class TinyMLP(nn.Module):
      """A one-layer backbone: flatten -> dense -> relu (jaxal adds the head)."""

      width: int = 8

      @property
      def depth(self):
        return 2

      @nn.compact
      def __call__(self, x, *, train=False, mc_dropout=False):
        del train, mc_dropout
        return nn.relu(nn.Dense(self.width)(x.reshape((x.shape[0], -1)).astype(jnp.float32)))


    class WordBag(TinyMLP):
      takes_vocab = True  # read by `models.takes_vocab` for a "module:attr" name
''')
MODEL, ACQ, SEARCH, PRE = "user_tiny_mlp", "user_second_best", "user_grow", "user_pretrain"
SEEN = {"options": [], "pretrain_calls": 0}


def digits_params(width: int) -> int:
  """TinyMLP on 8x8x1 digits plus jaxal's 10-way head."""
  return (64 * width + width) + (width * 10 + 10)


def second_best(probs):
  """Probability of the runner-up class: high when two classes compete."""
  return np.sort(np.asarray(probs), axis=-1)[:, -2]


def second_best_acquire(view, budget, key):
  del key
  SEEN["options"].append(dict(view.options))
  scores = second_best(view.predictor.probs()) ** view.options["power"]
  return acquisition.top_k_selectable(scores, view.selectable_mask, budget)


def check_power(options):
  if not options["power"] > 0:
    raise config_lib.ConfigError(f"acquisition.options.power: must be > 0, got {options['power']!r}")


def grow_search(context):
  """The configured model, 4 units wider every round."""
  width = int(context.config.model.options.width) + 4 * context.round
  return context.config.model.name, {**dict(context.config.model.options), "width": width}, {"width": width}


def check_grow(config):
  if "width" not in config.model.options:
    raise config_lib.ConfigError("model.options.width: search user_grow needs a width to grow")


def fresh_backbone(*, config, trainer, data, key, mesh):
  """A 'pretraining' that hands back a fresh init: enough to see jaxal store and use it."""
  del config, data, mesh
  SEEN["pretrain_calls"] += 1
  state = trainer.init(key)
  return types.SimpleNamespace(variables={"params": {"backbone": state.params["backbone"]}},
                               history=[{"epoch": 0, "loss": 0.0}], seconds=0.0)


@pytest.fixture(scope="module")
def user_package(tmp_path_factory):
  """`jaxal_user_ext.nets` importable, and the user components registered, for this module only."""
  root = tmp_path_factory.mktemp("user_code")
  (root / PACKAGE).mkdir()
  (root / PACKAGE / "__init__.py").write_text("")
  (root / PACKAGE / "nets.py").write_text(NETS)
  sys.path.insert(0, str(root))
  nets = __import__(f"{PACKAGE}.nets", fromlist=["TinyMLP"])
  models.register(MODEL, nets.TinyMLP)
  acquisition.register(ACQ, second_best_acquire, score=second_best, defaults={"power": 1.0}, validate=check_power)
  search.register(SEARCH, grow_search, validate=check_grow)
  pretrain.register(PRE, fresh_backbone)
  yield nets
  models.unregister(MODEL)
  acquisition.unregister(ACQ)
  search.unregister(SEARCH)
  pretrain.unregister(PRE)
  sys.path.remove(str(root))
  for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
    del sys.modules[name]


def user_config(**overrides):
  c = tiny_config(**{"al.num_rounds": 2, "train.epochs": 1, **overrides})
  c.model.options = ml_collections.ConfigDict(dict(width=8))
  return c


def test_user_model_acquisition_and_search_run_the_loop_with_svp(user_package, tmp_path):
  del user_package
  c = user_config(**{"model.name": f"{PACKAGE}.nets:TinyMLP", "acquisition.name": ACQ, "search.name": SEARCH,
                     "target.name": MODEL, "target.eval_rounds": "0"})
  c.target.options = ml_collections.ConfigDict(dict(width=16))
  SEEN["options"].clear()
  history = loop.run(c, tmp_path)
  assert [r["search"] for r in history] == [{"width": 8}, {"width": 12}]
  assert [r["num_params"] for r in history] == [digits_params(8), digits_params(12)]
  assert [r["architecture"] for r in history] == ["tinymlp", "tinymlp"]
  assert history[0]["acquisition"] == ACQ and history[0]["queried"] == 20
  assert history[0]["target_num_params"] == digits_params(16)  # the registered name as the SVP target
  assert -1 <= history[0]["spearman"] <= 1  # rank correlation: proxy reads the registered `score`
  assert SEEN["options"] == [{"power": 1.0, "mc_samples": 100}]  # the default filled in, once per query


def test_user_components_run_a_study_with_a_user_pretraining(user_package, tmp_path):
  del user_package
  c = user_config()
  with c.unlocked():
    c.study = ml_collections.ConfigDict(dict(models=ml_collections.ConfigDict({MODEL: dict(width=8)}),
                                             acquisitions=ACQ, seeds="0", pretrain=PRE))
  SEEN["pretrain_calls"] = 0
  ran = study.run_study(c, tmp_path)
  assert sorted(r.acquisition for r in ran) == sorted(["random", ACQ]) and {r.pretrain for r in ran} == {PRE}
  assert SEEN["pretrain_calls"] == 1  # the second cell reads the shared backbone cache
  for run in ran:
    rounds = run_files.read_rounds(run.workdir(tmp_path))
    assert [r["num_params"] for r in rounds] == [digits_params(8)] * 2 and rounds[0]["pretrain"] == PRE
  rows = study.report(c, tmp_path)
  assert [(r["model"], r["acquisition"], r["seeds"]) for r in rows] == [(MODEL, ACQ, 1)]


def test_duplicate_names_are_refused_naming_them(user_package):
  for register, name, thing in ((models.register, "resnet_grid", user_package.TinyMLP),
                                (models.register, MODEL, user_package.TinyMLP),
                                (acquisition.register, "margin", second_best_acquire),
                                (acquisition.register, ACQ, second_best_acquire),
                                (search.register, "fixed", grow_search),
                                (pretrain.register, "deepcluster", fresh_backbone)):
    with pytest.raises(ValueError, match=f"'{name}' is already registered"):
      register(name, thing)
  assert models.create("resnet_grid", 2).backbone.__class__.__name__ == "ResNetGrid"  # not replaced


def test_registries_are_live_views(user_package):
  assert ACQ in list(acquisition.ACQUISITIONS) and ACQ in proxy.SCORES and "bald" not in proxy.SCORES
  assert MODEL in models.available() and MODEL not in models.TAKES_VOCAB and "bert" in models.TAKES_VOCAB
  assert models.takes_vocab(f"{PACKAGE}.nets:WordBag") and not models.takes_vocab(f"{PACKAGE}.nets:TinyMLP")
  assert SEARCH in search.SEARCHES and PRE in pretrain.PRETRAINS
  with pytest.raises(TypeError):
    acquisition.ACQUISITIONS["x"] = second_best_acquire  # read-only: register() is the way in
  models.register("user_word_bag", user_package.WordBag, takes_vocab=True)
  try:
    assert "user_word_bag" in models.TAKES_VOCAB
  finally:
    models.unregister("user_word_bag")
  assert "user_word_bag" not in models.TAKES_VOCAB and "user_word_bag" not in models.available()


@pytest.mark.parametrize("overrides,field", [
    ({"model.name": f"{PACKAGE}.nets:Missing"}, "model.name"),
    ({"model.name": "no_such_package_xyz.nets:TinyMLP"}, "model.name"),
    ({"target.name": f"{PACKAGE}.nets:Missing"}, "target.name"),
    ({"model.name": f"{PACKAGE}.nets:TinyMLP", "model.options.depth": 3}, "model.options"),
    ({"acquisition.name": ACQ, "acquisition.options.powr": 2.0}, "acquisition.options.powr"),
    ({"acquisition.name": ACQ, "acquisition.options.power": -1.0}, "acquisition.options.power"),
    ({"acquisition.name": "bald", "acquisition.options.mc_samples": 0}, "acquisition.options.mc_samples"),
    ({"acquisition.name": "coreset", "acquisition.options.kcenter_dtype": "float16"},
     "acquisition.options.kcenter_dtype"),
    ({"search.name": SEARCH, "model.options": ml_collections.ConfigDict()}, "model.options.width"),
])
def test_bad_user_names_and_options_are_one_line_config_errors(user_package, overrides, field):
  del user_package
  c = user_config(**{"model.name": MODEL})
  with c.unlocked():
    for key, value in overrides.items():
      node, *path = key.split(".")
      section = c[node]
      for part in path[:-1]:
        section = section[part]
      section[path[-1]] = value
  with pytest.raises(config_lib.ConfigError) as e:
    config_lib.validate(c)
  assert str(e.value).startswith(field + ":") and "\n" not in str(e.value), str(e.value)


def test_user_names_validate(user_package):
  del user_package
  config_lib.validate(user_config(**{"model.name": f"{PACKAGE}.nets:TinyMLP", "search.name": SEARCH,
                                     "acquisition.name": ACQ, "target.name": MODEL}))
  config_lib.validate(user_config(**{"model.name": MODEL, "pretrain.name": PRE}))
