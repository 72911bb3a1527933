"""The Hugging Face Hub download protocol under /hub, for checkpoints named by their repo id (service/hub.py).

    HF_ENDPOINT=http://host/hub          repo ids initserve/<catalogue name>-seed<seed>[-<dtype>][-<rng>]
    HF_ENDPOINT=http://host/hub/<spec>   repo id initserve/custom, the spec carrying any config

What huggingface_hub asks of an endpoint (file_download.py, hf_api.py):

    GET       {endpoint}/api/models/<repo>[/revision/<rev>]      model_info: `sha` (the commit), `siblings`
    GET       {endpoint}/api/models/<repo>/tree/<rev>[/<path>]   list_repo_tree: files with size and oid
    HEAD/GET  {endpoint}/<repo>/resolve/<rev>/<file>             X-Repo-Commit, ETag, Content-Length; Range

Every file is served by URL with its exact Content-Length, a strong ETag (a digest, known before generation)
and single byte ranges (`Range: bytes=a-b`, `a-`, `-n`: 206 with Content-Range, generating only the elements
the range holds; unsatisfiable or several ranges: 416). A missing repo, revision or file is a 404 with the
X-Error-Code huggingface_hub turns into RepositoryNotFoundError, RevisionNotFoundError or EntryNotFoundError,
its body the one error shape and its message in X-Error-Message. A shard streams in bounded memory under the
memory budget like any large response; a file larger than INITSERVE_MAX_FILE_BYTES is refused (413).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from service import hub
from service.api import admission, delivery
from service.api.errors import error_response
from service.checkpoint import File
from service.engine.bundle import MAX_TENSORS
from service.engine.errors import InitError, TooLargeError

router = APIRouter()
PREFIX = "/hub"
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def _segments(http: Request) -> list[str]:
    """The path after /hub, split before decoding: a revision may be a quoted `refs%2Fpr%2F1`."""
    raw = http.scope.get("raw_path") or http.scope["path"].encode()
    path = raw.decode("latin-1").split("?", 1)[0]
    return [unquote(part) for part in path[len(PREFIX) :].split("/")[1:]]


def _hub_error(status: int, field: str, message: str, kind: str, headers: dict[str, str]) -> Response:
    # huggingface_hub quotes X-Error-Message in the exception it raises; headers are latin-1.
    quoted = message.encode("latin-1", "replace").decode("latin-1").replace("\n", " ")
    return error_response(status, ["path", field], message, kind, {**headers, "X-Error-Message": quoted})


def _refused(error: Exception) -> Response:
    if isinstance(error, hub.NotFoundError):
        headers = {"X-Error-Code": error.code, **({"X-Repo-Commit": error.commit} if error.commit else {})}
        return _hub_error(404, error.field, error.message, "not_found", headers)
    assert isinstance(error, InitError)
    status, kind = (413, "too_large") if isinstance(error, TooLargeError) else (422, "value_error")
    return _hub_error(status, error.field, error.message, kind, {})


@router.api_route(PREFIX + "/{rest:path}", methods=["GET", "HEAD"], include_in_schema=False)
async def hub_route(http: Request) -> Response:
    segments = _segments(http)
    # A spec is base64url of zlib output, which never reads "api"; a repo's namespace is never a spec.
    spec = None
    if segments and segments[0] != "api" and not (len(segments) > 2 and segments[2] == "resolve"):
        spec, segments = segments[0], segments[1:]
    try:
        if len(segments) >= 5 and segments[2] == "resolve":
            repo = await _repo(http, spec, "/".join(segments[:2]))
            repo.revision(segments[3])
            return await _file(http, repo, repo.file("/".join(segments[4:])), segments[3] == repo.commit)
        if len(segments) >= 4 and segments[:2] == ["api", "models"] and http.method == "GET":
            repo = await _repo(http, spec, "/".join(segments[2:4]))
            rest = segments[4:]
            if not rest or (len(rest) == 2 and rest[0] == "revision"):
                repo.revision(rest[1] if rest else hub.MAIN)
                return JSONResponse(_model_info(repo))
            if len(rest) >= 2 and rest[0] == "tree":
                repo.revision(rest[1])
                return _tree(repo, "/".join(rest[2:]))
    except (hub.NotFoundError, InitError) as error:
        return _refused(error)
    return error_response(404, ["request"], f"no Hub path {http.url.path!r} here (docs/transformers.md)", "not_found")


async def _repo(http: Request, spec: str | None, repo_id: str) -> hub.Repo:
    """A repository planned lately at once; else planned in a heavy thread, one at a time (admission.Lanes): 64
    clients each asking for another 7B repository (~50 ms of Python each, holding the GIL) made small requests
    wait seconds (bench/load.py --scenario hub_nonreaders)."""
    repo = hub.known(spec, repo_id, MAX_TENSORS)
    if repo is not None:
        return repo
    lanes: admission.Lanes = http.app.state.delivery.lanes
    async with lanes.checkpoints.hold():
        return await delivery.run_in_thread(hub.resolve, spec, repo_id, MAX_TENSORS, limiter=lanes.heavy_threads)


def _model_info(repo: hub.Repo) -> dict[str, Any]:
    config = repo.files["config.json"]
    model_type = repo.identity["request"]["model"]["config"].get("model_type")
    return {
        "id": repo.repo_id,
        "modelId": repo.repo_id,
        "sha": repo.commit,
        "private": False,
        "gated": False,
        "disabled": False,
        "library_name": "transformers",
        "tags": ["transformers", "safetensors", model_type],
        "config": {k: v for k, v in orjson.loads(config.head).items() if k in ("architectures", "model_type")},
        "siblings": [{"rfilename": name, "size": f.length, "blobId": f.digest()} for name, f in repo.files.items()],
    }


def _tree(repo: hub.Repo, path: str) -> Response:
    """The whole listing in one page (no Link header: there is no next one). The repository has no folders."""
    if path:
        repo.file(path)  # EntryNotFound unless it names a file, which is no tree
        raise hub.NotFoundError("EntryNotFound", "path", f"{path!r} is a file, not a folder", repo.commit)
    entries = [{"type": "file", "path": name, "size": f.length, "oid": f.digest()} for name, f in repo.files.items()]
    return JSONResponse(entries)


def _range(header: str | None, length: int) -> tuple[int, int] | Response | None:
    """[first, last) of a `Range: bytes=...` header; None for the whole file; a 416 response when it cannot be
    served (unsatisfiable, malformed, or several ranges: a multipart body is not generated)."""
    if header is None:
        return None

    def refused(message: str) -> Response:
        return error_response(
            416, ["header", "range"], message, "range_not_satisfiable", {"Content-Range": f"bytes */{length}"}
        )

    match = _RANGE.fullmatch(header.strip().replace(" ", ""))
    if "," in header:
        return refused(f"Range {header!r}: one range per request (multipart responses are not served)")
    if match is None or not (match[1] or match[2]):
        return refused(f"Range {header!r} is not bytes=first-last, bytes=first- or bytes=-suffix")
    first, last = match[1], match[2]
    if not first:  # the last n bytes
        if int(last) == 0:
            return refused(f"Range {header!r}: a suffix of 0 bytes is empty")
        return max(0, length - int(last)), length
    if last and int(last) < int(first):
        return refused(f"Range {header!r}: last byte before the first")
    if int(first) >= length:
        return refused(f"Range {header!r}: the file has {length} bytes")
    return int(first), (min(int(last) + 1, length) if last else length)


async def _file(http: Request, repo: hub.Repo, file: File, pinned: bool) -> Response:
    strong = file.machine_exact
    tag = f'"{file.digest()}"' if strong else f'W/"{file.digest()}"'
    headers = {
        "ETag": tag,
        "X-Repo-Commit": repo.commit,
        "Accept-Ranges": "bytes",
        # The bytes under a commit never change; under `main` they may, with the service's version (metadata).
        "Cache-Control": delivery.IMMUTABLE if pinned else "no-cache",
        "Content-Disposition": f'attachment; filename="{file.name}"',
    }
    media_type = "application/octet-stream" if file.tensors else "application/json"
    if delivery.if_none_match(http.headers.get("if-none-match"), tag):
        return Response(status_code=304, headers=headers)
    settings = http.app.state.settings
    if file.length > settings.max_file_bytes:
        limit = admission.setting("max_file_bytes")
        message = (
            f"{file.name} has {file.length} bytes; the limit is {settings.max_file_bytes} per file ({limit}): "
            "ask for a smaller shard_size in the spec"
        )
        return _hub_error(413, "filename", message, "too_large", {})
    if http.method == "HEAD":
        return _head(headers, media_type, file.length)
    asked = http.headers.get("range")
    if http.headers.get("if-range", tag).strip() != tag:  # the client's part is of another version: send it all
        asked = None
    span = _range(asked, file.length) if strong else None  # a weak ETag cannot vouch for a range's bytes
    if isinstance(span, Response):
        return span
    first, last = span or (0, file.length)
    status = 200 if span is None else 206
    if span is not None:
        headers["Content-Range"] = f"bytes {first}-{last - 1}/{file.length}"
    if not file.tensors:
        return Response(file.head[first:last], status_code=status, media_type=media_type, headers=headers)
    # Streamed whatever its size, as a stream of a POST /init is: the budget holds one chunk's working set of the
    # largest tensor the range touches, from now until the last byte is sent (or the client has left).
    how: delivery.Delivery = http.app.state.delivery
    held = await how.budget.hold(file.working_bytes(first, last, delivery.STREAM_CHUNK_ELEMENTS), streamed=True)
    threads = how.lanes.job(file.work(first, last))
    chunks = file.read(first, last, delivery.STREAM_CHUNK_ELEMENTS)
    parts = delivery.coalesced(chunks, 4 * delivery.STREAM_CHUNK_ELEMENTS)
    stream = delivery.TensorStream(parts, last - first, media_type, headers, held, threads)
    stream.status_code = status
    return stream


def _head(headers: dict[str, str], media_type: str, length: int) -> Response:
    """GET's headers with its Content-Length, and no body."""
    response = Response(media_type=media_type, headers=headers)
    response.raw_headers = [(k, v) for k, v in response.raw_headers if k != b"content-length"]
    response.raw_headers.append((b"content-length", str(length).encode("latin-1")))
    return response
