"""The `initserve` command: serve the API, write a tensor or a transformers checkpoint without a server, export the
OpenAPI spec."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from service import startup
from service.engine.errors import InitError
from service.formats import DEFAULT, FORMATS, by_extension, holding

DEFAULT_OPENAPI = Path("openapi/openapi.json")


def _param(text: str) -> tuple[str, Any]:
    name, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    try:
        return name, json.loads(value)
    except json.JSONDecodeError:
        return name, value  # a bare word such as fan_out or relu


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="initserve", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the HTTP service (uvicorn)")
    serve.add_argument("--host", help="default: INITSERVE_HOST or 127.0.0.1")
    serve.add_argument("--port", type=int, help="default: INITSERVE_PORT or 8000")
    serve.add_argument("--workers", type=int, help="default: INITSERVE_WORKERS or 1")
    serve.add_argument("--app", default="service.app:app", help="the ASGI app to serve, as module:attribute")

    generate = commands.add_parser("generate", help="write one tensor to a file")
    generate.add_argument("--shape", type=int, nargs="*", required=True)
    generate.add_argument("--scheme", required=True)
    generate.add_argument("--seed", type=int, required=True)
    generate.add_argument(
        "-p",
        "--param",
        type=_param,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a scheme parameter; VALUE is read as JSON if it parses",
    )
    generate.add_argument("--dtype", default="float32")
    generate.add_argument("--layout", choices=("torch", "keras"))
    generate.add_argument("--fan-in", type=int)
    generate.add_argument("--fan-out", type=int)
    generate.add_argument("--name", default="weight")
    # Not listed from the registry here: importing it imports numba, which `serve` must configure first.
    generate.add_argument("--rng", help="the random algorithm, e.g. torch-2.13 (default: philox-v1)")
    generate.add_argument(
        "--format", choices=tuple(holding(True)), help="default: from the output file's extension, else safetensors"
    )
    generate.add_argument("-o", "--output", type=Path, required=True)

    checkpoint = commands.add_parser(
        "checkpoint",
        help="write a transformers checkpoint directory (config.json and safetensors shards) for a config.json",
    )
    checkpoint.add_argument("--config", type=Path, required=True, help="the model's config.json")
    checkpoint.add_argument("--seed", type=int, required=True)
    checkpoint.add_argument("--architecture", help="the head class (default: the config's architectures[0])")
    checkpoint.add_argument("--dtype", help="default: the config's dtype (or torch_dtype), else float32")
    checkpoint.add_argument("--rng", default="philox-v2", help="the random algorithm (default: philox-v2)")
    checkpoint.add_argument("--rules", type=Path, help="a JSON file: a list of rules, as model.rules")
    checkpoint.add_argument("--shard-size", default=None, help="largest shard, e.g. 5GB (the default) or 500MB")
    where = checkpoint.add_mutually_exclusive_group(required=True)
    where.add_argument("-o", "--output", type=Path, help="the directory")
    where.add_argument(
        "--endpoint",
        metavar="URL",
        help="print the HF_ENDPOINT under which an initserve at URL serves this checkpoint as repo initserve/custom",
    )

    kernels = commands.add_parser(
        "kernels", help="compile the engine's numba kernels into a directory, for INITSERVE_KERNEL_CACHE (image build)"
    )
    kernels.add_argument("directory", type=Path)
    kernels.add_argument(
        "--target",
        action="append",
        choices=[target.name for target in startup.targets()],
        help="an LLVM CPU name (repeatable); default: all of this architecture's",
    )

    spec = commands.add_parser("openapi", help="write the OpenAPI spec")
    spec.add_argument("-o", "--output", type=Path, default=DEFAULT_OPENAPI)
    return parser


def _serve(args: argparse.Namespace) -> None:
    import logging.config
    import os
    import tempfile

    from service import server
    from service.logging_config import log_config
    from service.settings import get_settings

    settings = get_settings()
    config = log_config(settings.log_level, settings.log_format)
    logging.config.dictConfig(config)  # uvicorn applies the same again; prepare_kernels logs before it runs
    startup.prepare_kernels(settings.kernel_cache)  # before anything imports numba
    workers = args.workers or settings.workers
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # prometheus-client aggregates several workers only through files in a shared, initially empty directory;
        # it must be set before the workers import it.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="initserve-metrics-")
    # uvicorn drains in-flight responses on SIGTERM, then re-raises the signal, so a single-worker server would die
    # "by signal" (status 143 under a supervisor, not in a container where it is PID 1). Draining is the normal way
    # to stop: the re-raised SIGTERM exits 0 instead.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    server.run(
        settings,
        host=args.host or settings.host,
        port=args.port or settings.port,
        workers=workers,
        log_config=config,
        app=args.app,
    )


def _generate(args: argparse.Namespace) -> None:
    """The body POST /init would answer, built from the same request model and written by the same pipeline."""
    from service.api.delivery import buffered_body, etag, single
    from service.api.schemas import InitRequest
    from service.engine.plan import make_plan
    from service.engine.region import Region

    fmt = FORMATS[args.format] if args.format else by_extension(args.output.suffix, single=True) or FORMATS[DEFAULT]
    body = {
        "shape": args.shape,
        "scheme": args.scheme,
        "seed": args.seed,
        "dtype": args.dtype,
        "name": args.name,
        "layout": args.layout,
        "fan_in": args.fan_in,
        "fan_out": args.fan_out,
        **({"rng": args.rng} if args.rng else {}),
        "format": fmt.name,
        **dict(args.param),
    }
    request = TypeAdapter(InitRequest).validate_python(body)
    bundle = single(Region(make_plan(request.to_engine(args.seed))))
    fmt.refuse_unholdable(bundle)
    args.output.write_bytes(buffered_body(bundle, fmt))
    tensor = bundle.tensors[0]
    print(f"wrote {args.output} ({fmt.name}, {list(tensor.shape)} {tensor.dtype.name}, {etag(bundle, fmt)})")


# No HTTP element limits here: a checkpoint of any size streams to disk tensor by tensor. Bounded only so that a
# config with absurdly many layers is refused rather than expanded.
CHECKPOINT_MAX_TENSORS = 1 << 20


def _checkpoint(args: argparse.Namespace) -> None:
    """The transformers model a POST /init model request would expand, written as a Hub checkpoint directory."""
    from service import checkpoint
    from service.api import admission
    from service.api.schemas import ModelInit, TransformersRecipe

    def read_json(path: Path, what: str) -> Any:
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise InitError(what, f"cannot read {path} as JSON: {error}") from None

    model: dict[str, Any] = {"framework": "transformers", "config": read_json(args.config, "config")}
    if args.architecture:
        model["architecture"] = args.architecture
    if args.dtype:
        model["dtype"] = args.dtype
    if args.rules:
        model["rules"] = read_json(args.rules, "rules")
    raw = {"seed": args.seed, "rng": args.rng, "model": model}
    body = ModelInit.model_validate(raw)
    assert isinstance(body.model, TransformersRecipe)
    expanded = admission.transformers_model(body.model, body.rng, CHECKPOINT_MAX_TENSORS)
    max_bytes = checkpoint.parse_size(args.shard_size or checkpoint.DEFAULT_SHARD_SIZE)
    if args.endpoint:
        from service.hub import encode_spec

        spec = encode_spec({**raw, **({"shard_size": args.shard_size} if args.shard_size else {})})
        print(f"{args.endpoint.rstrip('/')}/hub/{spec}")
        return
    planned = checkpoint.plan_checkpoint(expanded, args.seed, body.rng, max_bytes)
    written = checkpoint.write_directory(planned, args.output, admission.fill_elements())
    total = sum(written.values())
    print(
        f"wrote {args.output} ({expanded.architecture}, {len(expanded.specs)} tensors, {expanded.dtype}, "
        f"{len(written)} files, {checkpoint.human(total)})"
    )


def openapi_text() -> str:
    from service.app import create_app

    return json.dumps(create_app().openapi(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "serve":
            _serve(args)
        elif args.command == "generate":
            _generate(args)
        elif args.command == "checkpoint":
            _checkpoint(args)
        elif args.command == "kernels":
            startup.build(args.directory, args.target)
        else:
            args.output.parent.mkdir(parents=True, exist_ok=True)
            args.output.write_text(openapi_text())
            print(f"wrote {args.output}")
    except ValidationError as error:
        for item in error.errors():
            print(f"error: {'.'.join(map(str, item['loc']))}: {item['msg']}", file=sys.stderr)
        return 2
    except InitError as error:
        print(f"error: {error.field}: {error.message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
