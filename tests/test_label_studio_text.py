"""Text tasks of the Label Studio oracle show each queried example's original text (issue 30).

No server: a recording stand-in for `label_studio_api.Client` keeps the tasks jaxal pushes. The
text expected for a task is found independently of jaxal's ids: read with the `csv` module (or
`tfds.data_source`), it is the one source row whose "chars" token ids (a fixed alphabet, no
vocabulary fitted) are pool row `jaxal_index`'s and whose label is that row's.
"""

import csv

import numpy as np
import pytest

from jaxal import label_studio
from jaxal import loop
from jaxal import oracle
from jaxal.data import datasets
from jaxal.data import raw_text
from jaxal.data import stream
from jaxal.data import tokenize
from tests.conftest import tiny_config

MAX_LENGTH = 160  # longer than every text: the token ids identify the whole text


class RecordingClient:
  """`label_studio_api.Client`'s methods, keeping projects and tasks in memory."""

  def __init__(self, url, token, token_source, timeout=60.0):
    del token, token_source, timeout
    self.url, self.projects, self.created, self.versions = url, {}, [], []

  def project(self, project_id):
    return self.projects.get(project_id)

  def projects_titled(self, title):
    return [p for p in self.projects.values() if p["title"] == title]

  def create_project(self, title, label_config, description):
    del description
    project = {"id": len(self.projects) + 1, "title": title, "label_config": label_config}
    self.projects[project["id"]] = project
    return project

  def set_model_version(self, project_id, model_version):
    self.versions.append((project_id, model_version))

  def import_tasks(self, project_id, tasks):
    self.created.extend(dict(t, id=len(self.created) + k + 1, project=project_id) for k, t in enumerate(tasks))

  def tasks(self, project_id):
    return [t for t in self.created if t["project"] == project_id]


@pytest.fixture
def connect(monkeypatch):
  monkeypatch.setattr(label_studio, "Client", RecordingClient)
  monkeypatch.setenv("JAXAL_TEST_LS_TOKEN", "secret")


def config_for(**data):
  config = tiny_config(**{"oracle.name": "label_studio", "oracle.token_env": "JAXAL_TEST_LS_TOKEN"})
  config.data.name = ""
  config.data.update(dict(tokenizer="chars", max_length=MAX_LENGTH, seed=3, **data))
  return config


def push_queries(config, work, indices):
  """The tasks that one round's query of `indices` pushes, and the run's data."""
  data = loop.load_data(config, workdir=work)
  lso = oracle.make_oracle(config, work, data)
  with pytest.raises(oracle.LabelsPending):
    lso.reveal(indices, round=0)
  return lso.client.created, data


def chars(text):
  return tokenize.encode_texts([text], tokenizer="chars", max_length=MAX_LENGTH)[0][0]


def assert_shows_the_source_text(tasks, data, rows):
  """`rows`: `(joined text, class name)` of every source row, read independently of jaxal."""
  tokens, names = np.asarray(data.pool.inputs), data.dataset.class_names
  assert len({t for t, _ in rows}) == len(rows)
  for task in tasks:
    i = task["data"]["jaxal_index"]
    match = [text for text, label in rows
             if np.array_equal(chars(text), tokens[i]) and label == names[data.pool.labels[i]]]
    assert len(match) == 1, (i, task["data"])
    assert task["data"]["text"] == match[0]


def write_reviews(path):
  """A BOM, a quoted body with a comma and a line break, blank lines, blank bodies, unicode."""
  with open(path, "w", encoding="utf-8-sig", newline="") as f:
    w = csv.writer(f)
    w.writerow(["title", "body", "stars"])
    for n in range(40):
      body = {0: "", 1: f"long, \"quoted\"\nsecond line {n}", 2: f"fine café {n}"}[n % 3]
      w.writerow([f"Review {n}", body, ["good", "bad", "meh"][n * 7 % 3]])
      if n % 11 == 5:
        f.write("\r\n")  # a blank record between rows


def csv_rows(path):
  with open(path, encoding="utf-8-sig", newline="") as f:
    records = [r for r in list(csv.reader(f))[1:] if r]
  return [(" | ".join(c for c in r[:2] if c.strip()), r[2]) for r in records]


@pytest.mark.parametrize("storage", ["memory", "stream"])
def test_csv_tasks_show_the_joined_columns_of_their_row(connect, tmp_path, storage):
  write_reviews(tmp_path / "reviews.csv")
  config = config_for(source="csv", path=str(tmp_path / "reviews.csv"), text_column="title,body",
                      text_separator=" | ", label_column="stars", test_size=6, validation_size=4,
                      shuffle_train=True, max_train=34, pool_storage=storage)
  pool = 34 - 6 - 4
  tasks, data = push_queries(config, tmp_path / "work", np.arange(pool)[::-1])
  assert len(tasks) == pool == len(data.pool) and stream.is_streamed(data.pool.inputs) == (storage == "stream")
  assert_shows_the_source_text(tasks, data, csv_rows(tmp_path / "reviews.csv"))
  assert any("\n" in t["data"]["text"] and '"quoted"' in t["data"]["text"] for t in tasks)


def test_tfds_text_tasks_show_the_record_text(connect, tmp_path):
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  config = config_for(source="tfds", name="ag_news_subset", test_split="test", test_size=0,
                      validation_size=4, shuffle_train=True)
  with tfds.testing.mock_data(num_examples=24):
    tasks, data = push_queries(config, tmp_path / "work", np.array([0, 5, 11, 19]))
    source = tfds.data_source("ag_news_subset", split="train", download=False)
    names = data.dataset.class_names
    rows = [(str(r["description"]), names[int(r["label"])]) for r in (source[j] for j in range(len(source)))]
  assert len(tasks) == 4 and max(len(t) for t, _ in rows) < MAX_LENGTH
  assert_shows_the_source_text(tasks, data, rows)


def test_token_id_sources_show_the_id_and_say_why(connect, tmp_path):
  rng = np.random.default_rng(0)
  np.savez(tmp_path / "tokens.npz", x=rng.integers(2, 50, (40, 8)), y=np.arange(40) % 2)
  config = config_for(source="npz", path=str(tmp_path / "tokens.npz"), modality="text", test_size=8)
  tasks, data = push_queries(config, tmp_path / "work", np.array([3, 7]))
  assert [t["data"]["text"] for t in tasks] == [
      f"{data.pool.ids[i]} (no text to show: the npz source holds token ids)" for i in (3, 7)]


@pytest.mark.parametrize("edit", ["label", "truncate"])
def test_a_csv_changed_since_the_pool_was_read_pushes_nothing(connect, tmp_path, edit):
  path = tmp_path / "reviews.csv"
  write_reviews(path)
  config = config_for(source="csv", path=str(path), text_column="title,body", label_column="stars",
                      test_size=6)
  data = loop.load_data(config, workdir=tmp_path)
  lso = oracle.make_oracle(config, tmp_path, data)
  lines = [int(i.rpartition(":")[2]) for i in data.pool.ids]  # ids are FILE:RECORD, the header record 1
  last = int(np.argmax(lines))
  with open(path, encoding="utf-8-sig", newline="") as f:
    records = list(csv.reader(f))
  row = records[lines[last] - 1]
  assert row[0].startswith("Review ")  # record numbers count the header and blank lines
  if edit == "truncate":
    records, says = records[:lines[last] - 1], "the row is gone"
  else:
    new = "meh" if row[2] != "meh" else "good"
    row[2], says = new, f"the label is {new!r}, not {row[2]!r}"
  with open(path, "w", encoding="utf-8", newline="") as f:
    csv.writer(f).writerows(records)
  with pytest.raises(datasets.DataError, match=f"reviews.csv:{lines[last]}: {says}"):
    lso.reveal(np.array([0, last]), round=0)
  assert lso.client.created == []


def test_tfds_records_with_their_own_id_are_found_by_it(monkeypatch):
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  records = [{"id": f"q{j}".encode(), "question": f"why {j}?".encode(), "sentence": f"because {j}", "label": j % 2}
             for j in range(6)]
  monkeypatch.setattr(tfds, "data_source", lambda name, split, download: records)
  cfg = config_for(source="tfds", name="some_qa", text_keys="question,sentence").data
  assert raw_text.texts_of(cfg, ["q4", "q1"], [0, 1], ["no", "yes"]) == ["why 4? because 4", "why 1? because 1"]
  with pytest.raises(datasets.DataError, match=r"some_qa\[train\] record 3: .*its label is 1, not 0"):
    raw_text.texts_of(cfg, ["q3"], [0], ["no", "yes"])
