"""`diagnose()`: every check, in the order a fix depends on (torch, then fbgemm, then torchrec), into one Report."""
from __future__ import annotations

import shlex
import sys

from tandemrec.doctor import probes
from tandemrec.doctor.encoders import check_image_encoder, check_text_encoder, hub_cache
from tandemrec.doctor.fixes import canonical, pip, wanted
from tandemrec.doctor.kernels import check_faiss, check_fbgemm, check_torch, check_torchrec, cuda_available
from tandemrec.doctor.probes import short_error
from tandemrec.doctor.report import Report

VERSIONS = (  # (label, distribution) printed as they are installed; fbgemm and faiss say which wheel
    ("torch", "torch"),
    ("transformers", "transformers"),
    ("open_clip", "open_clip_torch"),
    ("polars", "polars"),
    ("numpy", "numpy"),
)
ORDER = ("python", "torch", "torchrec", "fbgemm", "faiss", "transformers", "open_clip", "polars", "numpy")
IMPORTS = (  # (module, distribution) that must import: the core of every job
    ("numpy", "numpy"),
    ("polars", "polars"),
    ("transformers", "transformers"),
    ("open_clip", "open_clip_torch"),
)


def diagnose() -> Report:
    """Check the whole install without printing, so the CLI decides what to show and which exit status to give."""
    report = Report()
    report.versions.append(("python", f"{sys.version.split()[0]} ({sys.platform})"))
    if sys.version_info < (3, 10):
        report.problem("python", f"Python {sys.version.split()[0]} is older than tandemrec's 3.10", "use Python 3.10 or newer")
    _check_requirements(report)
    torch = check_torch(report)
    cuda = bool(torch is not None and cuda_available(torch))
    fbgemm_ok = check_fbgemm(report, torch, cuda)
    check_torchrec(report, fbgemm_ok)
    check_faiss(report, cuda)
    for module, dist in IMPORTS:
        try:
            probes.import_quietly(module)
        except Exception as err:  # noqa: BLE001 - a broken install raises anything
            report.problem(canonical(dist), f"does not import ({short_error(err)})", pip("install", "--force-reinstall", wanted(dist)))
    for label, dist in VERSIONS:
        report.versions.append((label, probes.dist_version(dist) or "not installed"))
    check_text_encoder(report)
    check_image_encoder(report, torch)
    report.encoders.append(("hub cache", hub_cache()))
    if probes.dist_version("lightgbm") is None:
        report.notes.append(f"lightgbm is not installed: the behaviour outcome model is logistic only ({pip('install', wanted('lightgbm'))})")
    report.versions.sort(key=lambda row: ORDER.index(row[0]))
    return report


def _check_requirements(report: Report) -> None:
    """Every core dependency installed and inside tandemrec's range; an extra's only when installed."""
    try:
        from packaging.requirements import Requirement
    except ImportError:
        report.notes.append("packaging is not installed: dependency ranges not checked")
        return
    for text in probes.declared_requirements():
        req = Requirement(text)
        core = req.marker is None or req.marker.evaluate({"extra": ""})
        version = probes.dist_version(req.name)
        if version is None:
            if core:
                report.problem(canonical(req.name), "is not installed", pip("install", shlex.quote(str(req))))
            continue
        if req.specifier and not req.specifier.contains(version, prereleases=True):
            wanted_range = str(req).split(";")[0].strip()
            report.problem(
                canonical(req.name), f"{version} is outside tandemrec's range '{req.specifier}'",
                pip("install", shlex.quote(wanted_range)),
            )
