"""A small fake shop and warehouse HTTP API for the examples (Python standard library only).

``make run`` starts it (with ``--api-key dev-shop-key``) so the "Ship paid order" example
has something to call; by hand:

    python examples/shop.py [--port 8090] [--api-key KEY]

Endpoints (JSON in and out; errors are ``{"error": ...}``):

    GET  /orders                  every order
    GET  /orders/{id}             one order: customer, status, lines [{sku, qty, price}], total
    GET  /warehouse/skus          the SKUs the warehouse can ship
    POST /warehouse/skus          {"sku": "X"}: register a SKU (201; 200 if already known)
    GET  /warehouse/shipments     every shipment created so far
    POST /warehouse/shipments     {"orderId", "lines": [{sku, qty}]}: 201 with the shipment;
                                  422 {"error": "unknown sku X"} for a SKU not registered yet.
                                  The same ``Idempotency-Key`` answers the same shipment again
                                  instead of creating a second one.

The seeded data tells three stories: order 1001 is paid and ships, 1002 is not paid yet,
and 1003 is paid but holds a SKU (POSTER-XL) the warehouse does not know until someone
registers it. Tests import ``serve`` and run it in-process on port 0.

With ``--api-key KEY`` every request must carry ``X-Api-Key: KEY`` (401 otherwise): the
``shop`` app (examples/shop.app.yaml) declares that key, and a user's credential for it
is what reflow sends (docs/credentials.md). Without it the shop answers anyone.
"""

from __future__ import annotations

import argparse
import copy
import hmac
import json
import re
import signal
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any

DEFAULT_PORT = 8090
MAX_BODY_BYTES = 1024 * 1024

SEED_ORDERS: tuple[dict[str, Any], ...] = (
    {
        "id": "1001",
        "status": "paid",
        "customer": {"name": "Jane Doe", "email": "jane@example.com"},
        "lines": [
            {"sku": "MUG-01", "qty": 2, "price": 12.5},
            {"sku": "TEE-M", "qty": 1, "price": 20.0},
        ],
        "total": 45.0,
    },
    {
        "id": "1002",
        "status": "pending",
        "customer": {"name": "Omar Haddad", "email": "omar@example.com"},
        "lines": [{"sku": "TEE-L", "qty": 3, "price": 20.0}],
        "total": 60.0,
    },
    {
        "id": "1003",
        "status": "paid",
        "customer": {"name": "Mei Chen", "email": "mei@example.com"},
        "lines": [
            {"sku": "MUG-01", "qty": 1, "price": 12.5},
            {"sku": "POSTER-XL", "qty": 1, "price": 35.0},
        ],
        "total": 47.5,
    },
)
# POSTER-XL is missing on purpose: order 1003 fails to ship until it is registered.
SEED_SKUS = ("MUG-01", "TEE-M", "TEE-L")


class ShopError(Exception):
    """A request the shop refuses; becomes ``{"error": message}`` with ``status``."""

    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


Reply = tuple[HTTPStatus, Any]


class Shop:
    """The shop's state (orders, SKUs, shipments) and what each endpoint does with it."""

    def __init__(self) -> None:
        self.orders = {order["id"]: copy.deepcopy(order) for order in SEED_ORDERS}
        self.skus = set(SEED_SKUS)
        self.shipments: list[dict[str, Any]] = []
        # Idempotency-Key -> (request body, the shipment it created).
        self._by_key: dict[str, tuple[Any, dict[str, Any]]] = {}
        # Handler threads run concurrently; every read-modify-write holds this lock.
        self._lock = threading.Lock()

    def list_orders(self) -> Reply:
        """Every order."""
        return HTTPStatus.OK, {"data": list(self.orders.values())}

    def get_order(self, order_id: str) -> Reply:
        """One order, or 404."""
        order = self.orders.get(order_id)
        if order is None:
            raise ShopError(HTTPStatus.NOT_FOUND, f"order {order_id} not found")
        return HTTPStatus.OK, order

    def list_skus(self) -> Reply:
        """The SKUs the warehouse can ship."""
        with self._lock:
            return HTTPStatus.OK, {"data": sorted(self.skus)}

    def register_sku(self, body: Any) -> Reply:
        """Make a SKU shippable: 201 when new, 200 when it was known already."""
        sku = body.get("sku") if isinstance(body, dict) else None
        if not isinstance(sku, str) or not sku.strip():
            raise ShopError(HTTPStatus.UNPROCESSABLE_ENTITY, 'expected {"sku": "<SKU>"}')
        with self._lock:
            known = sku in self.skus
            self.skus.add(sku)
        return (HTTPStatus.OK if known else HTTPStatus.CREATED), {"sku": sku}

    def list_shipments(self) -> Reply:
        """Every shipment created so far, oldest first."""
        with self._lock:
            return HTTPStatus.OK, {"data": list(self.shipments)}

    def create_shipment(self, body: Any, idempotency_key: str | None) -> Reply:
        """Create a shipment, or answer the one this Idempotency-Key created before."""
        order_id, lines = _shipment_request(body)
        with self._lock:
            if idempotency_key is not None and idempotency_key in self._by_key:
                first_body, shipment = self._by_key[idempotency_key]
                if first_body != body:
                    raise ShopError(
                        HTTPStatus.CONFLICT,
                        "this Idempotency-Key was used with a different request body",
                    )
                return HTTPStatus.CREATED, shipment
            unknown = [line["sku"] for line in lines if line["sku"] not in self.skus]
            if unknown:
                # Refused before anything happened, so nothing is remembered for the key:
                # the same request succeeds once the SKU is registered.
                raise ShopError(HTTPStatus.UNPROCESSABLE_ENTITY, f"unknown sku {unknown[0]}")
            shipment = {
                "id": f"shp_{len(self.shipments) + 1:04d}",
                "orderId": order_id,
                "lines": lines,
                "status": "created",
                "idempotencyKey": idempotency_key,
                "createdAt": datetime.now(UTC).isoformat(timespec="seconds"),
            }
            self.shipments.append(shipment)
            if idempotency_key is not None:
                self._by_key[idempotency_key] = (body, shipment)
        return HTTPStatus.CREATED, shipment


def _shipment_request(body: Any) -> tuple[str, list[dict[str, Any]]]:
    usage = 'expected {"orderId": "<id>", "lines": [{"sku": "<SKU>", "qty": <n>}, ...]}'
    if not isinstance(body, dict):
        raise ShopError(HTTPStatus.UNPROCESSABLE_ENTITY, usage)
    order_id, lines = body.get("orderId"), body.get("lines")
    if not isinstance(order_id, str) or not isinstance(lines, list) or not lines:
        raise ShopError(HTTPStatus.UNPROCESSABLE_ENTITY, usage)
    for line in lines:
        valid = (
            isinstance(line, dict)
            and isinstance(line.get("sku"), str)
            and isinstance(line.get("qty"), int)
            and line["qty"] > 0
        )
        if not valid:
            raise ShopError(HTTPStatus.UNPROCESSABLE_ENTITY, usage)
    return order_id, [{"sku": line["sku"], "qty": line["qty"]} for line in lines]


Route = Callable[["ShopHandler", re.Match[str]], Reply]
_ROUTES: tuple[tuple[str, re.Pattern[str], Route], ...] = (
    ("GET", re.compile(r"/orders"), lambda h, m: h.shop.list_orders()),
    ("GET", re.compile(r"/orders/([^/]+)"), lambda h, m: h.shop.get_order(m.group(1))),
    ("GET", re.compile(r"/warehouse/skus"), lambda h, m: h.shop.list_skus()),
    ("POST", re.compile(r"/warehouse/skus"), lambda h, m: h.shop.register_sku(h.json_body())),
    ("GET", re.compile(r"/warehouse/shipments"), lambda h, m: h.shop.list_shipments()),
    (
        "POST",
        re.compile(r"/warehouse/shipments"),
        lambda h, m: h.shop.create_shipment(h.json_body(), h.headers.get("Idempotency-Key")),
    ),
)


class ShopServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer that carries the Shop its handlers serve."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], shop: Shop, *, log_requests: bool,
                 api_key: str | None = None) -> None:
        super().__init__(address, ShopHandler)
        self.shop = shop
        self.log_requests = log_requests
        self.api_key = api_key  # when set, the X-Api-Key every request must carry

    @property
    def url(self) -> str:
        """The base URL clients call, e.g. ``http://127.0.0.1:8090``."""
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"


class ShopHandler(BaseHTTPRequestHandler):
    """Routes each request to the Shop and writes its JSON answer."""

    server: ShopServer

    @property
    def shop(self) -> Shop:
        """The state this server serves."""
        return self.server.shop

    def do_GET(self) -> None:
        """Answer a GET."""
        self._dispatch("GET")

    def do_POST(self) -> None:
        """Answer a POST."""
        self._dispatch("POST")

    def json_body(self) -> Any:
        """The request's JSON body; 400 when it is missing, too large or not JSON."""
        length = self.headers.get("Content-Length", "")
        if not length.isdigit() or int(length) > MAX_BODY_BYTES:
            raise ShopError(HTTPStatus.BAD_REQUEST, "expected a JSON body with Content-Length")
        try:
            return json.loads(self.rfile.read(int(length)))
        except ValueError as exc:
            raise ShopError(HTTPStatus.BAD_REQUEST, f"invalid JSON: {exc}") from exc

    def log_message(self, format: str, *args: Any) -> None:
        """Log requests to stderr when the server was started to (the CLI does)."""
        if self.server.log_requests:
            super().log_message(format, *args)

    def _dispatch(self, method: str) -> None:
        path = self.path.split("?", 1)[0].rstrip("/") or "/"
        try:
            self._check_key()
            status, body = self._route(method, path)
        except ShopError as exc:
            status, body = exc.status, {"error": exc.message}
        self._send(status, body)

    def _check_key(self) -> None:
        expected = self.server.api_key
        if expected is None:
            return
        given = self.headers.get("X-Api-Key", "")
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise ShopError(HTTPStatus.UNAUTHORIZED, "missing or wrong X-Api-Key")

    def _route(self, method: str, path: str) -> Reply:
        allowed = False
        for route_method, pattern, route in _ROUTES:
            match = pattern.fullmatch(path)
            if match is None:
                continue
            if route_method == method:
                return route(self, match)
            allowed = True
        if allowed:
            raise ShopError(HTTPStatus.METHOD_NOT_ALLOWED, f"{method} is not allowed on {path}")
        raise ShopError(HTTPStatus.NOT_FOUND, f"no endpoint {path}")

    def _send(self, status: HTTPStatus, body: Any) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def serve(
    port: int = DEFAULT_PORT, *, host: str = "127.0.0.1", log_requests: bool = False,
    api_key: str | None = None,
) -> tuple[ShopServer, threading.Thread]:
    """Start a fresh shop on ``host:port`` (0 picks a free port) in a background thread;
    with ``api_key``, only requests carrying it in ``X-Api-Key`` are answered.

    Stop it with ``server.shutdown(); server.server_close(); thread.join()``.
    """
    server = ShopServer((host, port), Shop(), log_requests=log_requests, api_key=api_key)
    # A short poll interval makes shutdown() return quickly (tests stop a shop per test).
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              name="fake shop", daemon=True)
    thread.start()
    return server, thread


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM or SIGINT, then stop cleanly."""
    parser = argparse.ArgumentParser(description="A fake shop and warehouse for reflow's examples")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"port on 127.0.0.1 (default {DEFAULT_PORT})")
    parser.add_argument("--api-key", default=None,
                        help="answer only requests with this X-Api-Key (the shop app's key)")
    args = parser.parse_args(argv)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        server, thread = serve(args.port, log_requests=True, api_key=args.api_key)
    except OSError as exc:
        sys.stderr.write(f"shop: cannot listen on 127.0.0.1:{args.port}: {exc}\n")
        return 1
    sys.stdout.write(f"fake shop listening on {server.url}\n")
    sys.stdout.flush()
    # serve_forever runs in its own thread, so the signal handler only sets the event and
    # shutdown() (which waits for that loop) is never called from inside the loop.
    while not stop.wait(timeout=1.0):
        pass
    server.shutdown()
    server.server_close()
    thread.join(timeout=5.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
