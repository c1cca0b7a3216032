"""Golden outputs: what ``show``, ``suggest`` and ``report`` print and write for the sample
profiles in ``tests/data``, byte for byte, so that a refactoring can prove it changed
nothing (``tests/unit/test_golden.py``).

When a change of output is intended, regenerate the golden files and commit them with
the change (the diff is the review)::

    python tests/golden.py

Add a sample profile (a real ``memadvise profile`` output, its machine-specific fields
replaced by fixed ones)::

    python tests/golden.py --add NAME PROFILE.json

Outputs are normalised before comparison: the temporary folder, the memadvise version,
the plan file's creation time and ``suggest``'s own run time.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
GOLDEN = DATA / "golden"
SAMPLES = ("mlp", "gpt", "resnet")  # tests/data/profile_<name>.json (mlp: profile_v1.json)
WIDTH = 100  # terminal columns of the text outputs

FIXED_TIME = "2026-01-01T00:00:00+00:00"


def profile_path(name: str) -> Path:
    return DATA / ("profile_v1.json" if name == "mlp" else f"profile_{name}.json")


def normalize_profile(doc: dict, name: str) -> dict:
    """A recorded profile with its machine- and run-specific fields fixed: paths under
    ``/golden``, no host name, a fixed creation time."""
    doc = json.loads(json.dumps(doc))
    script = Path(doc["script"]["path"]).name
    doc["created_at"] = FIXED_TIME
    doc["script"].update(path=f"/golden/{script}", cwd="/golden", python="python")
    doc["environment"].update(platform="golden", hostname="golden")
    if doc.get("model", {}).get("file"):
        doc["model"]["file"] = f"/golden/{script}"
    return doc


def _run(*args: str) -> str:
    from typer.testing import CliRunner

    from memadvise.cli.app import app

    result = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": str(WIDTH), "TERM": "dumb"})
    if result.exit_code != 0:
        raise AssertionError(f"memadvise {' '.join(map(str, args))} exited {result.exit_code}: {result.output}")
    return result.stdout


def _normalize_text(text: str, tmp: Path) -> str:
    import memadvise

    text = text.replace(str(tmp), "<tmp>")
    return re.sub(rf"memadvise {re.escape(memadvise.__version__)}\b", "memadvise <version>", text)


def _normalize_plan(text: str) -> str:
    doc = json.loads(text)
    doc["created_at"] = FIXED_TIME
    doc["tool"]["version"] = "<version>"
    doc["suggest_time_s"] = 0.0
    return json.dumps(doc, indent=1) + "\n"


def outputs(name: str) -> dict[str, str]:
    """The normalised outputs of every command on sample ``name``, by golden file name."""
    with tempfile.TemporaryDirectory(prefix="memadvise-golden-") as tmp_dir:
        tmp = Path(tmp_dir)
        profile = tmp / "profile.json"
        shutil.copy(profile_path(name), profile)
        plan = tmp / "plan.json"
        report = tmp / "report.html"
        out = {
            "show.json": _run("show", "--profile", profile, "--json"),
            "show.txt": _run("show", "--profile", profile),
            "suggest.txt": _run("suggest", "--profile", profile, "--out", plan),
        }
        out["plan.json"] = _normalize_plan(plan.read_text(encoding="utf-8"))
        _run("report", "--profile", profile, "--plan", plan, "--out", report, "--json")
        out["report.html"] = report.read_text(encoding="utf-8")
        return {k: _normalize_text(v, tmp) for k, v in out.items()}


def write_golden(names=SAMPLES) -> None:
    for name in names:
        folder = GOLDEN / name
        folder.mkdir(parents=True, exist_ok=True)
        for file, text in outputs(name).items():
            (folder / file).write_text(text, encoding="utf-8")
        print(f"golden outputs of {name} written to {folder.relative_to(ROOT)}")


def main(argv: list[str]) -> None:
    sys.path.insert(0, str(ROOT))
    if argv[:1] == ["--add"]:
        name, src = argv[1], Path(argv[2])
        doc = normalize_profile(json.loads(src.read_text(encoding="utf-8")), name)
        profile_path(name).write_text(json.dumps(doc, separators=(",", ":")) + "\n", encoding="utf-8")
        write_golden([name])
        return
    write_golden()


if __name__ == "__main__":
    main(sys.argv[1:])
