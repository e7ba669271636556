from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class InferRequest(_message.Message):
    __slots__ = ("tier", "deadline_ns", "model_name", "input_tensor", "input_shape", "input_tensor_raw")
    TIER_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_NS_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    INPUT_TENSOR_FIELD_NUMBER: _ClassVar[int]
    INPUT_SHAPE_FIELD_NUMBER: _ClassVar[int]
    INPUT_TENSOR_RAW_FIELD_NUMBER: _ClassVar[int]
    tier: int
    deadline_ns: int
    model_name: str
    input_tensor: _containers.RepeatedScalarFieldContainer[float]
    input_shape: _containers.RepeatedScalarFieldContainer[int]
    input_tensor_raw: bytes
    def __init__(self, tier: _Optional[int] = ..., deadline_ns: _Optional[int] = ..., model_name: _Optional[str] = ..., input_tensor: _Optional[_Iterable[float]] = ..., input_shape: _Optional[_Iterable[int]] = ..., input_tensor_raw: _Optional[bytes] = ...) -> None: ...

class InferResponse(_message.Message):
    __slots__ = ("deadline_ns", "success", "message")
    DEADLINE_NS_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    deadline_ns: int
    success: bool
    message: str
    def __init__(self, deadline_ns: _Optional[int] = ..., success: bool = ..., message: _Optional[str] = ...) -> None: ...
