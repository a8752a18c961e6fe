"""The plain files of a run directory: `config.json` and `rounds.jsonl`.

Only JSON is written here (`outputs` adds the figures); every write goes to a temporary
file that is renamed into place (on an object store, one upload: `paths.write_atomic`), so a
crash never leaves a truncated file behind.
"""

import json

from jaxal import paths


# Fields that do not change results; a rerun may change them freely.
# `oracle.*` says who labels, not what is learned (as `--oracle` may switch it); `runtime.*`
# says how the same programs compile (a run may move from a CPU to a GPU).
IGNORED_PREFIXES = ("output.", "parallel.", "pretrain.cache_dir", "oracle.", "runtime.")
# What the step-0 checkpoint (the initial set awaiting labels) depends on.
STEP0_FIELDS = ("seed", "al.initial_size", "al.balanced_initial")  # and every `data.` field


class WorkdirConflict(RuntimeError):
  """The workdir holds a run with a different config."""


def atomic_write_text(path, text: str) -> None:
  """Writes `path` atomically (`paths.write_atomic`); an OSError (read-only, full disk) names `path`."""
  paths.write_atomic(path, text)


def os_error_message(error: OSError, workdir) -> str:
  """One line for an OSError of a run: the workdir that is a file, or the path and the reason."""
  path = paths.of(workdir)
  for candidate in (path, *path.parents) if paths.is_local(path) else ():
    if candidate.exists():
      if not candidate.is_dir():
        where = f"workdir {path}" + (f": {candidate}" if candidate != path else "")
        return f"{where} is a file, not a directory; pass another --workdir"
      break
  return f"{error.filename or path}: {error.strerror or error}"


def config_to_json(config) -> str:
  return json.dumps(config.to_dict(), indent=2, sort_keys=True, default=list)


def check_or_write_config(workdir, config, *, force: bool) -> None:
  """Writes `config.json`, refusing a workdir that holds a different config unless `force`."""
  path = workdir / "config.json"
  new = config_to_json(config)
  if path.exists() and not force:
    old = _read_saved_config(path)
    diff = [d for d in _diff(old, json.loads(new), defaults=_defaults()) if not d.startswith(IGNORED_PREFIXES)]
    if _pretrain_off(old) and _pretrain_off(json.loads(new)):  # unused settings change nothing
      diff = [d for d in diff if not d.startswith("pretrain")]
    if diff and not _round0_unfinished(workdir, diff):
      shown = "; ".join(diff[:8]) + ("; ..." if len(diff) > 8 else "")
      raise WorkdirConflict(
          f"{workdir} holds a run with a different config ({shown}). "
          "Use another --workdir, or pass --force to continue this run with the new config.")
  atomic_write_text(path, new)


def saved_config_text(workdir) -> str | None:
  """The workdir's `config.json` as it is before a run writes its own (None: there is none)."""
  path = workdir / "config.json"
  return path.read_text() if path.exists() else None


def put_back_config(workdir, saved: str | None) -> None:
  """Undoes `check_or_write_config`: a refused run leaves the workdir as it was."""
  if saved is not None:
    atomic_write_text(workdir / "config.json", saved)
  else:
    (workdir / "config.json").unlink(missing_ok=True)


def _read_saved_config(path) -> dict:
  try:
    saved = json.loads(path.read_text(encoding="utf-8"))
  except (ValueError, UnicodeDecodeError) as e:  # truncated or overwritten
    raise WorkdirConflict(f"{path} is damaged ({type(e).__name__}: {e}); restore it, use another --workdir, "
                          "or pass --force to replace it with this config") from None
  if not isinstance(saved, dict):
    raise WorkdirConflict(f"{path} is damaged (a JSON {type(saved).__name__}, not a config); restore it, "
                          "use another --workdir, or pass --force to replace it with this config")
  return saved


def _round0_unfinished(workdir, diff: list[str]) -> bool:
  """True for a run that never finished round 0 (e.g. it stopped at bad data or a diverging lr),
  so a corrected config may take it over: no round records and no checkpoint past step 0, and
  when step 0 (the initial set) exists, the changes leave it as it is."""
  rounds = workdir / "rounds.jsonl"
  try:
    if rounds.exists() and rounds.read_text(encoding="utf-8").strip():
      return False
  except (OSError, UnicodeDecodeError):
    return False
  checkpoints = workdir / "checkpoints"
  steps = {int(p.name) for p in checkpoints.iterdir() if p.name.isdigit()} if checkpoints.is_dir() else set()
  if steps - {0}:
    return False
  fields = [d.split(": ", 1)[0] for d in diff]
  return not steps or not any(f in STEP0_FIELDS or f.startswith("data.") for f in fields)


def _pretrain_off(config: dict) -> bool:
  return config.get("pretrain", {}).get("name", "none") == "none"


def _defaults() -> dict:
  from jaxal import config as config_lib  # pylint: disable=g-import-not-at-top
  return json.loads(config_to_json(config_lib.base_config()))


def _diff(old, new, prefix="", defaults=None) -> list[str]:
  """Differing fields; a field the old config lacks is no difference when it is at its default
  (a schema field added after the run started, e.g. `pretrain`)."""
  defaults = defaults if isinstance(defaults, dict) else {}
  out = []
  for key in sorted(set(old) | set(new)):
    a, b = old.get(key, "<missing>"), new.get(key, "<missing>")
    if isinstance(a, dict) and isinstance(b, dict):
      out += _diff(a, b, f"{prefix}{key}.", defaults.get(key))
    elif key not in old and key in defaults and b == defaults[key]:
      continue
    elif a != b:
      out.append(f"{prefix}{key}: {a!r} -> {b!r}")
  return out


def write_rounds(workdir, history: list[dict]) -> None:
  """Rewrites `rounds.jsonl`, one JSON object per completed round."""
  atomic_write_text(workdir / "rounds.jsonl", "".join(json.dumps(r, sort_keys=True) + "\n" for r in history))


def read_rounds(workdir) -> list[dict]:
  path = paths.of(workdir) / "rounds.jsonl"
  if not path.exists():
    return []
  return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
