"""The committed stubs in fastload/_pb/ match proto/*.proto (else run generate_proto.sh)."""
from __future__ import annotations

import inspect
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2
from grpc_tools import protoc

from fastload._pb import kserve_pb2, scheduler_pb2, scheduler_pb2_grpc

PROTO_DIR = Path(__file__).resolve().parent.parent / "proto"
STUBS = pytest.mark.parametrize("module", [scheduler_pb2, kserve_pb2], ids=lambda m: m.__name__)


def _strip_json_names(messages) -> None:
    for message in messages:
        for field in message.field:
            field.ClearField("json_name")
        _strip_json_names(message.nested_type)


def compiled_descriptor(tmp_path: Path, name: str) -> descriptor_pb2.FileDescriptorProto:
    """proto/NAME as protoc sees it now, without the json_name values that protoc fills in but
    the Python generator strips (they are derived from field names anyway)."""
    out = tmp_path / f"{name}.pb"
    status = protoc.main(["protoc", f"-I{PROTO_DIR}", f"--descriptor_set_out={out}",
                          str(PROTO_DIR / name)])
    assert status == 0, f"protoc failed on proto/{name}"
    (file,) = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file
    _strip_json_names(file.message_type)
    return file


@STUBS
def test_committed_stubs_match_proto(tmp_path: Path, module) -> None:
    # Comparing descriptors, not generated source, ignores grpcio-tools version headers.
    committed = descriptor_pb2.FileDescriptorProto()
    module.DESCRIPTOR.CopyToProto(committed)
    assert compiled_descriptor(tmp_path, committed.name) == committed, \
        "stale stubs: run ./generate_proto.sh"


def test_grpc_stub_imports_package_relative_pb2() -> None:
    source = inspect.getsource(scheduler_pb2_grpc)
    assert "from . import scheduler_pb2 as" in source
    assert scheduler_pb2_grpc.scheduler__pb2 is scheduler_pb2


@STUBS
def test_stubs_run_on_every_supported_protobuf(module) -> None:
    """Generated code refuses a protobuf runtime older than the protoc that made it; the
    declared floor (pyproject's protobuf>=6.30.0, for tritonclient's protobuf<7) must hold."""
    import re

    from packaging.requirements import Requirement
    from packaging.version import Version

    source = inspect.getsource(module)
    gencode = re.search(r"ValidateProtobufRuntimeVersion\(\s*\S+,\s*(\d+),\s*(\d+),\s*(\d+),",
                        source)
    assert gencode, f"no runtime version check found in {module.__name__}"
    made_by = Version(".".join(gencode.groups()))
    pyproject = (PROTO_DIR.parent / "pyproject.toml").read_text()
    [protobuf] = [Requirement(line.strip().strip('",')) for line in pyproject.splitlines()
                  if line.strip().startswith('"protobuf')]
    floor = min(Version(spec.version) for spec in protobuf.specifier if spec.operator == ">=")
    assert made_by <= floor, f"stubs made by protoc {made_by}, newer than protobuf>={floor}"
    assert floor <= Version("6.30.0"), "tritonclient 2.73 needs protobuf 6 (< 7)"
