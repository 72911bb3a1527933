"""Hugging Face Hub repositories of freshly initialised checkpoints, each determined by its id alone (stateless).

A repository is a transformers request (config, head class, seed, dtype, rng, rules; semantics id) and a shard
size, named one of two ways:

* from the catalogue of well-known public configs (service/hub_configs/<name>.json), in the repo id:
  `initserve/<name>-seed<seed>[-<dtype>][-<rng>]`, e.g. `initserve/tinyllama-1.1b-seed7-float32`;
* any config, carried in the endpoint: `HF_ENDPOINT=http://host/hub/<spec>` with repo id `initserve/custom`,
  `spec` being `encode_spec(body)`: base64url (unpadded) of the zlib-compressed JSON of a POST /init model body
  (with its seed), optionally with `"shard_size": "2GB"` beside `model`.

huggingface_hub joins HF_ENDPOINT, the repo id and `resolve/<revision>/<file>`, so either way every URL carries
the whole identity and any replica answers any request. The commit (`X-Repo-Commit`, `sha`) digests the identity
and every file's digest; a revision is `main` or that commit, anything else does not exist.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
import re
import threading
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError

from service import checkpoint
from service.engine.dtypes import DTYPES
from service.engine.errors import InitError
from service.engine.random.registry import RNGS, get_rng

NAMESPACE = "initserve"
CUSTOM = "custom"  # the repo name whose identity the endpoint's spec carries
MAIN = "main"
CATALOGUE = Path(__file__).with_name("hub_configs")
# A spec is small (a config.json compresses to a few hundred bytes); decompressed, it may not pass this.
MAX_SPEC_BYTES = 1 << 20
# A catalogue id without an rng means philox-v2: ids are new, so they take the rng recommended for new work
# (exact intervals in every dtype, the faster generator; docs/philox-v2.md), as docs/versioning.md allows.
CATALOGUE_RNG = "philox-v2"
_TENSOR_KEYED_RNGS = tuple(sorted((name for name in RNGS if get_rng(name).keyed_by == "tensor"), key=len))
_CATALOGUE_ID = re.compile(
    rf"(?P<name>[a-z0-9][a-z0-9.-]*?)-seed(?P<seed>0|[1-9][0-9]{{0,19}})"
    rf"(?:-(?P<dtype>{'|'.join(map(re.escape, DTYPES))}))?(?:-(?P<rng>{'|'.join(map(re.escape, _TENSOR_KEYED_RNGS))}))?"
)


PLANS_KEPT = 64
PLANS: OrderedDict[tuple[str | None, str, int], Repo] = OrderedDict()  # least recently used first
_LOCK = threading.Lock()


class NotFoundError(Exception):
    """No such repository, revision or file: `code` is the X-Error-Code huggingface_hub reads (RepoNotFound,
    RevisionNotFound, EntryNotFound)."""

    def __init__(self, code: str, field: str, message: str, commit: str | None = None) -> None:
        super().__init__(message)
        self.code, self.field, self.message, self.commit = code, field, message, commit


@functools.cache
def catalogue() -> dict[str, dict[str, Any]]:
    """Catalogue name -> its config.json."""
    return {path.stem: json.loads(path.read_text()) for path in sorted(CATALOGUE.glob("*.json"))}


def encode_spec(body: dict[str, Any]) -> str:
    """The endpoint path segment carrying a model body: base64url of zlib(JSON), unpadded."""
    raw = zlib.compress(orjson.dumps(body, option=orjson.OPT_SORT_KEYS), 9)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_spec(spec: str) -> dict[str, Any]:
    """The body `encode_spec` wrote; InitError (422 at `spec`) when it is not one."""
    try:
        raw = base64.urlsafe_b64decode(spec + "=" * (-len(spec) % 4))
        inflater = zlib.decompressobj()
        text = inflater.decompress(raw, MAX_SPEC_BYTES)
        if inflater.unconsumed_tail:
            raise InitError("spec", f"spec: decompresses to more than {MAX_SPEC_BYTES} bytes")
        body = orjson.loads(text)
    except (binascii.Error, ValueError, zlib.error) as error:
        if isinstance(error, InitError):
            raise
        raise InitError(
            "spec", f"spec: not base64url(zlib(JSON)) of a model request ({error}); make it with encode_spec"
        ) from None
    if not isinstance(body, dict):
        raise InitError("spec", "spec: the JSON must be an object (a POST /init model body)")
    return body


@dataclass(frozen=True)
class Repo:
    repo_id: str
    identity: dict[str, Any]  # everything that determines the files, JSON-native
    files: dict[str, checkpoint.File]
    commit: str  # 40 hex digits of the identity and every file's digest

    def revision(self, revision: str) -> None:
        """NotFoundError unless `revision` names this repository's one commit."""
        if revision not in (MAIN, self.commit):
            raise NotFoundError(
                "RevisionNotFound",
                "revision",
                f"revision {revision!r} of {self.repo_id!r} does not exist: its revisions are {MAIN!r} and its "
                f"commit {self.commit}",
            )

    def file(self, name: str) -> checkpoint.File:
        if name not in self.files:
            raise NotFoundError(
                "EntryNotFound",
                "filename",
                f"{self.repo_id!r} has no file {name!r}; its files: {', '.join(self.files)}",
                self.commit,
            )
        return self.files[name]


def _catalogue_body(repo_name: str) -> dict[str, Any]:
    match = _CATALOGUE_ID.fullmatch(repo_name)
    configs = catalogue()
    if match is None or match["name"] not in configs:
        raise NotFoundError(
            "RepoNotFound",
            "repo_id",
            f"no repository {NAMESPACE}/{repo_name}: the ids are {NAMESPACE}/<name>-seed<seed>[-<dtype>][-<rng>] "
            f"with a name of the catalogue ({', '.join(configs)}), or {NAMESPACE}/{CUSTOM} under an endpoint "
            "that carries a spec (docs/transformers.md)",
        )
    model: dict[str, Any] = {"framework": "transformers", "config": configs[match["name"]]}
    if match["dtype"]:
        model["dtype"] = match["dtype"]
    return {"seed": int(match["seed"]), "rng": match["rng"] or CATALOGUE_RNG, "model": model}


def known(spec: str | None, repo_id: str, max_tensors: int) -> Repo | None:
    """The repository if it was resolved lately (a client asks for one checkpoint many times), else None."""
    key = (spec, repo_id, max_tensors)
    with _LOCK:
        repo = PLANS.get(key)
        if repo is not None:
            PLANS.move_to_end(key)
        return repo


def resolve(spec: str | None, repo_id: str, max_tensors: int) -> Repo:
    """The repository `repo_id` names (under the endpoint's `spec`, if any), planned (tens of ms of Python for a 7B
    model) unless `known`; the last PLANS_KEPT are kept, as each is a pure function of the arguments.
    NotFoundError for an id that names none; InitError for a spec or config that is refused (422)."""
    repo = known(spec, repo_id, max_tensors)
    if repo is None:
        repo = _plan(spec, repo_id, max_tensors)
        with _LOCK:
            PLANS[(spec, repo_id, max_tensors)] = repo
            while len(PLANS) > PLANS_KEPT:
                PLANS.popitem(last=False)
    return repo


def _plan(spec: str | None, repo_id: str, max_tensors: int) -> Repo:
    from service.api.admission import transformers_model
    from service.api.schemas import ModelInit, TransformersRecipe

    namespace, _, name = repo_id.partition("/")
    if namespace != NAMESPACE or (spec is not None) != (name == CUSTOM):
        where = "under an endpoint with a spec" if spec is not None else "here"
        expected = f"{NAMESPACE}/{CUSTOM}" if spec is not None else f"{NAMESPACE}/<name>-seed<seed>"
        raise NotFoundError("RepoNotFound", "repo_id", f"no repository {repo_id!r} {where}: ids are {expected}")
    body = _catalogue_body(name) if spec is None else decode_spec(spec)
    shard_size = body.pop("shard_size", checkpoint.DEFAULT_SHARD_SIZE)
    if not isinstance(shard_size, str | int) or isinstance(shard_size, bool):
        raise InitError("spec.shard_size", f"spec.shard_size must be a size such as 2GB, got {shard_size!r}")
    try:
        request = ModelInit.model_validate(body)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(map(str, ("spec", *first["loc"])))
        raise InitError(where, f"{where}: {first['msg']}") from None
    if not isinstance(request.model, TransformersRecipe):
        raise InitError("spec.model.framework", "spec.model.framework: a repository holds a transformers model")
    if request.seed is None:
        raise InitError("spec.seed", "spec.seed is required: a repository's files never change")
    try:
        model = transformers_model(request.model, request.rng, max_tensors)
        max_shard_bytes = checkpoint.parse_size(str(shard_size))
        planned = checkpoint.plan_checkpoint(model, int(request.seed), request.rng, max_shard_bytes)
    except InitError as error:
        if spec is None:
            raise
        message = f"spec.{error.message}" if error.message.startswith(error.field) else error.message
        raise type(error)(f"spec.{error.field}", message) from None
    files = planned.files()
    identity = {
        "request": request.model_dump(mode="json"),
        "semantics": model.metadata()["semantics"],
        "shard_bytes": max_shard_bytes,
    }
    digests = {file_name: file.digest() for file_name, file in files.items()}
    text = orjson.dumps({"identity": identity, "files": digests}, option=orjson.OPT_SORT_KEYS)
    return Repo(repo_id, identity, files, hashlib.sha256(text).hexdigest()[:40])
