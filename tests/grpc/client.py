"""An independent gRPC client for tests/grpc.rs: Python's grpcio (PyPI), on the plain listener
(HTTP/2 prior knowledge) and on the TLS listener. It has no .proto: it learns the SessionService
and its messages through the gateway's reflection service, builds its messages from what
reflection says, and asks the health service; Envoy's ext_authz Check (whose protos reflection
does not serve) it encodes by hand from Envoy's field numbers. Usage: client.py PLAIN_ADDR TLS_ADDR CA_CERT. Exits 0 and
prints "grpcio: all checks passed on plain and tls" when every check held."""
import sys

import grpc
from google.protobuf import descriptor_pool, message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

SERVICE = "portcullis.v1.SessionService"


def fail(why):
    print(f"FAILED: {why}")
    sys.exit(1)


# ---- Envoy's CheckRequest and CheckResponse, by field number (envoy.service.auth.v3) ----

def varint(n):
    out = b""
    while True:
        low, n = n & 0x7F, n >> 7
        out += bytes([low | (0x80 if n else 0)])
        if not n:
            return out


def field(tag, payload):
    return varint(tag << 3 | 2) + varint(len(payload)) + payload


def text(tag, value):
    return field(tag, value.encode())


def check_request(method, path, headers):
    """CheckRequest{attributes(1): AttributeContext{request(4): Request{http(2): HttpRequest{
    method(2), headers(3) map, path(4), host(5), scheme(6)}}}}"""
    entries = b"".join(field(3, text(1, k) + text(2, v)) for k, v in headers.items())
    http = text(2, method) + entries + text(4, path) + text(5, "app.example") + text(6, "http")
    return field(1, field(4, field(2, http)))


def fields(buf):
    """tag -> list of values (ints for varints, bytes for length-delimited)."""
    out, at = {}, 0
    while at < len(buf):
        key, at = read_varint(buf, at)
        tag, kind = key >> 3, key & 7
        if kind == 0:
            value, at = read_varint(buf, at)
        elif kind == 2:
            size, at = read_varint(buf, at)
            value, at = buf[at:at + size], at + size
        else:
            fail(f"unexpected wire type {kind}")
        out.setdefault(tag, []).append(value)
    return out


def read_varint(buf, at):
    n, shift = 0, 0
    while True:
        b = buf[at]
        at += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n, at


def headers_of(options):
    """HeaderValueOption{header(1): HeaderValue{key(1), value(2)}} list -> dict"""
    out = {}
    for option in options:
        h = fields(fields(option)[1][0])
        out[h[1][0].decode()] = h.get(2, [b""])[0].decode()
    return out


def ext_authz(channel, where, token):
    check = channel.unary_unary("/envoy.service.auth.v3.Authorization/Check",
                                request_serializer=lambda b: b, response_deserializer=lambda b: b)
    answer = fields(check(check_request("GET", "/x", {"authorization": f"Bearer {token}"})))
    status = fields(answer[1][0]).get(1, [0])[0] if 1 in answer else 0
    if status != 0 or 3 not in answer:
        fail(f"{where}: Check of a live session answered {answer}")
    ok = fields(answer[3][0])
    added = headers_of(ok.get(2, []))
    removed = [r.decode() for r in ok.get(5, [])]
    if added.get("x-auth-user") != "alice" or "authorization" not in removed:
        fail(f"{where}: Check OK set {added}, removed {removed}")
    answer = fields(check(check_request("GET", "/x", {})))
    status = fields(answer[1][0]).get(1, [0])[0]
    if status != grpc.StatusCode.UNAUTHENTICATED.value[0] or 2 not in answer:
        fail(f"{where}: Check without a credential answered {answer}")
    denied = fields(answer[2][0])
    http_status = fields(denied[1][0])[1][0]
    if http_status != 401 or b"unauthorized" not in denied[3][0]:
        fail(f"{where}: Check denial was {http_status} {denied.get(3)}")


def check(channel, where):
    db = ProtoReflectionDescriptorDatabase(channel)
    services = set(db.get_services())
    for wanted in (SERVICE, "grpc.health.v1.Health"):
        if wanted not in services:
            fail(f"{where}: reflection lists {sorted(services)}, not {wanted}")
    pool = descriptor_pool.DescriptorPool(db)
    service = pool.FindServiceByName(SERVICE)
    methods = {m.name: m for m in service.methods}
    if set(methods) != {"CreateSession", "ReissueSession", "DestroySession"}:
        fail(f"{where}: methods {sorted(methods)}")

    def stub(name):
        m = methods[name]
        request = message_factory.GetMessageClass(m.input_type)
        response = message_factory.GetMessageClass(m.output_type)
        call = channel.unary_unary(f"/{SERVICE}/{name}", request_serializer=request.SerializeToString,
                                   response_deserializer=response.FromString)
        return request, call

    create_req, create = stub("CreateSession")
    reissue_req, reissue = stub("ReissueSession")
    destroy_req, destroy = stub("DestroySession")

    created = create(create_req(username="alice", password="alice-password", device_uuid=f"grpcio-{where}"))
    if not created.auth_token.startswith("pc1_") or created.username != "alice" or created.user_id != 1:
        fail(f"{where}: CreateSession answered {created}")
    ext_authz(channel, where, created.auth_token)
    reissued = reissue(reissue_req(reissue_token=created.reissue_token))
    if reissued.auth_token == created.auth_token or reissued.username != "alice":
        fail(f"{where}: ReissueSession answered {reissued}")

    def refused(call, request, code, metadata=None):
        try:
            call(request, metadata=metadata)
        except grpc.RpcError as e:
            if e.code() != code:
                fail(f"{where}: {request} gave {e.code()} ({e.details()}), not {code}")
            return e
        fail(f"{where}: {request} was not refused")

    e = refused(create, create_req(username="", password="x"), grpc.StatusCode.INVALID_ARGUMENT)
    if "username" not in e.details():
        fail(f"{where}: INVALID_ARGUMENT does not name the field: {e.details()}")
    e = refused(create, create_req(username="alice", password="wrong"), grpc.StatusCode.UNAUTHENTICATED)
    if dict(e.trailing_metadata()).get("portcullis-error") != "invalid_credentials":
        fail(f"{where}: no portcullis-error in {e.trailing_metadata()}")
    refused(destroy, destroy_req(), grpc.StatusCode.UNAUTHENTICATED)
    bearer = [("authorization", f"Bearer {reissued.auth_token}")]
    destroy(destroy_req(), metadata=bearer)
    refused(destroy, destroy_req(), grpc.StatusCode.UNAUTHENTICATED, metadata=bearer)

    health = health_pb2_grpc.HealthStub(channel)
    for name in ("", SERVICE):
        answer = health.Check(health_pb2.HealthCheckRequest(service=name))
        if answer.status != health_pb2.HealthCheckResponse.SERVING:
            fail(f"{where}: health of {name!r} is {answer.status}")
    # Watch sends the status, then stays open for changes (until this client's deadline).
    watching = health.Watch(health_pb2.HealthCheckRequest(service=SERVICE), timeout=1.0)
    if next(watching).status != health_pb2.HealthCheckResponse.SERVING:
        fail(f"{where}: Watch did not start with SERVING")
    try:
        next(watching)
        fail(f"{where}: Watch sent a second message with nothing changed")
    except StopIteration:
        fail(f"{where}: Watch ended after its first message")
    except grpc.RpcError as e:
        if e.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
            fail(f"{where}: Watch ended with {e.code()}")


def main():
    plain, tls, ca = sys.argv[1], sys.argv[2], sys.argv[3]
    with grpc.insecure_channel(plain) as channel:
        check(channel, "plain")
    with open(ca, "rb") as f:
        credentials = grpc.ssl_channel_credentials(root_certificates=f.read())
    options = [("grpc.ssl_target_name_override", "localhost")]
    with grpc.secure_channel(tls, credentials, options=options) as channel:
        check(channel, "tls")
    print("grpcio: all checks passed on plain and tls")


if __name__ == "__main__":
    main()
