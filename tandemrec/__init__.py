"""tandemrec: a multimodal two-tower recommender for shops.

The public face: `train(config, run_dir)`, `index(run_dir)` and `evaluate(run_dir)` for the jobs,
`Retriever.load(run_dir)` for serving, `Run` for a run folder's parts, the config schema, and the parts'
main classes for those who build their own jobs (`tandemrec.data`, `.towers`, `.training`, `.retrieval`).
Names are imported on first use, so that `tandemrec --help` does not pay for loading TorchRec.
"""
from importlib import import_module

# public name -> (module, the module's name for it)
_EXPORTS = {
    "ItemFilter": ("tandemrec.retrieval.filters", "ItemFilter"),
    "Recommendations": ("tandemrec.retrieval.recommendations", "Recommendations"),
    "Retriever": ("tandemrec.retrieval.retriever", "Retriever"),
    "Run": ("tandemrec.run", "Run"),
    "RunConfig": ("tandemrec.config", "RunConfig"),
    "TwoTower": ("tandemrec.towers.two_tower", "TwoTower"),
    "UserProfile": ("tandemrec.retrieval.profiles", "UserProfile"),
    "evaluate": ("tandemrec.jobs", "evaluate_run"),
    "index": ("tandemrec.jobs", "build_index"),
    "load_config": ("tandemrec.config", "load_config"),
    "train": ("tandemrec.jobs", "train"),
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'tandemrec' has no attribute '{name}'")
    module, attribute = _EXPORTS[name]
    return getattr(import_module(module), attribute)
