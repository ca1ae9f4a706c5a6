"""Every ```python block of README.md and docs/*.md runs.

Each block runs alone in a fresh interpreter, in a temporary folder, with a
timeout, so the documentation cannot drift from the code. Blocks are short
by nature (few samples, one epoch). A block that truly needs something a
test machine lacks (a device over SSH, a cluster of workers) is preceded
by ``<!-- snippet: skip REASON -->``; the reason is required.
"""

import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))
BLOCK = re.compile(
    r"(?:<!--\s*snippet:\s*skip\s*(?P<reason>[^>]*?)\s*-->\s*\n)?"
    r"^```python[ \t]*\n(?P<code>.*?)^```[ \t]*$",
    re.DOTALL | re.MULTILINE)
# The longest block (docs/zoo_quantize.md: QAT steps and two int8
# conversions of MobileNetV3Small) takes about 3 minutes alone on 2 cores;
# beside another test file it needs more.
TIMEOUT_S = 600


def python_blocks(text):
    """``[(line, code, skip_reason or None)]`` of the ```python blocks
    (``line``: 1-based line of the opening fence)."""
    out = []
    for m in BLOCK.finditer(text):
        line = text.count("\n", 0, m.start("code"))
        reason = m.group("reason")
        out.append((line, m.group("code"),
                    None if reason is None else reason.strip()))
    return out


def _cases():
    for doc in DOCS:
        for line, code, reason in python_blocks(doc.read_text()):
            yield pytest.param(doc, code, reason,
                               id=f"{doc.relative_to(ROOT)}:{line}")


def test_block_finder_reads_skip_markers_and_ignores_other_languages():
    text = ("```python\nprint(1)\n```\n\n```sh\nls\n```\n"
            "<!-- snippet: skip needs a Raspberry Pi -->\n"
            "```python\nconnect()\n```\n")
    assert python_blocks(text) == [
        (1, "print(1)\n", None), (9, "connect()\n", "needs a Raspberry Pi")]


def test_docs_hold_python_blocks():
    assert len(list(_cases())) >= 5


@pytest.mark.slow
@pytest.mark.parametrize("doc,code,reason", list(_cases()))
def test_python_block_runs(doc, code, reason, tmp_path):
    if reason is not None:
        assert reason, f"{doc.name}: a skipped snippet must say why"
        pytest.skip(reason)
    script = tmp_path / "snippet.py"
    script.write_text(code)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=os.pathsep.join(
                   [str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")]
                                  if p]))
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path,
                          env=env, capture_output=True, text=True,
                          timeout=TIMEOUT_S)
    assert proc.returncode == 0, (
        f"{doc.name} snippet failed:\n{code}\n--- stderr ---\n"
        f"{proc.stderr[-3000:]}")
