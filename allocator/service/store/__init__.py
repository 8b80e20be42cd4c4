"""The plan store: SQLAlchemy tables, Alembic migrations shipped in the package, and :class:`Store`."""

from .diff import diff_plans
from .store import ACTIVE_JOB_STATES, FINAL_JOB_STATES, STORING, KeyRecord, Store, TooManyJobs

__all__ = ["ACTIVE_JOB_STATES", "FINAL_JOB_STATES", "STORING", "KeyRecord", "Store", "TooManyJobs", "diff_plans"]
