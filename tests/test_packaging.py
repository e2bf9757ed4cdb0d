"""The wheel and sdist as an adopter gets them (issue #20), built by ``python -m build``.

The sdist, then the wheel from the sdist (as pip does from PyPI): the license in both, the
Lua scripts and templates in the wheel, the docs the README links to in the sdist, no
half a test suite, metadata ``twine check --strict`` accepts, known classifiers, and no
setuptools deprecation warning while building.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tarfile
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow  # two isolated builds: 20-40 s


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    (wheel,) = out.glob("*.whl")
    (sdist,) = out.glob("*.tar.gz")
    return wheel, sdist, done.stdout + done.stderr


@pytest.fixture(scope="module")
def wheel_names(built):
    with zipfile.ZipFile(built[0]) as wheel:
        return set(wheel.namelist())


@pytest.fixture(scope="module")
def sdist_names(built):
    with tarfile.open(built[1]) as sdist:
        # Without the top folder ("atomicops-0.1.0/").
        return {name.partition("/")[2] for name in sdist.getnames()}


def metadata(built) -> dict:
    with zipfile.ZipFile(built[0]) as wheel:
        (name,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
        return Parser().parsestr(wheel.read(name).decode())


def test_license_in_both(built, wheel_names, sdist_names):
    assert "LICENSE" in sdist_names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in wheel_names)
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "atomicops contributors" in text
    meta = metadata(built)
    assert meta["License-Expression"] == "MIT"
    assert meta.get_all("License-File") == ["LICENSE"]
    # SPDX form: no legacy License field or license classifier next to it.
    assert meta["License"] is None
    assert not [c for c in meta.get_all("Classifier") if c.startswith("License ::")]


def test_wheel_carries_scripts_templates_and_the_plugin(wheel_names):
    for lua in (ROOT / "atomicops" / "lua").glob("*.lua"):
        assert f"atomicops/lua/{lua.name}" in wheel_names
    templates = ROOT / "atomicops" / "templates"
    for template in templates.rglob("*.html"):
        assert f"atomicops/templates/{template.relative_to(templates).as_posix()}" in wheel_names
    for module in ("py.typed", "testing.py", "pytest_optin.py", "drf.py"):
        assert f"atomicops/{module}" in wheel_names
    assert not [n for n in wheel_names if n.startswith(("tests/", "demo_project/"))]


def test_entry_point_and_extras(built):
    with zipfile.ZipFile(built[0]) as wheel:
        (name,) = [n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt")]
        entry_points = wheel.read(name).decode()
    assert "[pytest11]\natomicops = atomicops.pytest_optin" in entry_points
    requires = metadata(built).get_all("Requires-Dist")
    # Only the django-redis connection mode imports django-redis: an extra.
    unconditional = [r for r in requires if "extra ==" not in r]
    assert sorted(re.split(r"[<>=\[ ]", r)[0] for r in unconditional) == ["django", "redis"]
    extras = set(metadata(built).get_all("Provides-Extra"))
    assert {"celery", "django-redis", "drf", "embedded", "testing", "test"} <= extras


def test_classifiers_are_known_and_say_what_is_tested(built):
    trove = pytest.importorskip("trove_classifiers")
    classifiers = metadata(built).get_all("Classifier")
    assert not [c for c in classifiers if c not in trove.classifiers]
    for version in ("3.10", "3.11", "3.12", "3.13"):
        assert f"Programming Language :: Python :: {version}" in classifiers
    for version in ("4.2", "5.2", "6.0", "6.1"):
        assert f"Framework :: Django :: {version}" in classifiers


def test_sdist_has_no_tests_and_the_docs_the_readme_links(sdist_names):
    # A test tree without its conftest, settings, servers and test app cannot run: none.
    assert not [n for n in sdist_names if n.startswith(("tests/", "demo_project/"))]
    readme = (ROOT / "README.md").read_text()
    links = set(re.findall(r"\]\(((?!https?:|#)[^)#]+)", readme))
    assert links, "the README links no docs?"
    missing = sorted(link for link in links if link not in sdist_names)
    assert not missing, f"README links to files the sdist lacks: {missing}"
    assert "pip install -e ." not in readme.split("## Install", 1)[1].split("##", 1)[0]


def test_twine_check_is_clean(built):
    wheel, sdist, _ = built
    done = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", str(wheel), str(sdist)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("PASSED") == 2 and "WARNING" not in done.stdout


def test_build_prints_no_deprecation_warning(built):
    output = built[2]
    assert "project.license" not in output and "License classifiers" not in output
    assert "SetuptoolsDeprecationWarning" not in output, output[-3000:]
