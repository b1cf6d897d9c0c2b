"""Every document the repository points to is in the repository: relative markdown links and images
resolve to files, ``#anchor`` parts to headings, and ``docs/*.md#anchor`` citations in code, configs
and tests (``docs/methods.md#mal-choices``) name a heading that exists. No file names design notes
that are not part of the repository."""
import os
import re
import subprocess
import unicodedata

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEXT_SUFFIXES = (".py", ".md", ".txt", ".cfg", ".toml", ".yaml", ".yml", ".json", ".sh", ".ini")
# Written in two parts so that this file does not name them itself.
UNSHIPPED = ("ALGORITHMS" + ".md", "shared/" + "design")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
CITATION = re.compile(r"(?<![\w/.-])((?:docs|projects)/[\w./-]+\.md)(?:#([\w-]+))?")


def tracked_files():
    """Text files of the checkout: git's list where there is one, else a walk without hidden and
    output folders."""
    try:
        out = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
        files = out.split()
    except (OSError, subprocess.CalledProcessError):
        files = []
        for root, dirs, names in os.walk(REPO):
            dirs[:] = [d for d in dirs if not d.startswith(".") and d not in ("output", "__pycache__")]
            files += [os.path.relpath(os.path.join(root, n), REPO) for n in names]
    return sorted(f for f in files if f.endswith(TEXT_SUFFIXES) and os.path.isfile(os.path.join(REPO, f)))


def read(path):
    with open(os.path.join(REPO, path), encoding="utf-8") as f:
        return f.read()


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]|<[^>]+>", "", heading.strip()).lower()
    text = "".join(c for c in text if c in " -" or unicodedata.category(c)[0] in "LN")
    return text.replace(" ", "-")


def anchors(path):
    """The anchors of a markdown file's headings, with GitHub's -1, -2 suffixes for repeats."""
    seen, out = {}, set()
    for line in FENCE.sub("", read(path)).splitlines():
        m = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            base = slug(m.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            out.add(base if n == 0 else f"{base}-{n}")
    return out


def test_slug_follows_github():
    assert slug("MAL choices") == "mal-choices"
    assert slug("HCRA-C") == "hcra-c"
    assert slug("ALWA: a hook, not a wrapper") == "alwa-a-hook-not-a-wrapper"
    assert slug("DATE 3D max filtering") == "date-3d-max-filtering"


def test_no_file_names_unshipped_design_notes():
    offenders = [f"{path}: {name}" for path in tracked_files() for name in UNSHIPPED if name in read(path)]
    assert not offenders, "files point to notes a user does not have; cite docs/methods.md#... instead:\n" + "\n".join(offenders)


def _markdown_links():
    for path in tracked_files():
        if not path.endswith(".md"):
            continue
        for target in LINK.findall(FENCE.sub("", read(path))):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            yield path, target


def _resolve(source, target):
    """(file relative to the repository, anchor or None) of a link written in ``source``."""
    file_part, _, anchor = target.partition("#")
    if not file_part:
        return source, anchor or None
    return os.path.normpath(os.path.join(os.path.dirname(source), file_part)), anchor or None


def test_markdown_links_resolve():
    broken = []
    for source, target in _markdown_links():
        path, anchor = _resolve(source, target)
        if not os.path.exists(os.path.join(REPO, path)):
            broken.append(f"{source}: {target} (no file {path})")
        elif anchor and path.endswith(".md") and anchor not in anchors(path):
            broken.append(f"{source}: {target} (no heading #{anchor} in {path})")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_document_citations_resolve():
    """``docs/methods.md#<heading>`` and ``projects/<M>/README.md`` written in code, configs, tests and
    pages name a file and heading that exist."""
    broken, count = [], 0
    for source in tracked_files():
        for path, anchor in CITATION.findall(read(source)):
            count += 1
            path = path.rstrip(".")
            if not os.path.isfile(os.path.join(REPO, path)):
                broken.append(f"{source}: {path} does not exist")
            elif anchor and anchor not in anchors(path):
                broken.append(f"{source}: {path}#{anchor} is not a heading of {path}")
    assert count > 0, "no citation of a docs/ page found: the pattern no longer matches how the code cites"
    assert not broken, "citations that do not resolve:\n" + "\n".join(broken)


@pytest.mark.parametrize("page", ["README.md", "projects/MAL/README.md", "projects/DATE/README.md",
                                  "projects/RetinaNetConf/README.md", "projects/ALWA/README.md",
                                  "projects/HCRAL/README.md"])
def test_pages_link_methods(page):
    """The README and every method page lead to the formulas and choices."""
    assert "docs/methods.md" in read(page)
