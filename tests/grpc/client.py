"""An independent gRPC client for tests/grpc.rs: Python's grpcio (PyPI), on the plain listener
(HTTP/2 prior knowledge) and on the TLS listener. It has no .proto: it learns the services and
messages through the gateway's reflection service, builds its messages from what reflection
says, and asks the health service. Usage: client.py PLAIN_ADDR TLS_ADDR CA_CERT. Exits 0 and
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
