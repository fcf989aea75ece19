"""Every citation of the spec points into docs/spec.md, at a section it has."""
import os
import re
import subprocess

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SPEC = os.path.join(REPO, "docs", "spec.md")
# A citation: "docs/spec.md section N" in code and the README, "[spec section N](spec.md)" in docs/.
CITATION = re.compile(r"docs/spec\.md sections? (\d+)|\[spec section (\d+)\]\(spec\.md\)")
ANY_MENTION = re.compile(r"spec(?:\.md)? sections? \d+|\bspec \(?section|\(spec \d+\)", re.IGNORECASE)


def _tracked_texts():
    names = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True,
                           check=True).stdout.split()
    for name in names:
        if name.endswith((".py", ".md", ".json", ".cddl", ".txt", ".c", ".h")):
            with open(os.path.join(REPO, name), encoding="utf-8", errors="replace") as f:
                yield name, f.read()


def test_every_spec_citation_has_its_target():
    with open(SPEC, encoding="utf-8") as f:
        sections = set(re.findall(r"^## (\d+)\. ", f.read(), re.MULTILINE))
    assert sections >= {"1", "2", "3", "4", "5", "6", "7"}, sections
    citations = 0
    for name, text in _tracked_texts():
        if name in ("docs/spec.md", "tests/host/test_spec_references.py"):
            continue
        cited = {m.start() for m in CITATION.finditer(text)}
        for match in CITATION.finditer(text):
            citations += 1
            number = match.group(1) or match.group(2)
            assert number in sections, "%s cites spec section %s, which docs/spec.md lacks" % (
                name, number)
        for mention in ANY_MENTION.finditer(text):
            # Each mention must sit inside a citation that names its target.
            inside = any(start <= mention.start() < start + 40 for start in cited)
            assert inside, "%s: %r does not point into docs/spec.md" % (name, mention.group(0))
    assert citations > 20, "found only %d citations: the pattern no longer matches" % citations
