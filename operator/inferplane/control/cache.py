# SPDX-License-Identifier: Apache-2.0
"""What the operator knows of the objects it owns, without asking the API server.

An informer-style cache: kopf indexes, fed by the watches, hold the children (Deployments,
Services, HPAs, PDBs) by owner — (namespace, model uid) — and conversion Jobs by name. kopf fills
every index from its initial LIST before it calls any event handler, so even the first reconcile
after a start sees every child that exists. Entries are slim copies (identity, the annotations
the operator set, and what rollout state it reads): 1000 models' children stay a few MB.

A reconcile also sees its own writes: the API server's answer to an apply is kept until the watch
delivers that version or a newer one (or deletes the object), so a reconcile that runs before the
watch event does not apply the object again. The cache can only be stale in one direction that
matters — claiming an object that is gone — and the periodic resync reconciles without trusting it
(``verify``). Pure: the handlers feed it; nothing here talks to the API.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from inferplane.api import v1alpha1

Object = Mapping[str, Any]
OwnerKey = tuple[str, str]
"""(namespace, uid of the owning InferenceModel)."""
NameKey = tuple[str, str]
"""(namespace, name)."""
Identity = tuple[str, str, str]
"""(kind, namespace, name)."""
Index = Mapping[Any, Collection[Object]]
"""A kopf index (or any mapping of the same shape): key → the values of every object under it."""

KEPT_STATUS = {"Deployment", "Job"}
"""Kinds whose status the reconcile reads (rollout state; conversion outcome)."""


def version(obj: Object) -> int:
    """The object's resourceVersion as a number (comparable since Kubernetes 1.35, KEP-5504);
    -1 if it has none."""
    try:
        return int(obj["metadata"]["resourceVersion"])
    except (KeyError, TypeError, ValueError):
        return -1


def slim(obj: Object, api_version: str, kind: str) -> dict[str, Any]:
    """The part of an object the reconcile reads: identity, owners, the operator's own
    annotations, and for Deployments and Jobs the replica count and status."""
    meta = obj["metadata"]
    annotations = meta.get("annotations") or {}
    kept: dict[str, Any] = {
        "name": meta["name"],
        "namespace": meta.get("namespace", ""),
        "annotations": {k: v for k, v in annotations.items() if k.startswith("inferplane.io/")},
    }
    for name in ("uid", "resourceVersion", "generation", "ownerReferences"):
        if name in meta:
            kept[name] = meta[name]
    out: dict[str, Any] = {"apiVersion": api_version, "kind": kind, "metadata": kept}
    if kind in KEPT_STATUS:
        replicas = (obj.get("spec") or {}).get("replicas")
        if replicas is not None:
            out["spec"] = {"replicas": replicas}
        out["status"] = obj.get("status") or {}
    return out


def owner_keys(obj: Object) -> list[OwnerKey]:
    """The InferenceModels that own an object, as index keys."""
    meta = obj["metadata"]
    return [
        (meta.get("namespace", ""), ref["uid"])
        for ref in meta.get("ownerReferences") or []
        if ref.get("kind") == v1alpha1.KIND and ref.get("apiVersion", "").startswith(v1alpha1.GROUP)
    ]


def by_owner(obj: Object, api_version: str, kind: str) -> dict[OwnerKey, dict[str, Any]]:
    """A child's index entries: its slim copy under each owning model."""
    entry = slim(obj, api_version, kind)
    return {key: entry for key in owner_keys(obj)}


def by_name(obj: Object, api_version: str, kind: str) -> dict[tuple[str, ...], dict[str, Any]]:
    """A conversion Job's index entries: under its name (Jobs are shared by models), and under
    each owning model as (namespace, uid, ``OWNER``), to find the Jobs a model no longer needs."""
    meta = obj["metadata"]
    entry = slim(obj, api_version, kind)
    keys: list[tuple[str, ...]] = [(meta.get("namespace", ""), meta["name"])]
    keys += [(*key, OWNER) for key in owner_keys(obj)]
    return dict.fromkeys(keys, entry)


OWNER = "owner"
"""Third part of a Job index key by owner (a name key has two)."""


def _identity(obj: Object) -> Identity:
    meta = obj["metadata"]
    return (obj["kind"], meta.get("namespace", ""), meta["name"])


@dataclass
class Cache:
    """Children by owner and Jobs by name: the watch-fed indexes plus the operator's own writes."""

    children: Mapping[str, Index] = field(default_factory=dict)
    """One index per child kind (kind → index by owner)."""
    jobs: Index = field(default_factory=dict)
    written: dict[Identity, Object] = field(default_factory=dict)
    """(kind, namespace, name) → the API server's answer to our last apply, until watched."""
    _written_by_owner: dict[OwnerKey, set[Identity]] = field(default_factory=dict, init=False)
    """The same answers by owning model: a reconcile looks up its own, not all of them (with
    thousands of models the watch lags behind the writes, and a scan per reconcile was
    quadratic)."""

    def owned(self, namespace: str, uid: str) -> list[Object]:
        """Every child of one model, the newer of the watched and the written version."""
        found: dict[Identity, Object] = {}
        watched = [o for index in self.children.values() for o in index.get((namespace, uid), ())]
        mine = [o for o in self._mine(namespace, uid) if o["kind"] in self.children]
        for obj in [*watched, *mine]:
            kept = found.get(_identity(obj))
            if kept is None or version(obj) > version(kept):
                found[_identity(obj)] = obj
        return list(found.values())

    def job(self, namespace: str, name: str) -> Object | None:
        mine = self.written.get(("Job", namespace, name))
        watched = _newest(self.jobs.get((namespace, name), ()))
        if mine is None or (watched is not None and version(watched) >= version(mine)):
            return watched
        return mine

    def jobs_of(self, namespace: str, uid: str) -> list[Object]:
        """The conversion Jobs one model owns, the newer of the watched and the written copy."""
        watched = {o["metadata"]["name"]: o for o in self.jobs.get((namespace, uid, OWNER), ())}
        for mine in self._mine(namespace, uid):
            if mine["kind"] == "Job":
                watched.setdefault(mine["metadata"]["name"], mine)
        found = [self.job(namespace, name) for name in watched]
        return [o for o in found if o is not None and (namespace, uid) in owner_keys(o)]

    def wrote(self, obj: Object) -> None:
        """Remember the answer to an apply (a slim copy)."""
        entry = slim(obj, obj["apiVersion"], obj["kind"])
        identity = _identity(entry)
        self._drop(identity)  # its owners may have changed (a Job another model joined)
        self.written[identity] = entry
        for key in owner_keys(entry):
            self._written_by_owner.setdefault(key, set()).add(identity)

    def forget(self, kind: str, namespace: str, name: str) -> None:
        """Drop our own copy (after we deleted the object)."""
        self._drop((kind, namespace, name))

    def watched(self, kind: str, obj: Object) -> None:
        """A watch event (also a deletion): our copy is no longer needed once the watch has
        caught up with it. A deletion's event carries a version newer than any the object had;
        an older incarnation's deletion does not drop the copy of the one we just created."""
        meta = obj["metadata"]
        identity = (kind, meta.get("namespace", ""), meta["name"])
        mine = self.written.get(identity)
        if mine is not None and (version(obj) < 0 or version(obj) >= version(mine)):
            self._drop(identity)

    def _mine(self, namespace: str, uid: str) -> list[Object]:
        return [self.written[i] for i in self._written_by_owner.get((namespace, uid), ())]

    def _drop(self, identity: Identity) -> None:
        mine = self.written.pop(identity, None)
        if mine is None:
            return
        for key in owner_keys(mine):
            kept = self._written_by_owner[key]
            kept.discard(identity)
            if not kept:
                del self._written_by_owner[key]


def _newest(objects: Iterable[Object]) -> Object | None:
    return max(objects, key=version, default=None)
