"""The package installs as designed: `kernels/` ships as `arvid.kernels`, never as top-level `kernels`."""

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_folder_is_listed_in_pyproject():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(cfg["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "arvid").rglob("__init__.py")}
    found = {f for f in found if "weights" not in f}
    assert found - listed == set(), "add these packages to [tool.setuptools] packages in pyproject.toml"
    assert cfg["package-dir"]["arvid.kernels"] == "kernels"


def test_editable_install_imports_arvid_kernels_from_the_kernels_folder():
    import arvid.kernels

    assert Path(arvid.kernels.__file__).resolve().parent == ROOT / "kernels"


@pytest.mark.slow
def test_wheel_ships_arvid_kernels_and_no_top_level_kernels(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True, capture_output=True, timeout=300,
    )
    (wheel,) = tmp_path.glob("arvid-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "arvid/kernels/__init__.py" in names
    assert not any(n.startswith("kernels/") for n in names)
    for part in ("tokenizer", "generator"):  # the default model ships inside the package: no download
        assert {f"arvid/weights/default/{part}/model.safetensors", f"arvid/weights/default/{part}/config.json"} <= set(names)
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    out = subprocess.run(
        [sys.executable, "-c", "import arvid.kernels, arvid, importlib.util as u; "
         "print(arvid.kernels.__file__); print(u.find_spec('kernels'))"],
        cwd=tmp_path, env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    kernels_file, top_level = out.stdout.split()
    assert kernels_file.startswith(str(target)) and top_level == "None"
