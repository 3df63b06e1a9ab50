"""tandemrec.data: the canonical tables, readers, validation, id vocabularies, splits and the synthetic shop.

Nothing here knows about models; towers, training and retrieval build on these names.
"""

from tandemrec.data.dataset import INTERACTION_COLUMNS, ITEM_COLUMNS, USER_ID, Dataset
from tandemrec.data.errors import DataError
from tandemrec.data.movielens import read_movielens
from tandemrec.data.split import Split, temporal_split
from tandemrec.data.synthetic import SyntheticShopConfig, make_synthetic_shop
from tandemrec.data.validate import ValidationReport, validate
from tandemrec.data.vocab import Vocabulary

__all__ = [
    "INTERACTION_COLUMNS",
    "ITEM_COLUMNS",
    "USER_ID",
    "DataError",
    "Dataset",
    "Split",
    "SyntheticShopConfig",
    "ValidationReport",
    "Vocabulary",
    "make_synthetic_shop",
    "read_movielens",
    "temporal_split",
    "validate",
]
