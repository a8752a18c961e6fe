"""The README stays short, opens with CI's two commands, and its links (and docs/'s) resolve."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MAX_README_CHARS = 13_000  # issue 26: detail goes to docs/, the README stays a user's page
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _slug(heading: str) -> str:
  """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
  text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
  return text.replace(" ", "-")


def _anchors(md_file: pathlib.Path) -> set[str]:
  text = re.sub(r"```.*?```", "", md_file.read_text(encoding="utf-8"), flags=re.S)
  return {_slug(m) for m in re.findall(r"^#+ (.+)$", text, flags=re.M)}


def _broken_links(md_file: pathlib.Path) -> list[str]:
  text = re.sub(r"```.*?```", "", md_file.read_text(encoding="utf-8"), flags=re.S)
  broken = []
  for target in LINK.findall(text):
    if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
      continue
    path, _, anchor = target.partition("#")
    resolved = (md_file.parent / path).resolve() if path else md_file
    if not resolved.exists():
      broken.append(f"{md_file.name}: {target} (no such file)")
    elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
      broken.append(f"{md_file.name}: {target} (no such heading)")
  return broken


def test_readme_is_short():
  assert len(README.read_text(encoding="utf-8")) <= MAX_README_CHARS


def test_relative_links_resolve():
  md_files = [README, *sorted((ROOT / "docs").glob("*.md"))]
  assert len(md_files) > 1, "docs/ holds the detail the README links to"
  broken = [b for f in md_files for b in _broken_links(f)]
  assert not broken, "\n".join(broken)


def test_readme_opens_with_the_commands_ci_runs():
  """.ci/run installs 'exactly as the README says': same commands, minus pip's -q and the workdir."""
  ci = [line for line in (ROOT / ".ci/run").read_text().splitlines() if line.startswith("pip install")]
  ci = [re.sub(r" --workdir=\S+", "", line.replace("pip install -q", "pip install")) for line in ci]
  blocks = re.findall(r"```bash\n(.*?)\n```", README.read_text(encoding="utf-8"), flags=re.S)[:2]
  readme = [re.sub(r" --workdir=\S+", "", block) for block in blocks]
  assert len(ci) == 2 and readme == ci
