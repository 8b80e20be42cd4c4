"""Alembic migrations of the plan store (run by :func:`allocator.service.store.Store.migrate`)."""
