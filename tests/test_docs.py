"""The documentation: the site builds in MkDocs' strict mode (a link to a missing page or anchor
fails it), and every relative link in the README points at a file that exists."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# [text](target) outside code spans; http(s) and in-page anchors are not files.
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def test_site_builds_strictly(tmp_path: Path):
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
                           str(tmp_path / "site")], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "site" / "architecture" / "index.html").exists()
    assert (tmp_path / "site" / "results" / "spike.png").exists()  # pages show bench's PNGs


def test_readme_links_point_at_files():
    links = _LINK.findall((ROOT / "README.md").read_text(encoding="utf-8"))
    files = [link.split("#")[0] for link in links if not link.startswith(("http", "#"))]
    assert files, "the README links to its documentation pages"
    missing = [link for link in files if not (ROOT / link).exists()]
    assert not missing, missing
