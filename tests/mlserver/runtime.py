"""A tiny MLServer runtime for tests/test_mlserver.py: answers the mean of its one FP32 input
and appends what it saw of each request (parameters, input) to $ECHO_SEEN_LOG as JSON lines.
$ECHO_SERVICE_MS makes each answer take that long, one at a time (a busy accelerator): the
sleep blocks MLServer's event loop, so requests queue in arrival order."""
import json
import os
import time

import numpy as np
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse, ResponseOutput


class EchoModel(MLModel):
    async def load(self) -> bool:
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        time.sleep(float(os.environ.get("ECHO_SERVICE_MS", "0")) / 1000)
        # Request parameters arrive as pydantic extras; model_dump() would drop the None that
        # a uint64_param becomes (MLServer's proto knows oneof fields 1-3 only).
        parameters = dict(payload.parameters.model_extra or {}) if payload.parameters else {}
        (tensor,) = payload.inputs
        values = NumpyCodec.decode_input(tensor)
        seen = {"parameters": {k: v for k, v in parameters.items() if k != "headers"},
                "input": [tensor.name, tensor.datatype, list(tensor.shape)],
                "values": values.ravel().tolist()}
        with open(os.environ["ECHO_SEEN_LOG"], "a") as log:
            log.write(json.dumps(seen) + "\n")
        return InferenceResponse(
            model_name=self.name, model_version=self.version,
            outputs=[ResponseOutput(name="mean", datatype="FP32", shape=[1, 1],
                                    data=[float(np.mean(values))])])
