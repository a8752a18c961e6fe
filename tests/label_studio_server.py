"""A real Label Studio server for tests/test_label_studio.py (and docs/label_studio_screenshot.py).

`label-studio` pins about 60 packages (among them `attr==0.3.1`, which shadows `attrs`), so it
runs from its own virtual environment, built once under `$JAXAL_LABEL_STUDIO_VENV` (default
`~/.cache/jaxal-tests/label-studio-1.23.2`) behind a file lock, so parallel test workers build
it once. Its first start migrates a fresh SQLite database, which takes a minute or more; the
migrated data directory is kept next to the venv as a template and copied for each server.

`start()` runs `label-studio start` on a free localhost port with a temporary data directory,
creating the user and a legacy token through its own flags (`--username`, `--password`,
`--user-token`, `--enable-legacy-api-token`); `Server.personal_access_token()` then asks the
API for a personal access token, as a person does in Account & Settings.
"""

import contextlib
import fcntl
import json
import os
import pathlib
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

VERSION = "1.23.2"
# The server venv's own pins: sentry-sdk 3 removed an option label-studio 1.23.2 passes.
PACKAGES = (f"label-studio=={VERSION}", "sentry-sdk==2.76.0", "selenium==4.51.0")
USER, PASSWORD = "tester@jaxal.local", "jaxal-tests-password"


def venv_dir() -> pathlib.Path:
  default = pathlib.Path.home() / ".cache" / "jaxal-tests" / f"label-studio-{VERSION}"
  return pathlib.Path(os.environ.get("JAXAL_LABEL_STUDIO_VENV") or default)


def _server_env(data_dir: pathlib.Path) -> dict:
  env = {k: v for k, v in os.environ.items() if not k.startswith(("LABEL_STUDIO_", "DJANGO_", "PYTHON"))}
  env.update(LABEL_STUDIO_BASE_DATA_DIR=str(data_dir), SENTRY_DSN="", FRONTEND_SENTRY_DSN="",
             LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK="true", COLLECT_ANALYTICS="false")
  return env


def ensure_venv() -> pathlib.Path:
  """The server's venv (built on first use) with a migrated template data directory."""
  root = venv_dir()
  root.parent.mkdir(parents=True, exist_ok=True)
  with open(root.parent / f"{root.name}.lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)  # one builder; others wait, then reuse
    if not (root / "ready").exists():
      shutil.rmtree(root, ignore_errors=True)  # a build that was killed midway
      subprocess.run([sys.executable, "-m", "venv", str(root)], check=True)
      subprocess.run([str(root / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                      *PACKAGES], check=True)
      template = root / "template"
      # Any command migrates the database first; `version` then just prints.
      subprocess.run([str(root / "bin" / "label-studio"), "version", "--data-dir", str(template)],
                     env=_server_env(template), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
      (root / "ready").write_text(VERSION)
  return root


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


class Server:
  def __init__(self, url, legacy_token, process, data_dir, log):
    self.url, self.legacy_token, self.process, self.data_dir, self.log = url, legacy_token, process, data_dir, log

  def api(self, method: str, path: str, body=None, token: str | None = None):
    """Calls the API as a logged-in person's browser does (JSON in, JSON out)."""
    auth = f"Token {self.legacy_token}" if token is None else f"Bearer {token}"
    request = urllib.request.Request(self.url + path, method=method, headers={
        "Authorization": auth, "Content-Type": "application/json"},
        data=None if body is None else json.dumps(body).encode())
    with urllib.request.urlopen(request, timeout=60) as response:
      text = response.read()
    return json.loads(text) if text.strip() else None

  def personal_access_token(self) -> str:
    """A personal access token, created through the API as Account & Settings does."""
    existing = self.api("GET", "/api/token/")
    if existing:
      self.api("POST", "/api/token/blacklist/", {"refresh": existing[0]["token"]})
    return self.api("POST", "/api/token/", {})["token"]

  def stop(self):
    if self.process.poll() is None:
      self.process.terminate()
      try:
        self.process.wait(timeout=20)
      except subprocess.TimeoutExpired:
        self.process.kill()
        self.process.wait()
    self.log.close()


def start(data_dir: pathlib.Path, timeout: float = 240.0) -> Server:
  root = ensure_venv()
  shutil.copytree(root / "template", data_dir, dirs_exist_ok=True)
  port, token = free_port(), secrets.token_hex(20)
  log = open(data_dir / "server.log", "w")
  process = subprocess.Popen(
      [str(root / "bin" / "label-studio"), "start", "--no-browser", "--host", f"http://127.0.0.1:{port}",
       "--internal-host", "127.0.0.1", "--port", str(port), "--data-dir", str(data_dir), "--username", USER,
       "--password", PASSWORD, "--user-token", token, "--enable-legacy-api-token"],
      env=_server_env(data_dir), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
  server = Server(f"http://127.0.0.1:{port}", token, process, data_dir, log)
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    if process.poll() is not None:
      server.stop()
      raise RuntimeError(f"label-studio exited with {process.returncode}; see {data_dir / 'server.log'}")
    with contextlib.suppress(OSError):
      with urllib.request.urlopen(server.url + "/health", timeout=5) as r:
        if r.status == 200:
          server.api("GET", "/api/projects/")  # the user and its token exist
          return server
    time.sleep(1)
  server.stop()
  raise RuntimeError(f"label-studio did not answer /health within {timeout:.0f} s; see {data_dir / 'server.log'}")


BROWSER = (pathlib.Path("/usr/bin/chromium"), pathlib.Path("/usr/bin/chromedriver"))


def has_browser() -> bool:
  return all(p.exists() for p in BROWSER)


def screenshot(server: Server, project_id: int, task_id: int, out: pathlib.Path) -> list[str]:
  """Saves the labeling page of one task as a person sees it; returns the choices it shows selected."""
  script = pathlib.Path(__file__).with_name("label_studio_browser.py")
  done = subprocess.run([str(ensure_venv() / "bin" / "python"), str(script), server.url, USER, PASSWORD,
                         str(project_id), str(task_id), str(out)], capture_output=True, text=True, timeout=240)
  if done.returncode:
    raise RuntimeError(f"the browser failed: {done.stderr[-3000:]}")
  return done.stdout.split()


if __name__ == "__main__":  # `python3 tests/label_studio_server.py`: build the venv ahead (CI does, in the background)
  print(ensure_venv())
