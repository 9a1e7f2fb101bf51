# SPDX-License-Identifier: Apache-2.0
"""The operator's cache of its children: watch events → index contents, and its own writes."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from inferplane.control import cache
from inferplane.control.cache import Object

MODEL = {"apiVersion": "inferplane.io/v1alpha1", "kind": "InferenceModel"}


class Watched(Mapping[Any, list[Object]]):
    """A kopf index's semantics: each object's latest entries replace its earlier ones, a
    deletion drops them; the index maps each key to the entries of every object under it."""

    def __init__(self, keyed: Callable[[Object, str, str], Mapping[Any, Object]], kind: str):
        self.keyed = keyed
        self.api_version = {"Deployment": "apps/v1", "Job": "batch/v1"}.get(kind, "v1")
        self.kind = kind
        self.by_object: dict[str, Mapping[Any, Object]] = {}

    def event(self, type: str, obj: Object) -> None:
        uid = obj["metadata"]["uid"]
        if type == "DELETED":
            self.by_object.pop(uid, None)
        else:
            self.by_object[uid] = self.keyed(obj, self.api_version, self.kind)

    def _entries(self) -> dict[Any, list[Object]]:
        out: dict[Any, list[Object]] = {}
        for entries in self.by_object.values():
            for key, value in entries.items():
                out.setdefault(key, []).append(value)
        return out

    def __getitem__(self, key: Any) -> list[Object]:
        return self._entries()[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._entries())

    def __len__(self) -> int:
        return len(self._entries())


def _obj(
    kind: str, name: str, rv: int, owners: tuple[str, ...] = ("uid-a",), **extra: Any
) -> dict[str, Any]:
    return {
        "apiVersion": {"Deployment": "apps/v1", "Job": "batch/v1"}.get(kind, "v1"),
        "kind": kind,
        "metadata": {
            "name": name,
            "namespace": "ml",
            "uid": f"uid-{name}",
            "resourceVersion": str(rv),
            "annotations": {"inferplane.io/applied-hash": f"h{rv}", "other.io/x": "big"},
            "ownerReferences": [{**MODEL, "name": o, "uid": o} for o in owners],
            "managedFields": [{"manager": "kube-controller-manager"}],
        },
        **extra,
    }


def _cache() -> tuple[cache.Cache, Watched, Watched, Watched]:
    deployments = Watched(cache.by_owner, "Deployment")
    services = Watched(cache.by_owner, "Service")
    jobs = Watched(cache.by_name, "Job")
    return (
        cache.Cache({"Deployment": deployments, "Service": services}, jobs),
        deployments,
        services,
        jobs,
    )


def _versions(objects: list[Object]) -> dict[str, str]:
    return {o["metadata"]["name"]: o["metadata"]["resourceVersion"] for o in objects}


def test_an_event_sequence_gives_each_model_its_children() -> None:
    store, deployments, services, _ = _cache()
    deployments.event("ADDED", _obj("Deployment", "a-cpu", 10, status={"readyReplicas": 0}))
    services.event("ADDED", _obj("Service", "a-cpu", 11, spec={"clusterIP": "None"}))
    services.event("ADDED", _obj("Service", "b", 12, owners=("uid-b",)))
    services.event("ADDED", _obj("Service", "foreign", 13, owners=()))
    deployments.event("MODIFIED", _obj("Deployment", "a-cpu", 15, status={"readyReplicas": 1}))
    services.event("DELETED", _obj("Service", "a-cpu", 16))
    owned = store.owned("ml", "uid-a")
    assert _versions(owned) == {"a-cpu": "15"}
    (deployment,) = owned
    assert deployment["kind"] == "Deployment" and deployment["status"] == {"readyReplicas": 1}
    assert deployment["metadata"]["annotations"] == {"inferplane.io/applied-hash": "h15"}
    assert "managedFields" not in deployment["metadata"]
    assert _versions(store.owned("ml", "uid-b")) == {"b": "12"}
    assert "spec" not in store.owned("ml", "uid-b")[0]  # a Service's spec is never read
    assert store.owned("other", "uid-a") == []


def test_own_writes_are_seen_until_the_watch_catches_up() -> None:
    store, deployments, _, _ = _cache()
    deployments.event("ADDED", _obj("Deployment", "a-cpu", 10))
    store.wrote(_obj("Deployment", "a-cpu", 20))
    store.wrote(_obj("Service", "a", 21))  # created: not watched yet
    assert _versions(store.owned("ml", "uid-a")) == {"a-cpu": "20", "a": "21"}
    older = _obj("Deployment", "a-cpu", 15)
    deployments.event("MODIFIED", older)  # an event from before our write arrives late
    store.watched("Deployment", older)
    assert _versions(store.owned("ml", "uid-a"))["a-cpu"] == "20"
    caught_up = _obj("Deployment", "a-cpu", 20)
    deployments.event("MODIFIED", caught_up)
    store.watched("Deployment", caught_up)
    assert ("Deployment", "ml", "a-cpu") not in store.written
    assert _versions(store.owned("ml", "uid-a")) == {"a-cpu": "20", "a": "21"}


def test_a_child_deleted_after_our_write_is_gone_from_the_cache() -> None:
    store, _, services, _ = _cache()
    service = _obj("Service", "a", 21)
    services.event("ADDED", service)
    store.wrote(service)
    services.event("DELETED", _obj("Service", "a", 30))
    store.watched("Service", _obj("Service", "a", 30))
    assert store.owned("ml", "uid-a") == []  # the next reconcile applies it again


def test_an_older_incarnations_deletion_keeps_the_new_object() -> None:
    store = _cache()[0]
    store.forget("Service", "ml", "a")  # forgetting what was never written is fine
    store.wrote(_obj("Service", "a", 40))  # recreated by us
    store.watched("Service", _obj("Service", "a", 35))  # the old one's deletion, late
    assert _versions(store.owned("ml", "uid-a")) == {"a": "40"}
    store.forget("Service", "ml", "a")  # we deleted it ourselves
    assert store.owned("ml", "uid-a") == []


def test_jobs_are_found_by_name_whoever_owns_them() -> None:
    store, _, _, jobs = _cache()
    assert store.job("ml", "convert-x") is None
    jobs.event("ADDED", _obj("Job", "convert-x", 5, owners=("uid-a", "uid-b"), status={}))
    store.wrote(_obj("Job", "convert-x", 3))  # an answer older than what the watch has
    found = store.job("ml", "convert-x")
    assert found is not None and found["metadata"]["resourceVersion"] == "5"
    store.wrote(_obj("Job", "convert-x", 9, status={"succeeded": 1}))
    found = store.job("ml", "convert-x")
    assert found is not None and found["status"] == {"succeeded": 1}
    assert store.owned("ml", "uid-a") == []  # Jobs are not children by owner


def test_a_written_jobs_owners_follow_its_latest_answer() -> None:
    store = _cache()[0]
    store.wrote(_obj("Job", "convert-x", 3))  # created by model a
    store.wrote(_obj("Job", "convert-x", 4, owners=("uid-a", "uid-b")))  # b joined
    assert [_versions(store.jobs_of("ml", u)) for u in ("uid-a", "uid-b")] == [
        {"convert-x": "4"}
    ] * 2
    store.wrote(_obj("Job", "convert-x", 5, owners=("uid-b",)))  # a disowned it
    assert store.jobs_of("ml", "uid-a") == []
    assert _versions(store.jobs_of("ml", "uid-b")) == {"convert-x": "5"}
    store.watched("Job", _obj("Job", "convert-x", 5, owners=("uid-b",)))
    assert store.written == {} and store.jobs_of("ml", "uid-b") == []  # the index holds it now


def test_many_models_writes_stay_apart() -> None:
    store = _cache()[0]
    for i in range(50):
        store.wrote(_obj("Deployment", f"m{i}-cpu", 100 + i, owners=(f"uid-{i}",)))
        store.wrote(_obj("Service", f"m{i}", 200 + i, owners=(f"uid-{i}",)))
    assert _versions(store.owned("ml", "uid-7")) == {"m7-cpu": "107", "m7": "207"}
    store.forget("Service", "ml", "m7")
    assert _versions(store.owned("ml", "uid-7")) == {"m7-cpu": "107"}
    assert _versions(store.owned("ml", "uid-8")) == {"m8-cpu": "108", "m8": "208"}


def test_versions_that_are_not_numbers_count_as_oldest() -> None:
    assert cache.version({"metadata": {"resourceVersion": "abc"}}) == -1
    assert cache.version({"metadata": {}}) == -1
    assert cache.version(_obj("Service", "a", 7)) == 7
