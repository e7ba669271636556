"""The committed stubs in fastload/_pb/ match proto/scheduler.proto (else run generate_proto.sh)."""
from __future__ import annotations

import inspect
from pathlib import Path

from google.protobuf import descriptor_pb2
from grpc_tools import protoc

from fastload._pb import scheduler_pb2, scheduler_pb2_grpc

PROTO_DIR = Path(__file__).resolve().parent.parent / "proto"


def compiled_descriptor(tmp_path: Path) -> descriptor_pb2.FileDescriptorProto:
    """proto/scheduler.proto as protoc sees it now, without the json_name values that protoc
    fills in but the Python generator strips (they are derived from field names anyway)."""
    out = tmp_path / "scheduler.pb"
    status = protoc.main(["protoc", f"-I{PROTO_DIR}", f"--descriptor_set_out={out}",
                          str(PROTO_DIR / "scheduler.proto")])
    assert status == 0, "protoc failed on proto/scheduler.proto"
    (file,) = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file
    for message in file.message_type:
        for field in message.field:
            field.ClearField("json_name")
    return file


def test_committed_stubs_match_proto(tmp_path: Path) -> None:
    # Comparing descriptors, not generated source, ignores grpcio-tools version headers.
    committed = descriptor_pb2.FileDescriptorProto()
    scheduler_pb2.DESCRIPTOR.CopyToProto(committed)
    assert compiled_descriptor(tmp_path) == committed, "stale stubs: run ./generate_proto.sh"


def test_grpc_stub_imports_package_relative_pb2() -> None:
    source = inspect.getsource(scheduler_pb2_grpc)
    assert "from . import scheduler_pb2 as" in source
    assert scheduler_pb2_grpc.scheduler__pb2 is scheduler_pb2


def test_stubs_run_on_every_supported_protobuf() -> None:
    """Generated code refuses a protobuf runtime older than the protoc that made it; the
    declared floor (pyproject's protobuf>=6.30.0, for tritonclient's protobuf<7) must hold."""
    import re

    from packaging.requirements import Requirement
    from packaging.version import Version

    source = inspect.getsource(scheduler_pb2)
    gencode = re.search(r"ValidateProtobufRuntimeVersion\(\s*\S+,\s*(\d+),\s*(\d+),\s*(\d+),",
                        source)
    assert gencode, "no runtime version check found in scheduler_pb2.py"
    made_by = Version(".".join(gencode.groups()))
    pyproject = (PROTO_DIR.parent / "pyproject.toml").read_text()
    [protobuf] = [Requirement(line.strip().strip('",')) for line in pyproject.splitlines()
                  if line.strip().startswith('"protobuf')]
    floor = min(Version(spec.version) for spec in protobuf.specifier if spec.operator == ">=")
    assert made_by <= floor, f"stubs made by protoc {made_by}, newer than protobuf>={floor}"
    assert floor <= Version("6.30.0"), "tritonclient 2.73 needs protobuf 6 (< 7)"
