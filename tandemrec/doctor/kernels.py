"""The compiled stack and its kernels: torch (CUDA, bf16), fbgemm (which build, do its CPU ops run), torchrec
on top of it, and FAISS (which wheel, how many GPUs)."""
from __future__ import annotations

import json
from typing import Any

from tandemrec.doctor import probes
from tandemrec.doctor.fixes import FAISS_DISTS, FBGEMM_DISTS, TESTED, pip, wanted
from tandemrec.doctor.probes import short_error
from tandemrec.doctor.report import Report


def check_torch(report: Report) -> Any:
    """torch imports, and what it offers (CUDA devices, bf16); returns the module (None if it does not import) for
    the checks that run kernels with it."""
    try:
        torch = probes.import_quietly("torch")
    except Exception as err:  # noqa: BLE001 - a broken install raises anything
        report.problem("torch", f"does not import ({short_error(err)})", pip("install", "--force-reinstall", wanted("torch")))
        report.kernels.append(("CUDA", "unknown (torch does not import)"))
        return None
    if cuda_available(torch):
        names = sorted({torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())})
        report.kernels.append(("CUDA", f"available: {torch.cuda.device_count()} x {', '.join(names)} (CUDA {torch.version.cuda})"))
        bf16 = torch.cuda.is_bf16_supported()
        report.kernels.append(("bf16", "supported on the GPU (training autocasts to bf16)" if bf16 else "not supported on this GPU"))
        if not bf16:
            report.notes.append("this GPU has no bf16: training's bf16 autocast will be slow; train.device=\"cpu\" or a newer GPU")
    else:
        report.kernels.append(("CUDA", "not available: training runs on CPU in float32"))
        try:
            native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except Exception:  # noqa: BLE001 - a private probe: absent on some builds
            native = False
        report.kernels.append(("bf16", f"CPU {'native' if native else 'emulated'} (not used: bf16 autocast is for CUDA)"))
    return torch


def cuda_available(torch: Any) -> bool:
    """Whether CUDA works, False when asking fails: it decides which fbgemm and FAISS wheels are right."""
    try:
        return bool(torch.cuda.is_available())
    except Exception:  # noqa: BLE001
        return False


def check_fbgemm(report: Report, torch: Any, cuda: bool) -> bool:
    """fbgemm installed as the build this machine can run, importable, and its CPU ops working; True when it is,
    so torchrec's own failure is only reported when fbgemm is not its cause."""
    installed = [d for d in FBGEMM_DISTS if probes.dist_version(d) is not None]
    variant = _fbgemm_variant()
    label = ", ".join(f"{d} {probes.dist_version(d)}" for d in installed) or "not installed"
    report.versions.append(("fbgemm", label + (f" ({variant} build in fbgemm_gpu/)" if variant else "")))
    fix = _fbgemm_fix(cuda, installed)
    if not installed and probes.module_folder("fbgemm_gpu") is None:
        report.problem("fbgemm", "is not installed (torchrec needs its kernels)", fix)
        report.kernels.append(("fbgemm CPU ops", "missing: fbgemm is not installed"))
        return False
    cuda_build = variant == "cuda" or (variant is None and "fbgemm-gpu" in installed)
    causes = []  # the first one is what the user sees; the rest explain it
    if len(installed) > 1:
        causes.append(
            f"both {' and '.join(installed)} are installed: they write the same fbgemm_gpu/ folder and the last "
            f"one installed won ({variant or 'unknown'} build)"
        )
    ops = "not checked: torch does not import"
    if torch is not None:
        try:
            probes.import_quietly("fbgemm_gpu")
        except Exception as err:  # noqa: BLE001 - the CUDA build raises OSError from its .so files
            causes.insert(0, f"import fails ({short_error(err)})")
            ops = "missing: fbgemm_gpu does not import"
        else:
            failed = _fbgemm_ops_failure(torch)
            if failed:
                causes.insert(0, f"it imports but its CPU ops are missing ({failed})")
            ops = f"missing: {failed}" if failed else "usable (asynchronous_complete_cumsum, jagged_to_padded_dense ran)"
    report.kernels.append(("fbgemm CPU ops", ops))
    if causes and cuda_build and not cuda:
        causes.insert(0, "the CUDA build (fbgemm-gpu) is installed on a machine without CUDA")
    if cuda and not cuda_build:
        causes.append("CUDA is available but fbgemm is the CPU build: GPU training needs fbgemm-gpu (or train.device=\"cpu\")")
    if causes:
        report.problem("fbgemm", "; ".join(causes), fix)
    return torch is not None and not causes


def _fbgemm_variant() -> str | None:
    """The build of the installed fbgemm_gpu folder ('cpu', 'cuda', ...), read without importing it."""
    folder = probes.module_folder("fbgemm_gpu")
    if folder is None:
        return None
    try:
        return json.loads((folder / "docs" / "target.default.json.py").read_text())["variant"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _fbgemm_fix(cuda: bool, installed: list[str]) -> str:
    want = "fbgemm-gpu" if cuda else "fbgemm-gpu-cpu"
    install = pip("install", "--force-reinstall", "--no-deps", f"{want}=={TESTED[want]}")
    if not installed:
        return pip("install", f"{want}=={TESTED[want]}")
    # Both wheels write fbgemm_gpu/: remove every one, then put back the one this machine needs.
    return f"{pip('uninstall', '-y', *FBGEMM_DISTS)} && {install}"


def _fbgemm_ops_failure(torch: Any) -> str | None:
    """None when the CPU ops torchrec uses give the right answers; else what went wrong."""
    try:
        ops = torch.ops.fbgemm
        offsets = ops.asynchronous_complete_cumsum(torch.tensor([1, 2, 0], dtype=torch.int64))
        dense = ops.jagged_to_padded_dense(torch.tensor([[1.0], [2.0], [3.0]]), [offsets], [2], 0.0)
    except Exception as err:  # noqa: BLE001 - AttributeError or RuntimeError ("No such operator fbgemm::...")
        return short_error(err)
    if offsets.tolist() != [0, 1, 3, 3] or dense.squeeze(-1).tolist() != [[1.0, 0.0], [2.0, 3.0], [0.0, 0.0]]:
        return f"wrong results: cumsum {offsets.tolist()}, padded {dense.squeeze(-1).tolist()}"
    return None


def check_torchrec(report: Report, fbgemm_ok: bool) -> None:
    """torchrec installed (by hand on CPU) and importing; a failure caused by fbgemm is left to fbgemm's fix."""
    version = probes.dist_version("torchrec")
    fix = pip("install", "--no-deps", f"torchrec=={TESTED['torchrec']}")
    if version is None and probes.module_folder("torchrec") is None:
        report.versions.append(("torchrec", "not installed"))
        report.problem(
            "torchrec", "is not installed (on CPU it goes in by hand, --no-deps: its metadata asks for the "
            "CUDA fbgemm-gpu)", fix,
        )
        return
    try:
        probes.import_quietly("torchrec")
    except Exception as err:  # noqa: BLE001
        report.versions.append(("torchrec", f"{version} (does not import: {short_error(err)})"))
        if fbgemm_ok:  # else the fbgemm problem is the cause, and its fix the one to run first
            report.problem(
                "torchrec", f"does not import ({short_error(err)})",
                pip("install", "--force-reinstall", "--no-deps", f"torchrec=={TESTED['torchrec']}"),
            )
        return
    report.versions.append(("torchrec", version or "unknown"))


def check_faiss(report: Report, cuda: bool) -> None:
    """Exactly one FAISS wheel, importing, and searching on the GPU when there is one."""
    installed = [d for d in FAISS_DISTS if probes.dist_version(d) is not None]
    report.versions.append(("faiss", ", ".join(f"{d} {probes.dist_version(d)}" for d in installed) or "not installed"))
    want = "faiss-gpu-cu12" if cuda else "faiss-cpu"
    install = pip("install", f"{want}=={TESTED[want]}")
    if len(installed) > 1:
        report.problem(
            "faiss", f"{' and '.join(installed)} are all installed: they write the same faiss module",
            f"{pip('uninstall', '-y', *installed)} && {pip('install', '--force-reinstall', f'{want}=={TESTED[want]}')}",
        )
    try:
        faiss = probes.import_quietly("faiss")
    except Exception as err:  # noqa: BLE001
        report.problem("faiss", "is not installed" if not installed else f"does not import ({short_error(err)})", install)
        report.kernels.append(("FAISS GPUs", "unknown (faiss does not import)"))
        return
    try:
        gpus = int(faiss.get_num_gpus())
    except Exception:  # noqa: BLE001 - older CPU builds lack it
        gpus = 0
    report.kernels.append(("FAISS GPUs", str(gpus)))
    if cuda and gpus == 0:
        gpu_wheel = f"faiss-gpu-cu12=={TESTED['faiss-gpu-cu12']}"
        swap = f": {pip('uninstall', '-y', 'faiss-cpu')} && {pip('install', gpu_wheel)}" if "faiss-cpu" in installed else ""
        report.notes.append(f"FAISS searches on CPU although CUDA is available{swap}")
