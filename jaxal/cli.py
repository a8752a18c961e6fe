"""The `jaxal` command: small tools around run directories.

    jaxal export-labels DIR [--out FILE]   # the labeled set as CSV (index, id, label, label_name)
    jaxal convert --config=FILE --out=DIR  # a config's data as sharded ArrayRecord files + index.json
    jaxal report ...                        # same as python -m jaxal.report
    jaxal svp-report ...                    # same as python -m jaxal.svp_report

Runs themselves start with `python -m jaxal.main --config=...`.
"""

import argparse
import json
import pathlib
import sys

import ml_collections


def export_labels(workdir, out=None):
  """Writes the labeled set of `workdir`'s latest checkpoint as CSV; returns its path.

  Example ids and class names come from reloading the run's data with its saved config.
  Refuses (SystemExit) when that checkpoint is unreadable or `rounds.jsonl` disagrees with
  it, rather than export an older checkpoint's smaller set.
  """
  from jaxal import checkpoint  # pylint: disable=g-import-not-at-top
  from jaxal import loop  # pylint: disable=g-import-not-at-top
  from jaxal import paths  # pylint: disable=g-import-not-at-top
  from jaxal.checkpoint import artifacts  # pylint: disable=g-import-not-at-top
  workdir = paths.of(workdir)
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
  out = paths.of(out) if out else workdir / "labels.csv"
  rows = ([int(i), data.pool.ids[i], int(pool.labels[i]), names[pool.labels[i]]] for i in pool.labeled_indices)
  artifacts.write_csv(out, ["index", "id", "label", "label_name"], rows)
  return out


def convert(config_file, out, records_per_shard: int = 0) -> pathlib.Path:
  """Writes the data of `config_file`'s `config.data` to `out` for `data.source = "array_record"`.

  Reads through `jaxal.data.source_streams.load` (the rows, labels and ids `datasets.load` gives a
  run, inputs read by index a chunk at a time, never the whole dataset), then
  `jaxal.data.array_record.convert`.
  Returns the written index. A bad config or bad data is a one-line SystemExit.
  """
  from jaxal import config as config_lib  # pylint: disable=g-import-not-at-top
  from jaxal import errors  # pylint: disable=g-import-not-at-top
  from jaxal.data import array_record  # pylint: disable=g-import-not-at-top
  from jaxal import paths  # pylint: disable=g-import-not-at-top
  from jaxal.data import datasets  # pylint: disable=g-import-not-at-top
  from jaxal.data import source_streams  # pylint: disable=g-import-not-at-top
  try:
    config = config_lib.load_config_file(config_file)
  except Exception as e:  # pylint: disable=broad-except  (missing file, SyntaxError, no get_config, ...)
    raise SystemExit(f"error: --config={config_file}: the config file does not load: {type(e).__name__}: {e}") from None
  try:
    paths.local(out, "--out", datasets.DataError, "the ArrayRecord writer")  # before the data is read
    config_lib.validate(config)
    return array_record.convert(source_streams.load(config.data), out, records_per_shard)
  except errors.USER_ERRORS as e:
    raise SystemExit(f"error: {e}") from None
  except OSError as e:
    raise SystemExit(f"error: --out={out}: {e.strerror or e}") from None


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
  conv = sub.add_parser("convert", help="write a config's data as sharded ArrayRecord files plus index.json "
                        "(read back with data.source=array_record, data.path=DIR)")
  conv.add_argument("--config", required=True, help="a config file (configs/NAME.py or FILE.py:ARG)")
  conv.add_argument("--out", required=True, help="an empty or new directory")
  conv.add_argument("--records-per-shard", type=int, default=0, help="default: about 128 MB of inputs a shard")
  sub.add_parser("report", help="figures and tables from run directories (see python -m jaxal.report -h)")
  sub.add_parser("svp-report", help="SVP's Table 1 (see python -m jaxal.svp_report -h)")
  args = parser.parse_args(argv)
  try:
    if args.command == "export-labels":
      print(export_labels(args.workdir, args.out))
    elif args.command == "convert":
      print(convert(args.config, args.out, args.records_per_shard))
  except SystemExit as e:
    if not isinstance(e.code, str):
      raise
    print(e.code, file=sys.stderr)  # a refusal: one line and exit code 2, as jaxal.main
    raise SystemExit(2) from None


if __name__ == "__main__":
  main()
