"""The README's Python package example (its `py` blocks) runs as written, in a fresh folder,
after the README lines that write the files it reads (`--out NAME` of a `cargo run --release
--` line, run with the CLI binary)."""

import os
import re
import subprocess
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("GPSAMP_BIN", str(ROOT / "target" / "release" / "gpsamp"))


def blocks(text, lang):
    return re.findall(r"^```" + lang + r"\n(.*?)^```", text, flags=re.S | re.M)


def test_readme_python_example_runs(tmp_path, monkeypatch):
    readme = (ROOT / "README.md").read_text()
    code = blocks(readme, "py")
    assert code, "the README has no py block"
    lines = [line for b in blocks(readme, "sh") for line in b.splitlines()]
    monkeypatch.chdir(tmp_path)
    for name in sorted(set(re.findall(r'read_csv\("([^"]+)"\)', "".join(code)))):
        maker = [l for l in lines if l.startswith("cargo run --release --") and f"--out {name}" in l]
        assert maker, f"no README line writes {name}"
        args = maker[0].split()[4:]
        subprocess.run([BIN, *args], check=True, capture_output=True)
    for b in code:
        exec(compile(b, "README.md", "exec"), {})
