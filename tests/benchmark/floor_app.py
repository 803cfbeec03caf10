"""The HTTP floor for `make bench`: bare Starlette answering a constant, no protocol layer, no model."""

from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

ANSWER = b'{"model_name":"floor","outputs":[{"name":"probability","shape":[1],"datatype":"FP32","data":[0.5]}]}'


async def infer(request) -> Response:
    await request.body()
    return Response(ANSWER, media_type="application/json")


async def ready(request) -> Response:
    return Response(b'{"ready":true}', media_type="application/json")


app = Starlette(routes=[
    Route("/v2/models/floor/infer", infer, methods=["POST"]),
    Route("/v2/health/ready", ready),
])
