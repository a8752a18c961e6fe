"""Human-in-the-loop: three rounds on an image folder labeled through CSV files, with a bad
label file rejected on the way, end exactly like a simulated run with the same answers."""

import csv
import pathlib

import numpy as np
import pytest
from PIL import Image
from sklearn import datasets as skdatasets

from jaxal import checkpoint
from jaxal import cli
from jaxal import file_oracle
from jaxal import loop
from jaxal import oracle
from jaxal.checkpoint import run_files
from tests.conftest import tiny_config

NAMES = ["zero", "one", "two"]


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
  root = tmp_path_factory.mktemp("digits_folder")
  digits = skdatasets.load_digits()
  for c, name in enumerate(NAMES):
    (root / name).mkdir()
    for k, img in enumerate(digits.images[digits.target == c][:40]):
      Image.fromarray(np.clip(img * 16, 0, 255).astype(np.uint8)).save(root / name / f"{k:03d}.png")
  return root


def folder_config(root, oracle_name):
  return tiny_config(**{"data.source": "image_folder", "data.path": str(root), "data.test_size": 30,
                        "oracle.name": oracle_name, "al.initial_size": 9, "al.query_schedule": "0:9",
                        "train.steps_per_call": 1})  # each loop.run compiles its train block afresh


def fill_queries(path: pathlib.Path, answer):
  """A person filling in the label column: `answer(id) -> class name`."""
  with open(path, newline="") as f:
    rows = list(csv.DictReader(f))
  for row in rows:
    row["label"] = answer(row["id"])
  with open(path, "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
  return rows


def truth(example_id):
  return pathlib.Path(example_id).parent.name


def test_three_rounds_by_hand_equal_a_simulated_run(image_folder, tmp_path, fast_compiles):
  simulated = loop.run(folder_config(image_folder, "simulated"), tmp_path / "sim")
  work = tmp_path / "human"
  c = folder_config(image_folder, "files")
  for round_ in range(3):
    with pytest.raises(oracle.LabelsPending, match=f"round_{round_:03d}.csv"):
      loop.run(c, work)
    query = work / "queries" / f"round_{round_:03d}.csv"
    assert query.exists() and (work / "queries" / f"round_{round_:03d}.png").stat().st_size > 1000
    if round_ == 1:
      # A bad answer file: an unknown class and a duplicated row. It is rejected whole.
      rows = fill_queries(query, truth)
      bad = work / "labels" / "round_001.csv"
      bad.parent.mkdir(exist_ok=True)
      bad.write_text("id,label\n" + f"{rows[0]['id']},seven\n" + f"{rows[1]['id']},{truth(rows[1]['id'])}\n"
                     + f"{rows[1]['id']},{truth(rows[1]['id'])}\n")
      ckpts = checkpoint.RunCheckpoints(work)
      before = ckpts.restore()[0]
      ckpts.close()
      with pytest.raises(file_oracle.LabelFileError) as e:
        loop.run(c, work)
      assert "round_001.csv:2: label 'seven'" in str(e.value) and "round_001.csv:4" in str(e.value)
      ckpts = checkpoint.RunCheckpoints(work)
      after = ckpts.restore()[0]
      ckpts.close()
      np.testing.assert_array_equal(after.labeled_mask, before.labeled_mask)  # nothing applied
      np.testing.assert_array_equal(after.labels, before.labels)
      assert after.round == before.round and not (work / "queries" / "round_002.csv").exists()
      bad.unlink()
    else:
      rows = fill_queries(query, truth)
      assert all(r["predicted"] in NAMES for r in rows) or round_ == 0
  human = loop.run(c, work)
  assert len(human) == len(simulated) == 3
  # rounds.jsonl agrees on every field but wall-clock times and compile counts.
  timing = lambda k: k.endswith("_seconds") or k == "compiles"
  deterministic = lambda rows: [{k: v for k, v in r.items() if not timing(k)} for r in rows]
  assert deterministic(run_files.read_rounds(work)) == deterministic(run_files.read_rounds(tmp_path / "sim"))
  assert deterministic(human) == deterministic(simulated)
  a = checkpoint.RunCheckpoints(work).restore()[0]
  b = checkpoint.RunCheckpoints(tmp_path / "sim").restore()[0]
  np.testing.assert_array_equal(a.labeled_mask, b.labeled_mask)
  np.testing.assert_array_equal(a.labels, b.labels)
  # export-labels writes the labeled set with ids and class names.
  out = cli.export_labels(work)
  with open(out, newline="") as f:
    exported = list(csv.DictReader(f))
  assert len(exported) == a.num_labeled
  assert all(truth(r["id"]) == r["label_name"] for r in exported)


def _oracle(tmp_path, allow_partial=False):
  ids = np.array([f"img{i}" for i in range(10)])
  return file_oracle.FileOracle(tmp_path, ids, NAMES, None, allow_partial)


@pytest.mark.parametrize("body,message", [
    ("index,label\n3,one\n99,one\n", "index 99 is outside the pool"),
    ("id,label\nimg3,one\nnope,one\n", "unknown id 'nope'"),
    ("index,id,label\n3,img4,one\n", "id 'img4' does not belong to index 3"),
    ("id,label\nimg3,one\nimg5,one\n", "index 5 was not queried"),
    ("id,label\nimg3,one\n", "1 queried points have no label"),
    ("name,label\nimg3,one\n", "needs a 'label' column and an 'id' or 'index' column"),
])
def test_label_file_problems_are_named(tmp_path, body, message):
  o = _oracle(tmp_path)
  o.label_path(2).parent.mkdir(parents=True)
  o.label_path(2).write_text(body)
  with pytest.raises(file_oracle.LabelFileError, match=message):
    o.reveal(np.array([3, 4]), round=2)


def test_partial_answers_when_allowed(tmp_path):
  o = _oracle(tmp_path, allow_partial=True)
  o.label_path(1).parent.mkdir(parents=True)
  o.label_path(1).write_text("id,label\nimg4,two\n")
  idx, labels = o.reveal(np.array([3, 4]), round=1)
  assert idx.tolist() == [4] and labels.tolist() == [2]


def test_queries_file_is_never_overwritten(tmp_path):
  o = _oracle(tmp_path)
  with pytest.raises(oracle.LabelsPending):
    o.reveal(np.array([1, 2]), round=0)
  o.query_path(0).write_text(o.query_path(0).read_text() + "# my notes\n")
  with pytest.raises(oracle.LabelsPending):
    o.reveal(np.array([1, 2]), round=0)
  assert "# my notes" in o.query_path(0).read_text()


def test_integer_labels_are_rejected_with_a_hint(tmp_path):
  o = _oracle(tmp_path)
  o.label_path(0).parent.mkdir(parents=True)
  o.label_path(0).write_text("id,label\nimg3,1\nimg4,two\n")
  with pytest.raises(file_oracle.LabelFileError, match=r"round_000.csv:2: .*not indices \(class 1 is 'one'\)"):
    o.reveal(np.array([3, 4]), round=0)


def test_editing_applied_answers_warns_and_changes_nothing(tmp_path):
  o = _oracle(tmp_path)
  with pytest.raises(oracle.LabelsPending):
    o.reveal(np.array([1, 2]), round=0)
  fill_queries(o.query_path(0), lambda i: {"img1": "one", "img2": "two"}[i])
  assert o.reveal(np.array([1, 2]), round=0)[1].tolist() == [1, 2]
  with pytest.raises(oracle.LabelsPending):
    o.reveal(np.array([3]), round=1)  # nothing edited: no warning
  fill_queries(o.query_path(0), lambda i: "zero")  # a person changes their mind about round 0
  with pytest.warns(file_oracle.LabelsIgnoredWarning, match=r"round_000.csv: round 0's answers changed"):
    with pytest.raises(oracle.LabelsPending):
      o.reveal(np.array([3]), round=1)


@pytest.mark.parametrize("body", ["id,label\nimg3,one\nimg4,two\n", "index,label\n3,one\n4,two\n"])
def test_label_files_with_a_byte_order_mark_are_read(tmp_path, body):
  """Excel saves "CSV UTF-8" with a byte-order mark; the header is still `id` / `index`."""
  o = _oracle(tmp_path)
  o.label_path(0).parent.mkdir(parents=True)
  o.label_path(0).write_text(body, encoding="utf-8-sig")
  assert o.label_path(0).read_bytes().startswith(b"\xef\xbb\xbf")
  idx, labels = o.reveal(np.array([3, 4]), round=0)
  assert idx.tolist() == [3, 4] and labels.tolist() == [1, 2]


def test_queries_file_saved_with_a_byte_order_mark_is_read(tmp_path):
  o = _oracle(tmp_path)
  with pytest.raises(oracle.LabelsPending):
    o.reveal(np.array([3, 4]), round=0)
  rows = fill_queries(o.query_path(0), lambda i: {"img3": "one", "img4": "two"}[i])
  rows[1]["id"] = "img5"  # a wrong id, caught only when the `index` column is seen
  with open(o.query_path(0), "w", newline="", encoding="utf-8-sig") as f:
    w = csv.DictWriter(f, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
  with pytest.raises(file_oracle.LabelFileError, match=r"round_000.csv:3: id 'img5' does not belong to index 4"):
    o.reveal(np.array([3, 4]), round=0)


def test_contact_sheet_is_drawn_again_after_a_kill(tmp_path, monkeypatch):
  """Killed while the sheet is saved (after the CSV): no partial PNG stays, the rerun draws it."""
  import matplotlib.figure  # pylint: disable=g-import-not-at-top
  images = np.random.default_rng(0).integers(0, 255, (10, 8, 8, 1), np.uint8)
  o = file_oracle.FileOracle(tmp_path, np.array([f"img{i}" for i in range(10)]), NAMES, images)
  sheet = o.query_path(0).with_suffix(".png")

  def killed(fig, fname, **kwargs):  # half a PNG into whatever savefig writes to (a buffer, or a file)
    fname.write(b"\x89PNG half") if hasattr(fname, "write") else pathlib.Path(fname).write_bytes(b"\x89PNG half")
    raise KeyboardInterrupt
  monkeypatch.setattr(matplotlib.figure.Figure, "savefig", killed)
  with pytest.raises(KeyboardInterrupt):
    o.reveal(np.array([1, 2]), round=0)
  assert o.query_path(0).exists() and not sheet.exists()
  monkeypatch.undo()
  for _ in range(2):  # and again when someone deleted it
    with pytest.raises(oracle.LabelsPending):
      o.reveal(np.array([1, 2]), round=0)
    assert sheet.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and sheet.stat().st_size > 1000
    sheet.unlink()
