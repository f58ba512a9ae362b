"""The org's records, in memory, with indexes on lookup fields and all-or-none transactions.

Every change goes through ``insert``/``update``/``delete`` inside ``transaction()``, which holds
the store lock and journals what it replaces; leaving the block with an exception undoes the
changes made inside it. Transactions nest (Composite, Collections): a nested block undoes only its
own changes when it fails, and ``rollback()`` undoes everything of the outermost block.
"""

import contextlib
import copy
import datetime
import secrets
import threading

from magsync.sandbox.salesforce import ids


def timestamp(moment=None):
    """A datetime in the format Salesforce answers with: ``2023-10-26T10:00:00.000+0000``."""
    moment = moment or datetime.datetime.now(datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


def index_key(f, value):
    """How ``value`` of field ``f`` compares in indexes: text is case-insensitive unless the
    field is case-sensitive, ids compare in their 18-character form."""
    if value is None:
        return None
    if f.type in ("id", "reference"):
        return ids.normalize(value) or value
    if isinstance(value, str) and not f.case_sensitive:
        return value.casefold()
    return value


class Store:
    """Records by object name and id; see the module docstring for transactions."""

    def __init__(self, schema, user_id):
        self.schema = schema
        self.user_id = user_id
        self.lock = threading.RLock()
        # Serials start at a random point so that ids look like an org's, not like 0000001.
        self._serial = secrets.randbelow(62**6) + 62**5
        self._journal = None
        self.clear()

    def clear(self):
        with self.lock:
            self.records = {name: {} for name in self.schema.sobjects}
            self.deleted = {name: {} for name in self.schema.sobjects}
            self.indexes = {}
            for obj in self.schema.sobjects.values():
                for f in obj.fields.values():
                    if f.type != "id" and (f.indexed or (f.type == "reference" and not f.system)):
                        self.indexes[(obj.name, f.name)] = {}

    def new_id(self, sobject):
        with self.lock:
            self._serial += 1
            return ids.make(self.schema.sobjects[sobject].key_prefix, self._serial)

    # -- reading ---------------------------------------------------------------------------

    def get(self, sobject, record_id):
        """The stored record (not a copy) or None; ``record_id`` may be 15 or 18 characters."""
        key = ids.normalize(record_id)
        return self.records[sobject].get(key) if key else None

    def is_deleted(self, sobject, record_id):
        key = ids.normalize(record_id)
        return bool(key) and key in self.deleted[sobject]

    def find(self, sobject, field_name, value):
        """Ids of live records whose ``field_name`` equals ``value`` (index semantics)."""
        obj = self.schema.sobjects[sobject]
        f = obj.fields[field_name]
        if f.type == "id":
            record = self.get(sobject, value)
            return [record["Id"]] if record else []
        key = index_key(f, value)
        index = self.indexes.get((sobject, f.name))
        if index is not None:
            return sorted(index.get(key, ()))
        return [
            rid
            for rid, rec in self.records[sobject].items()
            if index_key(f, rec.get(f.name)) == key
        ]

    def rows(self, sobject):
        """Copies of the live records of ``sobject`` in creation order."""
        with self.lock:
            return [dict(record) for record in self.records[sobject].values()]

    def find_by_prefix(self, record_id):
        """``(object name, record)`` for any live record id, or ``(None, None)``."""
        key = ids.normalize(record_id)
        obj = self.schema.by_prefix.get(key[:3]) if key else None
        if obj is None:
            return None, None
        return obj.name, self.records[obj.name].get(key)

    # -- writing ---------------------------------------------------------------------------

    def insert(self, sobject, values, record_id=None):
        """Create a record from validated ``values`` (with a new id unless ``record_id`` is
        given); returns the stored record."""
        with self.lock:
            now = timestamp()
            record = {"Id": record_id or self.new_id(sobject)}
            record.update(values)
            record.update(
                {
                    "IsDeleted": False,
                    "CreatedDate": now,
                    "CreatedById": self.user_id,
                    "LastModifiedDate": now,
                    "LastModifiedById": self.user_id,
                    "SystemModstamp": now,
                }
            )
            self._put(sobject, record, None)
            return record

    def update(self, sobject, record_id, values):
        """Apply validated ``values`` to a live record; returns the stored record."""
        with self.lock:
            before = self.get(sobject, record_id)
            record = dict(before)
            record.update(values)
            now = timestamp()
            record["LastModifiedDate"] = now
            record["LastModifiedById"] = self.user_id
            record["SystemModstamp"] = now
            self._put(sobject, record, before)
            return record

    def delete(self, sobject, record_id):
        with self.lock:
            before = self.get(sobject, record_id)
            self._unindex(sobject, before)
            del self.records[sobject][before["Id"]]
            self.deleted[sobject][before["Id"]] = {**before, "IsDeleted": True}
            self._log(("delete", sobject, before))

    def _put(self, sobject, record, before):
        if before is not None:
            self._unindex(sobject, before)
        self.records[sobject][record["Id"]] = record
        self._index(sobject, record)
        self._log(("put", sobject, record["Id"], before))

    def _index(self, sobject, record):
        fields = self.schema.sobjects[sobject].fields
        for (name, field_name), index in self.indexes.items():
            if name == sobject and record.get(field_name) is not None:
                key = index_key(fields[field_name], record[field_name])
                index.setdefault(key, set()).add(record["Id"])

    def _unindex(self, sobject, record):
        fields = self.schema.sobjects[sobject].fields
        for (name, field_name), index in self.indexes.items():
            if name == sobject and record.get(field_name) is not None:
                key = index_key(fields[field_name], record[field_name])
                members = index.get(key)
                if members is not None:
                    members.discard(record["Id"])
                    if not members:
                        del index[key]

    # -- transactions ----------------------------------------------------------------------

    def _log(self, entry):
        if self._journal is not None:
            self._journal.append(entry)

    @contextlib.contextmanager
    def transaction(self):
        """Hold the store; undo this block's changes if it raises (see module docstring)."""
        with self.lock:
            outermost = self._journal is None
            if outermost:
                self._journal = []
            mark = len(self._journal)
            try:
                yield self
            except BaseException:
                self._undo_to(mark)
                raise
            finally:
                if outermost:
                    self._journal = None

    def savepoint(self):
        """A mark to roll back to inside the current transaction."""
        return len(self._journal)

    def rollback(self, mark=0):
        """Undo the current transaction's changes made since ``mark`` (default: all)."""
        self._undo_to(mark)

    def _undo_to(self, mark):
        while len(self._journal) > mark:
            entry = self._journal.pop()
            if entry[0] == "put":
                _, sobject, record_id, before = entry
                current = self.records[sobject].pop(record_id)
                self._unindex(sobject, current)
                if before is not None:
                    self.records[sobject][record_id] = before
                    self._index(sobject, before)
            else:
                _, sobject, before = entry
                del self.deleted[sobject][before["Id"]]
                self.records[sobject][before["Id"]] = before
                self._index(sobject, before)

    def snapshot(self, sobject):
        """Deep copies of the live records of ``sobject`` (for inspection)."""
        with self.lock:
            return copy.deepcopy(list(self.records[sobject].values()))
