"""The distribution as the OpenVLE backend installs it: one package, `openvle_moodle_sync`, beside the
backend's own modules (which may well be called `settings`, `models` or `moodle`)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

from tests.proc import ROOT

pytestmark = pytest.mark.timeout(300)

BACKEND_LOOKALIKES = {
    "settings.py": "raise ImportError('the backend's own settings.py was imported')\n",
    "models.py": "raise ImportError('the backend's own models.py was imported')\n",
    "moodle/__init__.py": "raise ImportError('the backend's own moodle package was imported')\n",
    "workflows/__init__.py": "raise ImportError('the backend's own workflows package was imported')\n",
}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    # Built from a copy: setuptools writes build/ and *.egg-info beside the sources it builds.
    source = tmp_path_factory.mktemp("source") / "openvle-moodle-sync"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", ".demo", "build", "*.egg-info", "__pycache__", ".*_cache"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--wheel-dir", str(out), str(source)], check=True, capture_output=True, text=True)
    (built,) = out.glob("openvle_moodle_sync-*.whl")
    return built


def test_the_wheel_holds_one_top_level_package(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names}
    assert {t for t in top_level if not t.endswith(".dist-info")} == {"openvle_moodle_sync"}
    assert "openvle_moodle_sync/starter/api.py" in names
    assert "openvle_moodle_sync/workflows/deploy.py" in names
    assert not any(name.startswith(("openvle_moodle_sync/tests", "fake_moodle", "demo", "bench")) for name in names)


def test_the_backend_imports_the_api_beside_its_own_settings_models_and_moodle(wheel: Path, tmp_path: Path) -> None:
    # A fresh venv holds only the wheel; the dependencies come from this venv's site-packages, added as a
    # plain path (no .pth processing), so the repository's editable install stays invisible.
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
                    str(wheel)], check=True, capture_output=True, text=True)
    installed = {p.name for p in site.iterdir()} - {"dependencies.pth"}
    assert {n for n in installed if not n.endswith(".dist-info")} == {"openvle_moodle_sync"}

    backend = tmp_path / "backend"
    for name, text in BACKEND_LOOKALIKES.items():
        (backend / name).parent.mkdir(parents=True, exist_ok=True)
        (backend / name).write_text(text)
    script = (
        "import openvle_moodle_sync, inspect\n"
        "from openvle_moodle_sync import starter\n"
        "from openvle_moodle_sync.worker import build_worker\n"
        "assert 'site-packages' in openvle_moodle_sync.__file__, openvle_moodle_sync.__file__\n"
        "for name in ('deploy_event', 'get_progress', 'add_participant', 'remove_participant', 'archive_event',\n"
        "             'delete_event', 'rerun_deployment', 'search_courses'):\n"
        "    assert inspect.iscoroutinefunction(getattr(starter, name)), name\n"
        "assert issubclass(starter.DeploymentNotFound, Exception)\n"
        "print('ok')\n"
    )
    result = subprocess.run([python, "-c", script], cwd=backend, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"

    for command in ([python, "-m", "openvle_moodle_sync.starter", "--help"],
                    [env_dir / "bin" / "openvle-moodle-sync", "--help"]):
        cli = subprocess.run(command, cwd=backend, capture_output=True, text=True)
        assert cli.returncode == 0, cli.stderr
        assert "deploy" in cli.stdout
