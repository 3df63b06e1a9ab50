"""tandemrec: a multimodal two-tower recommender for shops.

The public face: `Retriever.load(run_dir)` for serving, the config schema, and the parts' main
classes for those who build their own jobs (`tandemrec.data`, `.towers`, `.training`, `.retrieval`).
"""
from tandemrec.config import RunConfig, load_config
from tandemrec.retrieval.recommendations import Recommendations
from tandemrec.retrieval.retriever import Retriever
from tandemrec.towers.two_tower import TwoTower

__all__ = ["Recommendations", "Retriever", "RunConfig", "TwoTower", "load_config"]
