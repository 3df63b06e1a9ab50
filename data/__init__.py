"""tandemrec.data: the canonical tables, readers, validation, id vocabularies, splits, domains and the
synthetic shop.

Nothing here knows about models; towers, training and retrieval build on these names.
"""

from tandemrec.data.dataset import INTERACTION_COLUMNS, ITEM_COLUMNS, USER_ID, Dataset
from tandemrec.data.domains import DomainConfig, domain_counts, label_domains, target_sparse
from tandemrec.data.errors import DataError
from tandemrec.data.importer import import_dataset
from tandemrec.data.readers import (
    READERS,
    read,
    read_amazon,
    read_generic,
    read_hm,
    read_movielens,
    read_retailrocket,
)
from tandemrec.data.split import Split, SplitConfig, temporal_cut, temporal_split
from tandemrec.data.synthetic import SyntheticShopConfig, make_synthetic_shop
from tandemrec.data.validate import ValidationReport, validate
from tandemrec.data.vocab import Vocabulary

__all__ = [
    "INTERACTION_COLUMNS",
    "ITEM_COLUMNS",
    "READERS",
    "USER_ID",
    "DataError",
    "Dataset",
    "DomainConfig",
    "Split",
    "SplitConfig",
    "SyntheticShopConfig",
    "ValidationReport",
    "Vocabulary",
    "domain_counts",
    "import_dataset",
    "label_domains",
    "make_synthetic_shop",
    "read",
    "read_amazon",
    "read_generic",
    "read_hm",
    "read_movielens",
    "read_retailrocket",
    "target_sparse",
    "temporal_cut",
    "temporal_split",
    "validate",
]
