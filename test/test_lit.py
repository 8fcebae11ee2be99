"""Runs the lit suite once under pytest and reports each lit file as its own test.

A failing lit test fails `make test`, and pytest's closing line counts lit files.
"""

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

TEST_DIR = Path(__file__).parent
LIT_FILES = sorted(
    p.relative_to(TEST_DIR).as_posix()
    for p in TEST_DIR.rglob("*.mlir")
    if "Inputs" not in p.relative_to(TEST_DIR).parts and "Output" not in p.parts
)


@pytest.fixture(scope="session")
def lit_results(tmp_path_factory):
    report = tmp_path_factory.mktemp("lit") / "lit.xml"
    lit = Path(sys.executable).parent / "lit"
    proc = subprocess.run(
        [str(lit), "-q", f"--xunit-xml-output={report}", str(TEST_DIR)],
        capture_output=True,
        text=True,
    )
    assert report.exists(), f"lit did not run:\n{proc.stdout[-5000:]}{proc.stderr[-5000:]}"
    results = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        failure = case.find("failure")
        # lit's xunit names a case by suite.folder (classname) and file name.
        folder = case.get("classname").split(".", 1)[1].replace(".", "/")
        results[f"{folder}/{case.get('name')}"] = None if failure is None else (failure.text or "failed")
    return results, proc.stdout + proc.stderr


@pytest.mark.parametrize("lit_file", LIT_FILES)
def test_lit(lit_file, lit_results):
    results, log = lit_results
    assert lit_file in results, f"lit did not run {lit_file}:\n{log[-5000:]}"
    assert results[lit_file] is None, results[lit_file]
