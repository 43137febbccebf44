"""``faceforge serve``: the authenticated HTTP face service (extra ``faceforge[serve]``)."""

from __future__ import annotations

from faceforge.cli._common import bounded
from faceforge.cli.infer import model_options


def add_commands(sub) -> None:
    p = sub.add_parser(
        "serve", help="HTTP face service: embed, verify, identify, gallery enrolment",
        description="Serve /v1/embed, /v1/verify, /v1/identify, /v1/gallery/enroll and "
        "DELETE /v1/gallery/{id} (OpenAPI docs at /docs). Requests need the API key read from the "
        "--api-key-env variable (X-API-Key or Authorization: Bearer).")
    p.add_argument("--gallery", required=True,
                   help="gallery folder or postgresql:// URL (see 'faceforge gallery create'); several "
                   "replicas may serve one PostgreSQL gallery")
    model_options(p, threshold=True, gallery=True)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=bounded(int, 1, 65535), default=8080, help="port (default 8080)")
    p.add_argument("--api-key-env", default="FACEFORGE_API_KEY",
                   help="environment variable holding the API key (default FACEFORGE_API_KEY)")
    p.add_argument("--insecure-no-auth", action="store_true",
                   help="serve without an API key (only for a trusted loopback setup)")
    p.add_argument("--max-body-mb", type=bounded(float, 0, open_low=True), default=10.0,
                   help="request body limit in MB (default 10)")
    p.add_argument("--max-pixels", type=bounded(int, 1), default=40_000_000,
                   help="largest image accepted, in pixels (default 40000000)")
    p.add_argument("--max-decodes", type=int, default=2,
                   help="uploads decoded and detected at once; peak memory is about this x max-pixels x 3 "
                   "bytes (default 2)")
    p.add_argument("--max-connections-per-client", type=int, default=32,
                   help="open connections one client address may hold (default 32)")
    p.add_argument("--header-timeout", type=float, default=10.0,
                   help="seconds a connection has to send its request head (default 10)")
    p.set_defaults(func=run_serve)


def check_host(host: str, port: int) -> None:
    """An address that cannot be resolved is a one-line error before the model is loaded."""
    import socket

    from faceforge.errors import UserError

    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        raise UserError(f"--host: cannot resolve '{host}' ({getattr(e, 'strerror', None) or e})") from None


def run_serve(args) -> int:
    from faceforge.deploy.service import ServiceConfig, api_key_from_env, check_gallery_path, serve
    from faceforge.errors import UserError

    key = api_key_from_env(args.api_key_env)
    if key is None and not args.insecure_no_auth:
        raise UserError(f"--api-key-env: ${args.api_key_env} is not set; set an API key there "
                        "(or pass --insecure-no-auth explicitly)")
    if key is not None and len(key) < 16:
        raise UserError(f"--api-key-env: the key in ${args.api_key_env} is too short (use 16+ characters)")
    if not 0 < args.max_body_mb < 1e6 or args.max_pixels <= 0:
        raise UserError("--max-body-mb and --max-pixels must be positive")
    if not 1 <= args.port <= 65535:
        raise UserError(f"--port {args.port}: expected a port number in 1-65535")
    for flag in ("max_decodes", "max_connections_per_client"):
        if getattr(args, flag) < 1:
            raise UserError(f"--{flag.replace('_', '-')}: expected at least 1")
    if not 0 < args.header_timeout < 1e6:
        raise UserError("--header-timeout: expected a positive number of seconds")
    check_host(args.host, args.port)
    from faceforge.cli.infer import analyzer_from_args

    # the analyzer carries --card and --multi (the service picks faces with the analyzer's rule)
    config = ServiceConfig(
        gallery=check_gallery_path(args.gallery), model=analyzer_from_args(args, args.gallery), api_key=key,
        insecure_no_auth=args.insecure_no_auth and key is None,
        max_body_bytes=int(args.max_body_mb * 1024 * 1024), max_pixels=args.max_pixels,
        detector=args.detector, device=args.device, threshold=args.threshold,
        max_decodes=args.max_decodes, max_connections_per_client=args.max_connections_per_client,
        header_timeout=args.header_timeout)
    serve(config, host=args.host, port=args.port)
    return 0
