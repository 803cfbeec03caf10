"""The private parts of KServe's server that flowline's server builds on, listed in one place.

KServe 0.15 has no public way to bind a host other than 0.0.0.0, to put routes before its own,
to leave out its per-request middlewares or to add an exception handler, so server.py subclasses
its RESTServer and ModelServer and overrides or calls the private names below. Nothing else in
flowline touches KServe's private surface. tests/serving/test_kserve_private.py fails when the
pinned KServe lacks one of these names, or when server.py uses one not listed here: a KServe
upgrade then breaks a test, not a running server. The few parts of uvicorn's server and HTTP protocol it reads
are listed here too, and checked by the same test.
"""

from __future__ import annotations

from kserve.model_server import ModelServer
from kserve.protocol.rest.server import RESTServer

# Methods server.py overrides (and calls through super()) or calls, by the class that defines them.
PRIVATE_METHODS: dict[type, tuple[str, ...]] = {
    RESTServer: ("_register_endpoints", "_add_middlewares", "_add_exception_handlers"),
    ModelServer: ("_register_and_check_atleast_one_model_is_ready", "_serve"),
}
# Attributes server.py sets for KServe's own code to read (ModelServer.stop() reads `_rest_server`), or reads:
# RESTServer's uvicorn server, started on the workers' shared socket.
PRIVATE_ATTRIBUTES: dict[type, tuple[str, ...]] = {
    ModelServer: ("_rest_server",),
    RESTServer: ("_server",),
}


# What server.accept_one_at_a_time reads of uvicorn's Server to make the protocol its `startup` makes (uvicorn
# has no public way to take connections one at a time): its attributes, and the protocol's keyword arguments.
UVICORN_SERVER_ATTRIBUTES = ("config", "started", "should_exit", "server_state", "lifespan")
UVICORN_PROTOCOL_ARGUMENTS = ("config=config", "server_state=self.server_state", "app_state=self.lifespan.state",
                              "_loop=_loop")
# What one_write.OneWriteHttpProtocol takes from uvicorn's httptools protocol: the method it overrides, passing
# its own transport on, the loop it schedules a write on, the callback of a complete answer it writes at, and
# those it starts and stops its wait for a request's headers at, with the queue of pipelined requests.
UVICORN_HTTPTOOLS_PROTOCOL = ("def connection_made(", "self.transport = transport", "self.loop = ",
                              "on_response=self.on_response_complete", "def on_response_complete(self)",
                              "def on_headers_complete(self)", "def connection_lost(self", "self.pipeline: ")


def private_names() -> set[str]:
    """Every private KServe name flowline uses."""
    return {name for listing in (PRIVATE_METHODS, PRIVATE_ATTRIBUTES) for names in listing.values() for name in names}
