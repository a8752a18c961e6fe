"""A small Label Studio REST client for the `label_studio` oracle (`jaxal.label_studio`).

Six endpoints cover what the oracle needs (projects, task import, the JSON export), so it
speaks HTTP through the standard library rather than `label-studio-sdk`, whose releases pin
`opencv-python-headless` and `numpy` ranges that conflict with jaxal's tested set.

Tokens: a personal access token (a JWT, the default in Label Studio >= 1.17) is exchanged at
`/api/token/refresh/` for a short-lived access token sent as `Bearer`; a legacy token (40 hex
digits, when the organization enables legacy tokens) is sent as `Token`. The token is held
in memory only; no message, file or log line carries it.
"""

import json
import urllib.error
import urllib.parse
import urllib.request


class LabelStudioError(RuntimeError):
  """The server is down, refused the token, or lacks the project; nothing was changed."""


class Client:
  """Calls the API of the server at `url` with `token` (from `token_source`, named in errors)."""

  def __init__(self, url: str, token: str, token_source: str, timeout: float = 60.0):
    self.url = url.rstrip("/")
    self._token = token.strip()
    self._token_source = token_source
    self._timeout = timeout
    self._auth = None

  def _header(self) -> str:
    if self._auth is None:
      if self._token.count(".") == 2:  # a personal access token (JWT): trade it for an access token
        access = self._call("POST", "/api/token/refresh/", {"refresh": self._token}, auth=False)
        self._auth = f"Bearer {access['access']}"
      else:
        self._auth = f"Token {self._token}"
    return self._auth

  def _call(self, method: str, path: str, body=None, *, auth: bool = True, query: dict | None = None):
    url = self.url + path + ("?" + urllib.parse.urlencode(query) if query else "")
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if auth:
      headers["Authorization"] = self._header()
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
      with urllib.request.urlopen(request, timeout=self._timeout) as response:
        text = response.read()
    except urllib.error.HTTPError as e:
      detail = e.read()[:300].decode("utf-8", "replace").replace("\n", " ")
      if e.code in (401, 403) or (e.code == 400 and path == "/api/token/refresh/"):
        raise LabelStudioError(f"Label Studio at {self.url} rejected the API token from {self._token_source} "
                               f"(HTTP {e.code}: {detail}); copy a personal access token from Account & "
                               "Settings") from None
      raise _HTTPStatus(e.code, f"Label Studio at {self.url}: {method} {path} failed with HTTP {e.code}: "
                                f"{detail}") from None
    except (urllib.error.URLError, OSError) as e:
      reason = getattr(e, "reason", e)
      raise LabelStudioError(f"cannot reach Label Studio at {self.url} ({reason}); is the server running "
                             "(label-studio start) and oracle.url right?") from None
    return json.loads(text) if text.strip() else None

  def project(self, project_id: int) -> dict | None:
    """The project with this id, or None when there is none (deleted)."""
    try:
      return self._call("GET", f"/api/projects/{int(project_id)}/")
    except _HTTPStatus as e:
      if e.code == 404:
        return None
      raise

  def projects_titled(self, title: str) -> list[dict]:
    found, page = [], 1
    while True:
      reply = self._call("GET", "/api/projects/", query={"page": page, "page_size": 100, "title": title})
      results = reply["results"] if isinstance(reply, dict) else reply
      found += [p for p in results if p.get("title") == title]
      if not isinstance(reply, dict) or not reply.get("next"):
        return found
      page += 1

  def create_project(self, title: str, label_config: str, description: str) -> dict:
    return self._call("POST", "/api/projects/", {"title": title, "label_config": label_config,
                                                 "description": description, "show_collab_predictions": True})

  def set_model_version(self, project_id: int, model_version: str) -> None:
    """Shows predictions of `model_version` as pre-annotations in the labeling page."""
    self._call("PATCH", f"/api/projects/{int(project_id)}/", {"model_version": model_version,
                                                               "show_collab_predictions": True})

  def import_tasks(self, project_id: int, tasks: list[dict]) -> None:
    self._call("POST", f"/api/projects/{int(project_id)}/import", tasks)

  def tasks(self, project_id: int) -> list[dict]:
    """Every task of the project with its annotations and predictions (the JSON export)."""
    try:
      return self._call("GET", f"/api/projects/{int(project_id)}/export",
                        query={"exportType": "JSON", "download_all_tasks": "true"})
    except _HTTPStatus as e:
      if e.code == 404:
        raise LabelStudioError(f"project {int(project_id)} no longer exists at {self.url}") from None
      raise


class _HTTPStatus(LabelStudioError):
  def __init__(self, code: int, message: str):
    super().__init__(message)
    self.code = code
