"""Calibration: response curves and customer values from data and from managers' judgment.

Sources, one module each:

* :mod:`.records` - individual records (spend, outcome) -> maximum-likelihood curves;
* :mod:`.aggregates` - past campaigns (spend per member, rate, size) -> the same fits;
* :mod:`.judgment` - two-point (Blattberg-Deighton) and four-point (Little) closed forms;
* :mod:`.transactions` - a transaction log -> margins, retention, lifetime values, pools;
* :mod:`.cohorts` - contract cohorts -> shifted-beta-geometric retention;
* :mod:`.segmentation` - value pyramid, relationship stage, recency status, pools.

:mod:`.model_file` writes the result as a validated model file with provenance,
fit diagnostics and bootstrap samples; ``allocator calibrate`` drives it all.
"""

from .aggregates import AggregatesSpec, fit_aggregates
from .cells import CalibratedCell
from .cohorts import SBGFit, fit_sbg, load_cohorts
from .judgment import four_point, load_judgments, two_point
from .likelihood import BinomialData, fit_binomial
from .model_file import build_model, merge_models, validate, write_model
from .records import RecordsSpec, fit_records
from .segmentation import pools, recency_status, relationship_stage, value_pyramid
from .tables import read_table
from .transactions import TransactionsSpec, customer_base, load_transactions, segment_economics

__all__ = [
    "AggregatesSpec", "BinomialData", "CalibratedCell", "RecordsSpec", "SBGFit", "TransactionsSpec",
    "build_model", "customer_base", "fit_aggregates", "fit_binomial", "fit_records", "fit_sbg", "four_point",
    "load_cohorts", "load_judgments", "load_transactions", "merge_models", "pools", "read_table",
    "recency_status", "relationship_stage", "segment_economics", "two_point", "validate", "value_pyramid",
    "write_model",
]
