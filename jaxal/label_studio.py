"""The `label_studio` oracle: people label each round's queries in a Label Studio server.

`reveal` turns the queries that have no task yet into tasks of the project `oracle.project`
(an id, or a title: created with a labeling config from the class names when no project has
it) and raises `LabelsPending` until they are annotated; the same command then reads the
answers. Each task's data carries `jaxal_index` (the pool index), `jaxal_id` and
`jaxal_round`; tasks are found again by `jaxal_index`, so pushing twice, or rerunning after a
kill between the push and the pull, creates no duplicate. From round 1 each task carries the
model's guess as a prediction (`model_version` "jaxal round N", `score` = its confidence), shown
as the pre-annotation and sortable in the data manager.

Images are sent inline as PNG data URLs (upscaled with nearest neighbours to at least 128
pixels, so 8x8 digits are visible); that needs no local-files storage or shared directory.
Texts are inline too: the pool keeps token ids only, so each queried example's original text is
read back from the source by its id (`jaxal.data.raw_text`: the joined CSV columns, the TFDS
text features); a source of token ids (npz, hdf5, array_record) has none, and its task shows
the id with a note saying so.

Answers are validated as label files are (`file_oracle`); every problem names its task:
classes outside the class list, tasks jaxal did not query, annotations with no or several
choices, and conflicting annotations of one task under `oracle.annotations = "majority"`
(`"latest"` takes the most recently updated one). Cancelled (skipped) annotations are not
answers. Labels already applied never change: `WORKDIR/label_studio/applied.json` records
them, and an annotation edited later raises a `LabelsIgnoredWarning`, nothing else.
`WORKDIR/label_studio/project.json` pins the run to its project: a deleted project is an
error, not a silent new one.

The API token comes from the environment variable `oracle.token_env` or the file
`oracle.token_file`, read when the oracle starts; config.json stores only those names.
"""

import base64
import collections
import dataclasses
import io
import json
import os
import pathlib
import urllib.parse
import warnings
from typing import Callable
from xml.sax import saxutils

import numpy as np

from jaxal import paths
from jaxal.checkpoint import run_files
from jaxal.data import raw_text
from jaxal.file_oracle import LabelFileError
from jaxal.file_oracle import LabelsIgnoredWarning
from jaxal.label_studio_api import Client
from jaxal.label_studio_api import LabelStudioError
from jaxal.oracle import LabelsPending

RULES = ("latest", "majority")
MIN_IMAGE_PIXELS = 128


def check_config(oracle_config) -> None:
  """`oracle.*` checks for `config.validate`: no network call, no token needed."""
  from jaxal.config import ConfigError  # pylint: disable=g-import-not-at-top  (config imports this lazily)
  o = oracle_config
  if o.annotations not in RULES:
    raise ConfigError(f"oracle.annotations: must be one of {', '.join(RULES)}, got {o.annotations!r}")
  if o.name != "label_studio":
    return
  parsed = urllib.parse.urlparse(str(o.url))
  if parsed.scheme not in ("http", "https") or not parsed.netloc:
    raise ConfigError(f"oracle.url: must be an http(s) URL such as http://localhost:8080, got {o.url!r}")
  if not str(o.project).strip():
    raise ConfigError("oracle.project: must be a project id or title, got an empty string")
  if not o.token_file and not str(o.token_env).isidentifier():
    raise ConfigError(f"oracle.token_env: must name an environment variable (or set oracle.token_file), "
                      f"got {o.token_env!r}")


def label_config(class_names, modality: str) -> str:
  """The labeling interface: the image (or text) and one radio choice per class."""
  tag, key = ("Image", "image") if modality == "image" else ("Text", "text")
  choices = "\n".join(f"    <Choice value={saxutils.quoteattr(n)}/>" for n in class_names)
  return (f'<View>\n  <{tag} name="{key}" value="${key}"/>\n'
          f'  <Choices name="label" toName="{key}" choice="single-radio" showInLine="true">\n{choices}\n'
          "  </Choices>\n</View>")


def png_data_url(image: np.ndarray) -> str:
  """A uint8 HWC image as an inline PNG, upscaled to at least MIN_IMAGE_PIXELS on its short side."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  img = image[..., 0] if image.shape[-1] == 1 else image
  pil = Image.fromarray(np.asarray(img, np.uint8))
  scale = max(1, -(-MIN_IMAGE_PIXELS // min(pil.size)))
  if scale > 1:
    pil = pil.resize((pil.width * scale, pil.height * scale), Image.NEAREST)
  buf = io.BytesIO()
  pil.save(buf, format="PNG")
  return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def resolve(annotations: list[dict], rule: str) -> tuple[list[str] | None, str | None]:
  """`(choices, problem)` of one task's annotations under `rule`; `(None, None)`: not answered."""
  done = [a for a in annotations if not a.get("was_cancelled")]
  if not done:
    return None, None
  picks = []
  for a in done:
    chosen = [c for r in a.get("result") or [] if r.get("type") == "choices" for c in r["value"].get("choices", [])]
    if len(chosen) != 1:
      return None, f"annotation {a.get('id')} chooses {len(chosen)} classes, not one"
    picks.append((str(a.get("updated_at") or a.get("created_at") or ""), int(a.get("id") or 0), chosen[0]))
  if rule == "latest":
    return [max(picks)[2]], None
  counts = collections.Counter(p[2] for p in picks).most_common()
  if len(counts) > 1 and counts[0][1] == counts[1][1]:
    return None, (f"conflicting annotations with no majority ({', '.join(f'{c!r} x{n}' for c, n in counts)}); "
                  "remove or change one (or set oracle.annotations='latest')")
  return [counts[0][0]], None


@dataclasses.dataclass
class LabelStudioOracle:
  client: Client
  project_id: int
  project_title: str
  workdir: pathlib.Path
  ids: np.ndarray
  class_names: list[str]
  modality: str
  images: np.ndarray | None = None
  texts: Callable[[np.ndarray], list[str]] | None = None  # pool indices -> original texts
  allow_partial: bool = False
  rule: str = "latest"
  wants_predictions = True

  @property
  def where(self) -> str:
    return f"Label Studio project {self.project_title!r} (id {self.project_id}) at {self.client.url}"

  def applied_path(self) -> pathlib.Path:
    return self.workdir / "label_studio" / "applied.json"

  def reveal(self, indices, *, round: int = 0, predictions: dict | None = None):  # pylint: disable=redefined-builtin
    """Returns `(answered indices, labels)` from the project's annotations.

    Raises:
      LabelsPending: some queries had no task (they are pushed now) or are not annotated yet.
      LabelFileError: an annotation has problems; nothing is applied.
    """
    indices = np.asarray(indices, np.int64)
    by_index, problems = self._tasks_by_index(self.client.tasks(self.project_id))
    applied = self._applied()
    self._report_edits(by_index, applied, set(indices.tolist()))
    missing = [k for k, i in enumerate(indices) if int(i) not in by_index]
    if missing:
      self.push(indices[missing], round, None if predictions is None else
                {key: np.asarray(v)[missing] for key, v in predictions.items()})
      raise LabelsPending(f"{len(missing)} tasks for round {round} are in {self.where}"
                          f"{self._page()}; annotate them there, then rerun the same command.")
    class_index = {n: i for i, n in enumerate(self.class_names)}
    answers, unanswered = {}, 0
    for i in indices.tolist():
      tasks = by_index[i]
      choices, problem = resolve([a for t in tasks for a in t.get("annotations") or []], self.rule)
      where = f"task {', '.join(str(t['id']) for t in tasks)} (index {i}, id {self.ids[i]})"
      if problem:
        problems.append(f"{where}: {problem}")
      elif choices is None:
        unanswered += 1
      elif choices[0] not in class_index:
        problems.append(f"{where}: label {choices[0]!r} is not a class ({self._class_list()})")
      else:
        answers[i] = class_index[choices[0]]
    if problems:
      raise LabelFileError(f"{self.where}: annotations rejected, nothing applied:\n  " + "\n  ".join(problems))
    if unanswered and (not self.allow_partial or not answers):
      raise LabelsPending(f"{unanswered} of {len(indices)} tasks for round {round} are not annotated yet in "
                          f"{self.where}{self._page()}; annotate them, then rerun the same command.")
    answered = np.array(sorted(answers), np.int32)
    for i in answered.tolist():
      applied[str(i)] = {"task": int(by_index[i][0]["id"]), "label": self.class_names[answers[i]], "round": round}
    self.applied_path().parent.mkdir(parents=True, exist_ok=True)
    run_files.atomic_write_text(self.applied_path(), json.dumps(applied, indent=1, sort_keys=True))
    return answered, np.array([answers[i] for i in answered], np.int32)

  def push(self, indices: np.ndarray, round_: int, predictions: dict | None) -> None:
    """Creates one task per index, with the model's guess as a prediction when there is one."""
    key = "image" if self.modality == "image" else "text"
    version = f"jaxal round {round_}"
    tasks, texts = [], None if self.texts is None else self.texts(indices)
    for k, i in enumerate(indices.tolist()):
      shown = png_data_url(self.images[i]) if self.images is not None else (
          texts[k] if texts is not None else str(self.ids[i]))
      task = {"data": {key: shown, "jaxal_index": int(i), "jaxal_id": str(self.ids[i]), "jaxal_round": round_}}
      if predictions is not None:
        guess = self.class_names[int(predictions["predicted_class"][k])]
        task["predictions"] = [{"model_version": version, "score": float(predictions["confidence"][k]),
                                "result": [{"from_name": "label", "to_name": key, "type": "choices",
                                            "value": {"choices": [guess]}}]}]
      tasks.append(task)
    self.client.import_tasks(self.project_id, tasks)
    if predictions is not None:
      self.client.set_model_version(self.project_id, version)

  def _page(self) -> str:
    return f" ({self.client.url}/projects/{self.project_id}/data)"

  def _tasks_by_index(self, tasks: list[dict]):
    """Tasks keyed by `jaxal_index`, and a problem for each annotated task jaxal did not query."""
    by_index, problems = {}, []
    for t in tasks:
      data, annotated = t.get("data") or {}, any(not a.get("was_cancelled") for a in t.get("annotations") or [])
      i = data.get("jaxal_index")
      if not isinstance(i, int) or not 0 <= i < len(self.ids) or str(data.get("jaxal_id")) != str(self.ids[i]):
        if annotated:
          problems.append(f"task {t['id']}: not a query of this run (jaxal_index {i!r}, jaxal_id "
                          f"{data.get('jaxal_id')!r}); delete it or use another oracle.project")
        continue
      by_index.setdefault(i, []).append(t)
    return by_index, problems

  def _applied(self) -> dict:
    path = self.applied_path()
    return json.loads(path.read_text()) if path.exists() else {}

  def _report_edits(self, by_index: dict, applied: dict, current: set) -> None:
    """Labels already given never change; say so when an annotation changed after it was applied."""
    for key, entry in sorted(applied.items(), key=lambda kv: int(kv[0])):
      if int(key) in current:
        continue
      choices, _ = resolve([a for t in by_index.get(int(key), []) for a in t.get("annotations") or []], self.rule)
      if choices != [entry["label"]]:
        now = "no answer" if choices is None else repr(choices[0])
        warnings.warn(f"{self.where}: task {entry['task']} (index {key}) now says {now}, but "
                      f"{entry['label']!r} was applied in round {entry['round']}; labels already given are never "
                      "changed, so this edit is ignored. `jaxal export-labels` shows the labels in use.",
                      LabelsIgnoredWarning, stacklevel=3)

  def _class_list(self) -> str:
    names = self.class_names
    return ", ".join(names[:20]) + (f", ... ({len(names)} classes)" if len(names) > 20 else "")


def read_token(oracle_config) -> tuple[str, str]:
  """`(token, where it came from)`; the token itself is never stored or printed."""
  o = oracle_config
  if o.token_file:
    path = pathlib.Path(os.path.expanduser(o.token_file))
    try:
      token = path.read_text(encoding="utf-8").strip()
    except OSError as e:
      raise LabelStudioError(f"oracle.token_file: cannot read {path}: {e.strerror or e}") from None
    if not token:
      raise LabelStudioError(f"oracle.token_file: {path} is empty; put the Label Studio API token in it")
    return token, str(path)
  token = os.environ.get(o.token_env, "").strip()
  if not token:
    raise LabelStudioError(f"oracle.token_env: the environment variable {o.token_env} is not set; export the "
                           "Label Studio API token (Account & Settings > Personal Access Token) in it")
  return token, f"${o.token_env}"


def find_project(client: Client, workdir: pathlib.Path, project, class_names, modality) -> tuple[int, str]:
  """The run's project: the one it used before (an error when deleted), else by id, else by
  title, else a new one. Records it in `WORKDIR/label_studio/project.json`."""
  record = workdir / "label_studio" / "project.json"
  project = str(project).strip()
  if record.exists():
    saved = json.loads(record.read_text())
    if project not in (str(saved["id"]), saved["title"]):
      raise LabelStudioError(f"oracle.project: this run's tasks are in project {saved['title']!r} (id {saved['id']}), "
                             f"not {project!r}; set oracle.project back or start a new --workdir")
    if client.project(saved["id"]) is None:
      raise LabelStudioError(f"project {saved['title']!r} (id {saved['id']}) no longer exists at {client.url}; it "
                             "held this run's tasks. Restore it, or start a new --workdir")
    return int(saved["id"]), saved["title"]
  if project.isdigit():
    found = client.project(int(project))
    if found is None:
      raise LabelStudioError(f"oracle.project: project {project} does not exist at {client.url}")
  else:
    titled = client.projects_titled(project)
    if len(titled) > 1:
      raise LabelStudioError(f"oracle.project: {len(titled)} projects at {client.url} are titled {project!r} "
                             f"(ids {sorted(p['id'] for p in titled)}); set oracle.project to one id")
    found = titled[0] if titled else client.create_project(
        project, label_config(class_names, modality), "Queries of a jaxal active-learning run.")
  record.parent.mkdir(parents=True, exist_ok=True)
  run_files.atomic_write_text(record, json.dumps({"id": int(found["id"]), "title": found["title"]}))
  return int(found["id"]), found["title"]


def make_label_studio_oracle(config, workdir, data) -> LabelStudioOracle:
  """Connects before any compute: a down server, a wrong token or a deleted project stop here."""
  o = config.oracle
  token, source = read_token(o)
  client = Client(str(o.url), token, source)
  workdir = paths.of(workdir)  # epath: a gs:// workdir stays on the bucket
  names, modality = list(data.dataset.class_names), data.dataset.modality
  project_id, title = find_project(client, workdir, o.project, names, modality)
  images = data.pool.inputs if modality == "image" else None
  pool = data.pool
  texts = None if images is not None else lambda rows: raw_text.texts_of(config.data, pool.ids[rows],
                                                                         pool.labels[rows], names)
  return LabelStudioOracle(client, project_id, title, workdir, pool.ids, names, modality, images, texts,
                           bool(o.allow_partial), str(o.annotations))
