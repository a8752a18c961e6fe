"""The `jaxal` command: small tools around run directories.

    jaxal export-labels DIR [--out FILE]   # the labeled set as CSV (index, id, label, label_name)
    jaxal report ...                        # same as python -m jaxal.report
    jaxal svp-report ...                    # same as python -m jaxal.svp_report

Runs themselves start with `python -m jaxal.main --config=...`.
"""

import argparse
import csv
import json
import pathlib
import sys

import ml_collections


def export_labels(workdir, out=None) -> pathlib.Path:
  """Writes the labeled set of `workdir`'s latest checkpoint as CSV; returns its path.

  Example ids and class names come from reloading the run's data with its saved config.
  Refuses (SystemExit) when that checkpoint is unreadable or `rounds.jsonl` disagrees with
  it, rather than export an older checkpoint's smaller set.
  """
  from jaxal import checkpoint  # pylint: disable=g-import-not-at-top
  from jaxal import loop  # pylint: disable=g-import-not-at-top
  workdir = pathlib.Path(workdir)
  config_path = workdir / "config.json"
  if not config_path.exists():
    raise SystemExit(f"error: {workdir} has no config.json; is it a jaxal run directory?")
  config = ml_collections.ConfigDict(json.loads(config_path.read_text()))
  ckpts = checkpoint.RunCheckpoints(workdir)
  try:
    restored = ckpts.latest()  # never a silent fallback: the labels must match rounds.jsonl
  except checkpoint.CheckpointDamaged as e:
    raise SystemExit(f"error: {e}. Rerun the run command on {workdir} first (python -m jaxal.main "
                     "--config=... --workdir=...): it moves a damaged latest checkpoint aside, redoes its round "
                     "and rewrites rounds.jsonl") from None
  finally:
    ckpts.close()
  if restored is None:
    raise SystemExit(f"error: {workdir} has no checkpoint yet")
  pool = restored[0]
  data = loop.load_data(config)
  names = data.dataset.class_names
  out = pathlib.Path(out) if out else workdir / "labels.csv"
  tmp = out.with_suffix(".tmp")
  with open(tmp, "w", newline="", encoding="utf-8") as f:
    w = csv.writer(f)
    w.writerow(["index", "id", "label", "label_name"])
    for i in pool.labeled_indices:
      w.writerow([int(i), data.pool.ids[i], int(pool.labels[i]), names[pool.labels[i]]])
  tmp.replace(out)
  return out


def main(argv=None):
  argv = sys.argv[1:] if argv is None else argv
  if argv and argv[0] == "report":
    from jaxal import report  # pylint: disable=g-import-not-at-top
    return report.main(argv[1:])
  if argv and argv[0] == "svp-report":
    from jaxal import svp_report  # pylint: disable=g-import-not-at-top
    return svp_report.main(argv[1:])
  parser = argparse.ArgumentParser(prog="jaxal", description=__doc__.splitlines()[0])
  sub = parser.add_subparsers(dest="command", required=True)
  ex = sub.add_parser("export-labels", help="write the labeled set of a run directory as CSV")
  ex.add_argument("workdir")
  ex.add_argument("--out", default=None, help="output CSV (default: WORKDIR/labels.csv)")
  sub.add_parser("report", help="figures and tables from run directories (see python -m jaxal.report -h)")
  sub.add_parser("svp-report", help="SVP's Table 1 (see python -m jaxal.svp_report -h)")
  args = parser.parse_args(argv)
  if args.command == "export-labels":
    try:
      print(export_labels(args.workdir, args.out))
    except SystemExit as e:
      if not isinstance(e.code, str):
        raise
      print(e.code, file=sys.stderr)  # a refusal: one line and exit code 2, as jaxal.main
      raise SystemExit(2) from None


if __name__ == "__main__":
  main()
