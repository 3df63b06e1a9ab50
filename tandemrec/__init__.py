"""tandemrec: a multimodal two-tower recommender for shops.

The public face: `Retriever.load(run_dir)` for serving, the config schema, and the parts' main
classes for those who build their own jobs (`tandemrec.data`, `.towers`, `.training`, `.retrieval`).
Names are imported on first use, so that `tandemrec --help` does not pay for loading TorchRec.
"""
from importlib import import_module

_EXPORTS = {
    "ItemFilter": "tandemrec.retrieval.filters",
    "Recommendations": "tandemrec.retrieval.recommendations",
    "Retriever": "tandemrec.retrieval.retriever",
    "RunConfig": "tandemrec.config",
    "TwoTower": "tandemrec.towers.two_tower",
    "UserProfile": "tandemrec.retrieval.profiles",
    "load_config": "tandemrec.config",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'tandemrec' has no attribute '{name}'")
    return getattr(import_module(_EXPORTS[name]), name)
