"""People label in Label Studio: a real server on localhost (tests/label_studio_server.py), three
rounds of the digits demo annotated through its API as a browser submits them, a wrong class on
the way, a SIGKILL between push and pull, and the failures a user meets (server down, wrong
token, deleted project). The server is shared by the module; its venv is built once and reused."""

import hashlib
import json
import os
import pathlib
import signal
import subprocess
import sys

import numpy as np
import pytest

from jaxal import checkpoint
from jaxal import cli
from jaxal import config as config_lib
from jaxal import file_oracle
from jaxal import label_studio
from jaxal import loop
from jaxal import main as main_lib
from jaxal import oracle
from jaxal.checkpoint import run_files
from tests import label_studio_server
from tests.conftest import tiny_config

ROOT = pathlib.Path(__file__).resolve().parents[1]
TOKEN_ENV = "JAXAL_TEST_LABEL_STUDIO_TOKEN"
N = 10  # queries a round (one per class in the initial set)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
  s = label_studio_server.start(tmp_path_factory.mktemp("label_studio"))
  s.pat = s.personal_access_token()
  yield s
  s.stop()


@pytest.fixture
def token(server, monkeypatch):
  monkeypatch.setenv(TOKEN_ENV, server.pat)
  return server.pat


def overrides(server, project, **more):
  return {"oracle.name": "label_studio", "oracle.url": server.url, "oracle.project": project,
          "oracle.token_env": TOKEN_ENV, "train.steps_per_call": 1, "train.epochs": 1,
          "al.initial_size": N, "al.query_schedule": f"0:{N}", **more}


def tasks(server, project_id):
  return server.api("GET", f"/api/projects/{project_id}/export?exportType=JSON&download_all_tasks=true")


def choice(label):
  return [{"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": [label]}}]


def annotate(server, task, label):
  """What the labeling page posts when a person picks `label` and presses Submit."""
  return server.api("POST", f"/api/tasks/{task['id']}/annotations/", {"result": choice(label), "lead_time": 3.2,
                                                                       "task": task["id"]}, token=None)


def project_id(work):
  return json.loads((work / "label_studio" / "project.json").read_text())["id"]


def snapshot(work):
  """Every file of the workdir (but its lock) with its SHA-256: 'no state change' means equal."""
  return {p.relative_to(work).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
          for p in sorted(work.rglob("*")) if p.is_file() and p.name != "run.lock"}


def kill_after_push(over, work):
  """Runs the loop in a child process that SIGKILLs itself right after its tasks are pushed."""
  code = f"""
import os, signal
from jaxal import label_studio, loop
from tests.conftest import tiny_config
push = label_studio.LabelStudioOracle.push
def push_then_die(self, *args, **kwargs):
  push(self, *args, **kwargs)
  os.kill(os.getpid(), signal.SIGKILL)
label_studio.LabelStudioOracle.push = push_then_die
loop.run(tiny_config(**{over!r}), {str(work)!r})
"""
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, timeout=300)


@pytest.mark.slow
def test_three_rounds_in_label_studio_equal_a_simulated_run(server, token, tmp_path, fast_compiles):
  over = overrides(server, "jaxal digits")
  simulated = loop.run(tiny_config(**{**over, "oracle.name": "simulated"}), tmp_path / "sim")
  work = tmp_path / "human"
  killed = kill_after_push(over, work)
  assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
  pid = project_id(work)
  assert len(tasks(server, pid)) == N  # pushed before the kill
  c = tiny_config(**over)
  data = loop.load_data(c)
  names, truth = list(data.dataset.class_names), data.pool.labels
  for round_ in range(3):
    with pytest.raises(oracle.LabelsPending, match=f"round {round_} .*'jaxal digits' \\(id {pid}\\)"):
      loop.run(c, work)  # round 0: the rerun after the kill finds its N tasks and pushes none
    everything = tasks(server, pid)
    assert len(everything) == N * (round_ + 1)
    assert len({t["data"]["jaxal_index"] for t in everything}) == len(everything)  # no duplicates
    new = [t for t in everything if t["data"]["jaxal_round"] == round_]
    assert len(new) == N and all(t["data"]["jaxal_id"] == str(data.pool.ids[t["data"]["jaxal_index"]]) for t in new)
    assert all(t["data"]["image"].startswith("data:image/png;base64,") for t in new)
    if round_ > 0:  # the model's guess is the pre-annotation, its confidence the score
      for t in new:
        (p,) = server.api("GET", f"/api/predictions/?task={t['id']}")
        assert p["model_version"] == f"jaxal round {round_}" and 0 < p["score"] <= 1
        assert p["result"][0]["value"]["choices"][0] in names
    for t in new:
      annotate(server, t, names[truth[t["data"]["jaxal_index"]]])
    if round_ == 1:  # a wrong class: reported with its task id, nothing applied until it is fixed
      bad = new[3]
      (first,) = server.api("GET", f"/api/tasks/{bad['id']}/annotations/")
      server.api("PATCH", f"/api/annotations/{first['id']}/", {"result": choice("eleven")})
      before = snapshot(work)
      with pytest.raises(file_oracle.LabelFileError, match=f"task {bad['id']} \\(index {bad['data']['jaxal_index']}"
                         r".*label 'eleven' is not a class"):
        loop.run(c, work)
      assert snapshot(work) == before and len(tasks(server, pid)) == 2 * N
      server.api("PATCH", f"/api/annotations/{first['id']}/",
                 {"result": choice(names[truth[bad["data"]["jaxal_index"]]])})
    if round_ == 2:  # an applied label edited later is reported, not applied
      edited = everything[0]
      (first,) = server.api("GET", f"/api/tasks/{edited['id']}/annotations/")
      wrong = names[(truth[edited["data"]["jaxal_index"]] + 1) % len(names)]
      server.api("PATCH", f"/api/annotations/{first['id']}/", {"result": choice(wrong)})
  with pytest.warns(file_oracle.LabelsIgnoredWarning, match=f"task {edited['id']} .*now says '{wrong}'"):
    human = loop.run(c, work)
  assert len(human) == len(simulated) == 3
  timing = lambda k: k.endswith("_seconds") or k == "compiles"
  deterministic = lambda rows: [{k: v for k, v in r.items() if not timing(k)} for r in rows]
  assert deterministic(run_files.read_rounds(work)) == deterministic(run_files.read_rounds(tmp_path / "sim"))
  assert deterministic(human) == deterministic(simulated)
  restored = [checkpoint.RunCheckpoints(w) for w in (work, tmp_path / "sim")]
  (a, *_), (b, *_) = [r.restore() for r in restored]
  for r in restored:
    r.close()
  np.testing.assert_array_equal(a.labeled_mask, b.labeled_mask)
  np.testing.assert_array_equal(a.labels, b.labels)
  # The token is nowhere in the workdir (config.json holds the variable's name only).
  assert all(token.encode() not in p.read_bytes() for p in work.rglob("*") if p.is_file())
  assert json.loads((work / "config.json").read_text())["oracle"]["token_env"] == TOKEN_ENV
  # export-labels: the labels in use, with ids and class names.
  exported = (cli.export_labels(work)).read_text().splitlines()
  assert len(exported) == 1 + a.num_labeled
  rows = [line.split(",") for line in exported[1:]]
  assert all(names[truth[int(r[0])]] == r[3] for r in rows)


@pytest.mark.slow
def test_server_down_wrong_token_and_deleted_project_change_nothing(server, token, tmp_path, capsys, monkeypatch):
  over = overrides(server, "jaxal failures", **{"al.num_rounds": 1})
  work = tmp_path / "run"
  assert main_lib.execute(tiny_config(**over), str(work)) == 0  # round 0's tasks pushed; waiting
  pid = project_id(work)
  before = snapshot(work)
  capsys.readouterr()

  def fails(config, says):
    assert main_lib.execute(config, str(work)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and says in err, err
    assert snapshot(work) == before

  down = f"http://127.0.0.1:{label_studio_server.free_port()}"
  fails(tiny_config(**{**over, "oracle.url": down}), f"cannot reach Label Studio at {down}")
  monkeypatch.setenv(TOKEN_ENV, "0" * 40)
  fails(tiny_config(**over), f"Label Studio at {server.url} rejected the API token from ${TOKEN_ENV}")
  monkeypatch.setenv(TOKEN_ENV, token[:-4] + "abcd")  # a personal access token with a bad signature
  fails(tiny_config(**over), "rejected the API token")
  monkeypatch.setenv(TOKEN_ENV, token)
  server.api("DELETE", f"/api/projects/{pid}/")
  fails(tiny_config(**over), f"project 'jaxal failures' (id {pid}) no longer exists at {server.url}")
  titles = [p["title"] for p in server.api("GET", "/api/projects/?page_size=100")["results"]]
  assert "jaxal failures" not in titles  # not silently created again


def test_validation_needs_no_server_and_no_token(monkeypatch):
  monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)
  c = tiny_config(**{"oracle.name": "label_studio", "oracle.url": "http://127.0.0.1:9"})  # nothing listens
  config_lib.validate(c)
  assert c.oracle.project == "jaxal" and c.oracle.token_env == "LABEL_STUDIO_API_KEY"
  for field, value, says in [("url", "localhost:8080", r"oracle.url: must be an http\(s\) URL"),
                             ("project", " ", "oracle.project"), ("token_env", "MY-TOKEN", "oracle.token_env"),
                             ("annotations", "first", "oracle.annotations: must be one of latest, majority")]:
    bad = tiny_config(**{"oracle.name": "label_studio", f"oracle.{field}": value})
    with pytest.raises(config_lib.ConfigError, match=says):
      config_lib.validate(bad)


def test_several_annotations_follow_the_configured_rule():
  def ann(i, label, when, cancelled=False):
    return {"id": i, "result": choice(label), "updated_at": when, "was_cancelled": cancelled}
  two_one = [ann(1, "cat", "2026-01-01T10:00"), ann(2, "dog", "2026-01-01T11:00"), ann(3, "cat", "2026-01-01T09:00")]
  assert label_studio.resolve(two_one, "latest") == (["dog"], None)
  assert label_studio.resolve(two_one, "majority") == (["cat"], None)
  tie = two_one[:2]
  choices, problem = label_studio.resolve(tie, "majority")
  assert choices is None and "conflicting annotations with no majority ('cat' x1, 'dog' x1)" in problem
  assert label_studio.resolve([ann(4, "cat", "x", cancelled=True)], "latest") == (None, None)  # skipped: no answer
  two_choices = {"id": 5, "result": choice("cat") + choice("dog")}
  assert "chooses 2 classes" in label_studio.resolve([two_choices], "latest")[1]


def run_to_first_queries(server, work):
  """A digits run whose initial set is annotated, stopped at its first model-chosen queries;
  returns `(project id, those tasks)`."""
  over = overrides(server, "jaxal screenshot", **{"al.num_rounds": 2})
  c = tiny_config(**over)
  with pytest.raises(oracle.LabelsPending):
    loop.run(c, work)
  pid = project_id(work)
  data = loop.load_data(c)
  for t in tasks(server, pid):
    annotate(server, t, data.dataset.class_names[data.pool.labels[t["data"]["jaxal_index"]]])
  with pytest.raises(oracle.LabelsPending):
    loop.run(c, work)
  return pid, [t for t in tasks(server, pid) if t["data"]["jaxal_round"] == 1]


@pytest.mark.slow
@pytest.mark.skipif(not label_studio_server.has_browser(), reason="needs Debian's chromium and chromium-driver")
def test_labeling_page_shows_the_image_and_the_pre_annotation(server, token, tmp_path, fast_compiles):
  pid, queried = run_to_first_queries(server, tmp_path / "run")
  task = queried[0]
  (guess,) = server.api("GET", f"/api/predictions/?task={task['id']}")
  shown = label_studio_server.screenshot(server, pid, task["id"], tmp_path / "page.png")
  assert shown == guess["result"][0]["value"]["choices"]  # the model's guess is pre-selected
  assert (tmp_path / "page.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
