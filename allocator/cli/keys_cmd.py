"""``allocator keys create|list|revoke``: API keys of the HTTP service, per workspace.

A key is shown once, when it is created (alone on the last line of the output, so a script can
take it with ``tail -1``); the store keeps only its SHA-256. Keys are stored where ``allocator
serve`` looks: ``--data-dir`` / ``--database-url`` or their environment variables.
"""

from __future__ import annotations

import re

WORKSPACE = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")


def register(sub) -> None:
    p = sub.add_parser("keys", help="create, list or revoke API keys of the HTTP service")
    p.add_argument("--data-dir", help="folder of the SQLite store (default $ALLOCATOR_DATA_DIR or ./.allocator)")
    p.add_argument("--database-url", help="SQLAlchemy URL of the store (default $ALLOCATOR_DATABASE_URL)")
    ks = p.add_subparsers(dest="keys_command", metavar="ACTION")
    ks.required = True
    c = ks.add_parser("create", help="create a key; prints it alone on the last line")
    c.add_argument("--workspace", required=True, help="the workspace the key reads and writes")
    c.add_argument("--read-only", action="store_true", help="the key can read but not write")
    c.add_argument("--label", help="a note to recognize the key by")
    c.set_defaults(handler=run_create)
    ls = ks.add_parser("list", help="list keys (never their secrets)")
    ls.add_argument("--workspace", help="only this workspace's keys")
    ls.set_defaults(handler=run_list)
    r = ks.add_parser("revoke", help="revoke a key by its id (the part after `alk_`)")
    r.add_argument("key_id")
    r.set_defaults(handler=run_revoke)


def _store(args):
    from pathlib import Path

    from ..service import Settings
    from ..service.store import Store

    settings = Settings.from_env(data_dir=Path(args.data_dir) if getattr(args, "data_dir", None) else None,
                                 database_url=getattr(args, "database_url", None))
    return Store(settings.url)


def run_create(args) -> int:
    from ..errors import Problem, SpecError

    if not WORKSPACE.match(args.workspace):
        raise SpecError(Problem("--workspace", f"must be 1-128 letters, digits, '.', '_' or '-'; got "
                                               f"{args.workspace[:60]!r}"))
    store = _store(args)
    try:
        rec, secret = store.create_key(args.workspace, read_only=args.read_only, label=args.label)
    finally:
        store.dispose()
    print(f"created {'read-only ' if rec.read_only else ''}key {rec.id} for workspace {rec.workspace}; "
          f"it is shown once, store it now:")
    print(secret)
    return 0


def run_list(args) -> int:
    store = _store(args)
    try:
        keys = store.list_keys(args.workspace)
    finally:
        store.dispose()
    for k in keys:
        state = f"revoked {k.revoked_at}" if k.revoked_at else "active"
        print(f"{k.id}  {k.workspace}  {'read-only' if k.read_only else 'read-write'}  {state}  {k.label or ''}"
              .rstrip())
    return 0


def run_revoke(args) -> int:
    from ..errors import AllocatorError

    store = _store(args)
    try:
        ok = store.revoke_key(args.key_id)
    finally:
        store.dispose()
    if not ok:
        raise AllocatorError(f"no active key {args.key_id!r}")
    print(f"revoked key {args.key_id}")
    return 0
