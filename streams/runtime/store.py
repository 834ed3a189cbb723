"""The worker's entity-state store: live :class:`~streams.engine.state.EntityState` objects in front
of the Faust table's local store (RocksDB or memory), written only after the changelog is acknowledged.

The engine's state records are pure (``streams/engine/state.py``); this module is the part that knows
Faust's stores (``rocksdict``, the table's ``_dbs`` and key index).
"""

from __future__ import annotations

import logging
from collections import OrderedDict

from streams.engine.codec import StateFormatError
from streams.engine.state import EntityState

log = logging.getLogger(__name__)


class StateCache:
    """Live :class:`EntityState` objects in front of the worker's local state store.

    Unpickling an entity's state for every event costs more than processing it, so the worker
    keeps the objects it last stored, up to ``max_entries`` (least recently stored dropped first).
    The cache is the truth for the keys this worker stored since its partitions were last
    assigned: a hit returns the object without touching the store (RocksDB returns new bytes
    on every read, so "is it still the same bytes" cannot be asked cheaply). On every rebalance
    and after a changelog recovery :meth:`clear` drops the objects, so a recovered table wins.

    Thrash guard: once the cache has dropped more than ``max_entries`` states since it was last
    cleared, the entities this worker serves do not fit (an LRU of a fraction of them hits that
    fraction at best, nothing for entities reporting in turn), and each cached state costs ~10 KB
    of RSS: it then keeps none until the next :meth:`clear` (rebalance). Misses cost a decode.

    Bytes that are not a state this version reads (an unknown format version, malformed bytes, a
    pickle naming anything but state classes) do not stop the worker: the entity starts from an empty
    state, one log line at ERROR names the key, the reason and what to do, and ``unreadable`` counts
    them. Its next commit replaces the record. Why not stop: one record (from a newer version after a
    rollback, or written by someone who should not) must not stop a county's monitoring; what is lost
    is that entity's memory (duplicate ring, detector baselines, open alerts), which the log line says.

    Writes follow the commit (streams/runtime/commit.py): :meth:`store` serializes a state and keeps
    its bytes as *unwritten* until :meth:`written` puts them into the local store, which
    happens only after the broker acknowledged their changelog records. A miss reads the
    unwritten bytes first, then the store: the local store never runs ahead of the changelog.

    >>> class Table:  # a memory store stand-in
    ...     data = {}
    >>> c = StateCache(Table(), max_entries=1)
    >>> st = EntityState(name="A")
    >>> raw = c.store(b"A", st)
    >>> c.load(b"A") is st, c.read(b"A")          # a hit; not in the store before written()
    (True, None)
    >>> c.written({b"A": (0, raw)}, {0: 41}); c.read(b"A") == raw
    True
    >>> _ = c.store(b"B", EntityState(name="B"))  # bound 1: A's object is dropped
    >>> a = c.load(b"A"); a is st, a.name           # a miss: decoded from the store
    (False, 'A')
    >>> c.forget(b"A"); c.load(b"A").name           # deleted: a fresh state
    ''
    >>> Table.data[b"X"] = b"RW\\x07..."; c.load(b"X").name, c.unreadable   # a newer format: skipped, logged
    ('', 1)
    >>> for k in (b"C", b"D", b"E"): _ = c.store(k, EntityState())
    >>> len(c._objs), c._dropped                   # more than 1 dropped: thrashing, keeps none
    (0, 2)
    """

    def __init__(self, table, max_entries: int, partition_for_key=None, actives=None):
        self.table = table
        self.max_entries = max_entries
        self.partition_for_key = partition_for_key or (lambda key: None)
        self.actives = actives  # () -> the worker's assigned active TPs (RocksDB writes only to owned partitions)
        self._objs: OrderedDict[bytes, EntityState] = OrderedDict()  # O(1) eviction of the oldest (a dict's
        # next(iter(d)) walks the slots its earlier deletions left at the front: O(n) per eviction)
        self._unwritten: dict[bytes, bytes | None] = {}  # serialized, changelog not yet acknowledged
        self._dropped = 0  # states evicted since the last clear(): more than max_entries turns the cache off
        self.hits = self.misses = 0
        self.unreadable = 0  # stored states that could not be read (started empty; see the class docstring)

    @property
    def entries(self) -> int:
        return len(self._objs)

    @property
    def thrashing(self) -> bool:
        return self._dropped > self.max_entries

    def load(self, key: bytes) -> EntityState:
        st = self._objs.get(key)
        if st is not None:
            self.hits += 1
            return st
        self.misses += 1
        raw = self._unwritten[key] if key in self._unwritten else self.read(key)
        try:
            return EntityState.loads(raw)
        except StateFormatError as e:
            self.unreadable += 1
            log.error(
                "entity state %r (%d bytes) not read: %s. It starts from an empty state and its next commit "
                "replaces the record. If a newer riskwatch wrote it, run that version instead; otherwise check "
                "who can write the changelog topic (only the worker's principal may: deploy/kafka/acls.yaml).",
                key,
                len(raw or b""),
                e,
            )
            return EntityState()

    def store(self, key: bytes, st: EntityState) -> bytes:
        raw = st.dumps()
        self._unwritten[key] = raw
        objs = self._objs
        if key in objs:
            objs.move_to_end(key)
        elif self._dropped > self.max_entries or not self.max_entries:  # thrashing (or no cache): keep nothing
            if objs:
                objs.clear()
            return raw
        elif len(objs) >= self.max_entries:
            objs.popitem(last=False)  # the least recently stored
            self._dropped += 1
        objs[key] = st
        return raw

    def forget(self, key: bytes) -> None:
        """The key is deleted (eviction): its tombstone goes to the changelog, then the store."""
        self._objs.pop(key, None)
        self._unwritten[key] = None

    def clear(self, *args, **kwargs) -> None:
        """Drop the live objects (a rebalance or a recovery: the table is the truth again).
        Unwritten bytes stay: they are newer than the store until :meth:`written`."""
        self._objs.clear()
        self._dropped = 0

    async def aclear(self, *args, **kwargs) -> None:
        self.clear()

    # --- the local store ---------------------------------------------------------------------
    def read(self, key: bytes) -> bytes | None:
        """The key's bytes in the local store (RocksDB or memory), not the cache."""
        store = self.table.data
        dbs = getattr(store, "_dbs", None)
        if dbs is None:  # memory store (or a plain dict)
            return store.get(key)
        p = self.partition_for_key(key)  # where its events come from (the worker sets it before loading)
        db = dbs.get(p) if p is not None else None
        if db is not None:
            raw = db.get(key)
            if raw is not None:
                return raw
        for part, other in list(dbs.items()):  # a new entity (or one that changed partition): bloom filters first
            if part != p and other.key_may_exist(key):
                raw = other.get(key)
                if raw is not None:
                    return raw
        return None

    def written(self, items: dict[bytes, tuple[int, bytes | None]], offsets: dict[int, int]) -> None:
        """Put a commit's states into the local store once their changelog records are acknowledged
        (``offsets``: changelog partition -> highest offset written by this commit).

        RocksDB: one ``WriteBatch`` per partition holding the states and the partition's persisted
        offset (atomic: after a kill -9 the store is a prefix of the changelog, and recovery reads
        only what follows the offset). Only partitions this worker owns now are written: a
        partition that moved away may have newer changelog records from another worker, which
        this store has not seen, so its offset must not jump past them."""
        unwritten = self._unwritten
        for key, (_, value) in items.items():
            if unwritten.get(key, _MISSING) is value:
                del unwritten[key]
        store = self.table.data
        dbs = getattr(store, "_dbs", None)
        if dbs is None:  # memory store: the dict, and Faust's key -> partition map (used on revocation)
            kp = getattr(store, "_key_partition", None)
            for key, (p, value) in items.items():
                if value is None:
                    store.pop(key, None)
                    kp is not None and kp.pop(key, None)
                else:
                    store[key] = value
                    if kp is not None:
                        kp[key] = p
            return
        import rocksdict
        from faust.types import TP

        topic = self.table.changelog_topic.get_topic_name()
        actives = self.actives() if self.actives is not None else None
        batches: dict[int, rocksdict.WriteBatch] = {}
        index = store._key_index
        for key, (p, value) in items.items():
            wb = batches.get(p)
            if wb is None:
                if p not in dbs or (actives is not None and TP(topic, p) not in actives):
                    index.pop(key, None)
                    continue  # not ours now: the changelog has it, a later recovery reads it
                wb = batches[p] = rocksdict.WriteBatch(raw_mode=True)
            if value is None:
                wb.delete(key)
                index.pop(key, None)
            else:
                wb.put(key, value)
                index[key] = p
        for p, wb in batches.items():
            db = dbs[p]
            offset = offsets.get(p)
            if offset is not None:
                prev = db.get(store.offset_key)
                if prev is None or int(prev) < offset:
                    wb.put(store.offset_key, str(offset).encode())
            db.write(wb)


_MISSING = object()
